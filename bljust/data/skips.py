"""Counting utterances that were skipped, and why, so a bad file costs one utterance, not the run."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from bljust.errors import UserError


class BadDataError(UserError, ValueError):
    """More of a data set is unusable than train.max_bad_fraction allows."""


@dataclass
class SkipLog:
    """Skip counts by reason, with the first offending item of each reason for the message."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, reason: str, item: str) -> None:
        self.counts[reason] += 1
        self.examples.setdefault(reason, item)

    def update(self, other: "SkipLog") -> None:
        self.counts.update(other.counts)
        for reason, item in other.examples.items():
            self.examples.setdefault(reason, item)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """One line: 'skipped 3 (missing_audio: 2, e.g. a.flac; empty_transcript: 1, e.g. x-1)'."""
        if not self.counts:
            return "skipped 0"
        parts = [f"{r}: {n}, e.g. {self.examples[r]}" for r, n in sorted(self.counts.items())]
        return f"skipped {self.total} ({'; '.join(parts)})"

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts)

    def state_dict(self) -> dict[str, dict]:
        return {"counts": dict(self.counts), "examples": dict(self.examples)}

    @classmethod
    def from_state(cls, state: dict[str, dict] | None) -> "SkipLog":
        state = state or {}
        return cls(Counter(state.get("counts", {})), dict(state.get("examples", {})))


def check_bad_fraction(what: str, skips: SkipLog, kept: int, limit: float, min_seen: int = 1) -> None:
    """Stop with one line when more than `limit` of the utterances seen were skipped.

    A few bad files in a big corpus are normal; a large fraction means a wrong path, a wrong
    sample rate or a broken copy, and training on the remainder would waste the run.
    """
    seen = kept + skips.total
    if seen >= min_seen and seen > 0 and skips.total / seen > limit:
        raise BadDataError(f"{what}: {skips.total} of {seen} utterances ({skips.total / seen:.0%}) unusable, "
                           f"more than train.max_bad_fraction={limit} ({skips.summary()})")

"""Counting utterances that were skipped, and why, so a bad file costs one utterance, not the run."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


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

"""Transcript normalisation shared by training and scoring, so WER compares like with like.

One function, built from the `text` config (`text.case`, `text.keep`), normalises every transcript
the moment it enters a manifest (LibriSpeech trans.txt, CSV/JSONL tables, lhotse CutSets). The
tokenizer is trained on those texts and the references scored by `evaluate` come from the same
manifests, so training targets, hypotheses and references all live in one normalised space.
Checkpoints carry the config, so `evaluate data=...` normalises new references the same way.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from bljust.errors import UserError

Normalizer = Callable[[str], str]
_SPACES = re.compile(r"\s+")
_CASES: dict[str, Callable[[str], str]] = {"upper": str.upper, "lower": str.lower, "keep": lambda s: s}


def make_normalizer(case: str = "upper", keep: str = "A-Z'") -> Normalizer:
    """A normaliser that changes case, turns every character outside `[keep]` into a space and
    collapses spaces. Punctuation becomes a space, so "WELL,HE" does not fuse into one word.
    Idempotent: normalising normalised text changes nothing.
    """
    if case not in _CASES:
        raise UserError(f"text.case={case!r}: expected upper, lower or keep")
    try:
        not_allowed = re.compile(f"[^{keep} ]+")
    except re.error as err:
        raise UserError(f"text.keep={keep!r}: not a regex character class body ({err})") from None
    to_case = _CASES[case]

    def normalize(text: str) -> str:
        return _SPACES.sub(" ", not_allowed.sub(" ", to_case(text))).strip()

    return normalize


def normalizer_from_config(text_cfg: Any | None) -> Normalizer:
    """The normaliser of a `text` config node or dict; LibriSpeech style when absent (old checkpoints)."""
    if text_cfg is None:
        return normalize_text
    return make_normalizer(text_cfg["case"], text_cfg["keep"])


# LibriSpeech style: upper case, letters and apostrophes only, single spaces (the default config).
normalize_text: Normalizer = make_normalizer()

"""Transcript normalisation shared by training and scoring, so WER compares like with like."""

import re

_NOT_ALLOWED = re.compile(r"[^A-Z' ]+")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """LibriSpeech-style: upper case, letters and apostrophes only, single spaces.

    Punctuation becomes a space (so "WELL,HE" does not fuse into one word); anything else outside
    A-Z and apostrophes is dropped the same way.
    """
    text = _NOT_ALLOWED.sub(" ", text.upper())
    return _SPACES.sub(" ", text).strip()

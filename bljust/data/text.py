"""Transcript normalisation shared by training and scoring, so WER compares like with like.

One normaliser, built from the `text` config (`text.case`, `text.keep`), normalises every
transcript the moment it enters a manifest (LibriSpeech trans.txt, CSV/JSONL tables, lhotse
CutSets). The tokenizer is trained on those texts and the references scored by `evaluate` come
from the same manifests, so training targets, hypotheses and references all live in one
normalised space. Checkpoints carry the config, so `evaluate data=...` normalises new references
the same way.

Nothing is lost silently. A character outside `text.keep` is first folded to what it is made of
(Unicode NFKD without its combining marks: `É` -> `E`, `ﬁ` -> `FI`; plus `Ø` -> `O`, `Æ` -> `AE`
and typographic apostrophes -> `'`), so `CAFÉ` stays one word; one that still does not fit becomes a space and is counted. A
transcript with a digit outside `text.keep` is not used at all (`digits_in_text`): dropping
the digit would change what was said, and a spelled-out guess would change a reference.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Any, Callable

from bljust.errors import UserError

_SPACES = re.compile(r"\s+")
_CASES: dict[str, Callable[[str], str]] = {"upper": str.upper, "lower": str.lower, "keep": lambda s: s}
# Folds NFKD does not know: marks that stand for an apostrophe in typeset or keyboard-layout text
# ("don’t" is "don't"), and Latin letters that are not a base letter plus an accent.
_BASE = {"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'", "\u00b4": "'",
         "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D",
         "ð": "d", "Ð": "D", "þ": "th", "Þ": "TH", "ß": "ss", "ı": "i"}
# Bumped when the rules below change what a transcript becomes, so prepared manifests are rebuilt.
# 2: accents folded, digits outside text.keep refused (1: every character outside it dropped).
TEXT_RULES_VERSION = 2
EXAMPLE_CHARS = 8  # characters named in the summary line
DIGITS_IN_TEXT = "digits_in_text"
EMPTY_TRANSCRIPT = "empty_transcript"


class Normalizer:
    """Changes case, folds or drops every character outside `[keep]`, collapses spaces.

    Punctuation becomes a space, so "WELL,HE" does not fuse into one word. Idempotent:
    normalising normalised text changes nothing. `dropped` counts, over every call, the
    characters that did not fit even after folding, with a first example text of each.
    """

    def __init__(self, case: str = "upper", keep: str = "A-Z'"):
        if case not in _CASES:
            raise UserError(f"text.case={case!r}: expected upper, lower or keep")
        try:
            self._allowed = re.compile(f"[{keep} ]")
        except re.error as err:
            raise UserError(f"text.keep={keep!r}: not a regex character class body ({err})") from None
        self.keep = keep
        self._to_case = _CASES[case]
        # what str.translate needs, grown as characters are first seen: ord -> replacement, and the
        # characters that count as dropped (unkeepable and not whitespace)
        self._table: dict[int, str] = {}
        self._unkept: set[str] = set()
        self.dropped: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def _fold(self, ch: str) -> str | None:
        """What `ch` (already cased) becomes: itself, its folded letters, '' for a bare combining
        mark (the accent of a decomposed letter), or None when it cannot be kept."""
        if self._allowed.fullmatch(ch):
            return ch
        base = _BASE.get(ch, ch)
        folded = self._to_case("".join(c for c in unicodedata.normalize("NFKD", base) if not unicodedata.combining(c)))
        if folded == "" and unicodedata.combining(ch):
            return ""
        if folded.strip() and all(self._allowed.fullmatch(c) for c in folded):
            return folded
        return None

    def _apply(self, text: str) -> tuple[str, list[str]]:
        """(normalised text, the characters dropped from it, whitespace aside)."""
        cased = self._to_case(text)
        # one str.translate over the text instead of a Python step per character: normalising a
        # corpus's text (160k WordNet phrases, LibriSpeech's transcripts) was most of its cost
        for code in set(map(ord, cased)).difference(self._table):
            ch = chr(code)
            folded = self._fold(ch)
            self._table[code] = " " if folded is None else folded
            if folded is None and not ch.isspace():
                self._unkept.add(ch)
        dropped = [ch for ch in cased if ch in self._unkept] if not self._unkept.isdisjoint(cased) else []
        return _SPACES.sub(" ", cased.translate(self._table)).strip(), dropped

    def _count(self, text: str, dropped: list[str]) -> None:
        self.dropped.update(dropped)
        for ch in dropped:
            self.examples.setdefault(ch, text.strip()[:60])

    def __call__(self, text: str) -> str:
        out, dropped = self._apply(text)
        self._count(text, dropped)
        return out

    def label(self, text: str) -> tuple[str, str | None]:
        """(normalised transcript, None), or ('', reason) when it cannot be a label or reference:
        `digits_in_text` (a number would be lost) or `empty_transcript` (nothing left)."""
        out, dropped = self._apply(text)
        if any(ch.isdigit() for ch in dropped):  # 0-9, and others: '٣', '²' (NFKD: '2')
            return "", DIGITS_IN_TEXT
        if not out:
            return "", EMPTY_TRANSCRIPT
        self._count(text, dropped)
        return out, None

    def summary(self) -> str:
        """One line: 'dropped 12 characters outside text.keep [A-Z'] (',' 8, e.g. "Well, he"; ...)'.

        Letters first (a dropped letter splits a word), then the rest by count."""
        total = sum(self.dropped.values())
        if not total:
            return f"dropped 0 characters outside text.keep [{self.keep}]"
        order = sorted(self.dropped, key=lambda c: (not unicodedata.category(c).startswith("L"), -self.dropped[c], c))
        parts = [f"{c!r} {self.dropped[c]}, e.g. {self.examples[c]!r}" for c in order[:EXAMPLE_CHARS]]
        more = f"; and {len(order) - EXAMPLE_CHARS} other characters" if len(order) > EXAMPLE_CHARS else ""
        return f"dropped {total} characters outside text.keep [{self.keep}] ({'; '.join(parts)}{more})"


def make_normalizer(case: str = "upper", keep: str = "A-Z'") -> Normalizer:
    return Normalizer(case, keep)


def normalizer_from_config(text_cfg: Any | None) -> Normalizer:
    """A fresh normaliser (its own counts) of a `text` config node or dict; LibriSpeech style when
    absent (old checkpoints)."""
    if text_cfg is None:
        return Normalizer()
    return Normalizer(text_cfg["case"], text_cfg["keep"])


# LibriSpeech style: upper case, letters and apostrophes only, single spaces (the default config).
normalize_text: Normalizer = make_normalizer()

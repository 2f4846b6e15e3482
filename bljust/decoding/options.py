"""The decoding keys of `evaluate` and `transcribe` (decode=greedy|beam, beam_size, lm, lexicon,
lm_weight, word_score), read from `key=value` arguments."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import torch

from bljust.data.tokenizer import Tokenizer
from bljust.errors import UserError

# key -> help line, for --help; the defaults are the dataclass's
DECODE_KEYS = {
    "decode": "greedy (best path, default) | beam (beam search with a lexicon and an n-gram LM)",
    "beam_size": "hypotheses kept per frame (beam; default 50)",
    "beam_threshold": "drop hypotheses this far below the best score (beam; default 25)",
    "lm": "word n-gram LM, an ARPA file or a KenLM binary, used as it is (beam)",
    "lexicon": "words the search may emit, one per line, optionally followed by their spelling in "
               "tokens (beam; default: the ARPA file's unigrams spelled by the model's tokenizer)",
    "lm_weight": "weight of the LM's log-probability (beam; default 2.0; tune it on dev)",
    "word_score": "score added per emitted word (beam; default 0.0; tune it on dev)",
}


@dataclass
class DecodeOptions:
    """How logits become text; the beam keys are ignored by greedy decoding."""

    decode: str = "greedy"
    beam_size: int = 50
    beam_threshold: float = 25.0
    lm: str | None = None
    lexicon: str | None = None
    lm_weight: float = 2.0
    word_score: float = 0.0

    @classmethod
    def from_kv(cls, kv: dict[str, str]) -> "DecodeOptions":
        """Options from parsed `key=value` arguments, one line naming a key with a wrong value."""
        values: dict = {}
        for f in fields(cls):
            if f.name not in kv:
                continue
            kind = {"beam_size": int, "beam_threshold": float, "lm_weight": float, "word_score": float}.get(f.name, str)
            try:
                values[f.name] = kind(kv[f.name])
            except ValueError:
                raise UserError(f"{f.name}={kv[f.name]!r}: expected {'an integer' if kind is int else 'a number'}") from None
        opts = cls(**values)
        if opts.decode not in ("greedy", "beam"):
            raise UserError(f"decode={opts.decode!r}: expected greedy or beam")
        if opts.decode == "beam" and not (opts.lm or opts.lexicon):
            raise UserError("decode=beam needs lm=PATH (an ARPA or KenLM binary n-gram) or lexicon=PATH")
        if opts.beam_size < 1:
            raise UserError(f"beam_size={opts.beam_size}: must be >= 1")
        return opts

    @property
    def label(self) -> str:
        """Suffix of the split's name in wer.json and hyp files: '' (greedy), '+lm' or '+lexicon'."""
        if self.decode == "greedy":
            return ""
        return "+lm" if self.lm else "+lexicon"


Decoder = Callable[[torch.Tensor, torch.Tensor], list[str]]


def greedy_decoder(tokenizer: Tokenizer) -> Decoder:
    """Best path: (B, T, V) logits and (B,) lengths -> one text per utterance."""
    from bljust.objectives.ctc import greedy_decode

    return lambda logits, lens: [tokenizer.decode(ids) for ids in greedy_decode(logits.float(), lens)]


def make_decoder(tokenizer: Tokenizer, opts: DecodeOptions) -> Decoder:
    """The decoder `opts` asks for; beam search loads its LM and lexicon once, here."""
    if opts.decode == "greedy":
        return greedy_decoder(tokenizer)
    from bljust.decoding.beam import BeamSearchDecoder

    return BeamSearchDecoder(tokenizer, opts)

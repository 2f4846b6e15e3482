"""SentencePiece tokenizer with the CTC blank at id 0."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

import sentencepiece as spm
import torch

BLANK = 0


class Tokenizer:
    """Text <-> token ids. Id 0 is reserved for the CTC blank (SentencePiece's pad piece)."""

    def __init__(self, model_proto: bytes):
        self.model_proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        assert self.sp.pad_id() == BLANK, "tokenizer was not trained with the blank at id 0"

    @property
    def vocab_size(self) -> int:
        """Output size of the CTC head, blank included."""
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([i for i in ids if i != BLANK])

    def unknown_fraction(self, text: str) -> float:
        """Fraction of tokens that are <unk>: characters outside the training vocabulary."""
        ids = self.encode(text)
        return sum(i == self.sp.unk_id() for i in ids) / max(len(ids), 1)

    # Stored in checkpoints as a uint8 tensor so `torch.load(weights_only=True)` can read it.
    def to_tensor(self) -> torch.Tensor:
        return torch.frombuffer(bytearray(self.model_proto), dtype=torch.uint8).clone()

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> "Tokenizer":
        return cls(bytes(t.numpy().tobytes()))

    @classmethod
    def load(cls, path: Path) -> "Tokenizer":
        return cls(Path(path).read_bytes())

    def save(self, path: Path) -> None:
        Path(path).write_bytes(self.model_proto)


def train_tokenizer(texts: list[str], model_type: str = "char", vocab_size: int = 0) -> Tokenizer:
    """Train a SentencePiece model on normalised transcripts.

    For `char`, the vocabulary is every character seen (vocab_size is not a hard limit);
    for unigram/bpe, `vocab_size` pieces including the blank and <unk>.
    """
    if not texts:
        raise ValueError("cannot train a tokenizer on zero transcripts")
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=buf,
        model_type=model_type,
        vocab_size=vocab_size if model_type != "char" else 100,
        hard_vocab_limit=model_type != "char",
        character_coverage=1.0,
        pad_id=BLANK,
        pad_piece="<blk>",
        unk_id=1,
        bos_id=-1,
        eos_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    return Tokenizer(buf.getvalue())

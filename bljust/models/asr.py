"""The model every method trains: a Conformer encoder with a CTC head."""

from __future__ import annotations

import torch
from torch import nn

from bljust.config import ModelConfig
from bljust.models.conformer import ConformerEncoder


class AsrModel(nn.Module):
    """Encoder + CTC head (vocabulary incl. blank at 0).

    Unsupervised heads live in the objectives that own them, so a checkpoint from any method
    loads into this model for fine-tuning or decoding. `encoder` replaces ConformerEncoder with any
    module of its interface (tools/bench_peer.py: torchaudio's Conformer blocks).
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int, encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder if encoder is not None else ConformerEncoder(cfg)
        self.ctc_head = nn.Linear(cfg.d_model, vocab_size)

    def forward(self, feats: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, F), (B,) -> CTC logits (B, T', V), lengths (B,)."""
        h, out_lens = self.encoder(feats, lens)
        return self.ctc_head(h), out_lens


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

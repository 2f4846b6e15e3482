"""SpecAugment for supervised batches (frequency and time masks, see data/features.py)."""

from __future__ import annotations

import torch
from bljust.config import SpecAugmentConfig
from bljust.data.features import frequency_mask, time_mask


class SpecAugment(torch.nn.Module):
    """Independent frequency and time masks per utterance on (B, T, D) features.

    Masked values are 0, the global mean after CMVN. Only the supervised loss sees it: the
    masked-prediction objective has its own masking, and pseudo-labelling labels clean input.
    """

    def __init__(self, cfg: SpecAugmentConfig):
        super().__init__()
        self.cfg = cfg
        self.freq = frequency_mask(cfg.freq_mask_width)
        self.time = time_mask(cfg.time_mask_width, cfg.time_mask_max_frac)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.cfg.enabled):
            return feats
        x = feats.transpose(1, 2)  # (B, D, T), as the masks expect
        for _ in range(self.cfg.freq_masks):
            x = self.freq(x)
        for _ in range(self.cfg.time_masks):
            x = self.time(x)
        return x.transpose(1, 2)

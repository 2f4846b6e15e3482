"""Span masking of the input for masked-prediction objectives (BEST-RQ, InfoNCE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bljust.models.conformer import padding_mask, subsampled_lengths

STACK = 4  # 10 ms frames per 40 ms encoder frame (the encoder subsamples by 4)


def stack_frames(feats: torch.Tensor, stack: int = STACK) -> torch.Tensor:
    """(B, T, D) -> (B, ceil(T/stack), stack*D), zero-padding the tail like the encoder's convolutions."""
    b, t, d = feats.shape
    pad = (-t) % stack
    if pad:
        feats = F.pad(feats, (0, 0, 0, pad))
    return feats.reshape(b, -1, stack * d)


def span_mask(lens: torch.Tensor, max_len: int, prob: float, span: int, generator: torch.Generator | None = None
              ) -> torch.Tensor:
    """(B, max_len) bool: each valid frame starts a masked span of `span` frames with probability `prob`.

    Works at the encoder's 40 ms resolution; spans are clipped at the utterance end.
    """
    starts = torch.rand(lens.shape[0], max_len, generator=generator) < prob
    mask = torch.zeros_like(starts)
    for offset in range(span):  # union of shifted starts = spans
        mask[:, offset:] |= starts[:, : max_len - offset]
    return mask & padding_mask(lens.cpu(), max_len)


def mask_features(feats: torch.Tensor, lens: torch.Tensor, prob: float, span_ms: float, noise_std: float,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked copy of (B, T, D) features and the (B, ceil(T/4)) mask at encoder resolution.

    Masked 10 ms frames are replaced by noise N(0, noise_std^2) (features are CMVN-normalised).
    """
    t_enc = (feats.shape[1] + STACK - 1) // STACK
    span = max(1, round(span_ms / 40))
    mask = span_mask(subsampled_lengths(lens).cpu(), t_enc, prob, span, generator).to(feats.device)
    frame_mask = mask.repeat_interleave(STACK, dim=1)[:, : feats.shape[1]]
    if generator is None:
        noise = torch.randn(feats.shape, device=feats.device)
    else:  # a seeded generator (tests) lives on the CPU
        noise = torch.randn(feats.shape, generator=generator).to(feats.device)
    return torch.where(frame_mask[..., None], (noise * noise_std).to(feats.dtype), feats), mask

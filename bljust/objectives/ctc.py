"""Supervised CTC loss and greedy CTC decoding."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bljust.data.tokenizer import BLANK


def ctc_loss(logits: torch.Tensor, lens: torch.Tensor, tokens: torch.Tensor, token_lens: torch.Tensor) -> torch.Tensor:
    """CTC loss summed over the batch and divided by the number of target tokens.

    logits: (B, T, V) unnormalised; lens: (B,); tokens: (B, L) padded; token_lens: (B,).
    Per-token normalisation makes the loss (and so the learning rate) independent of batch size
    and utterance length. Utterances whose targets cannot be aligned (more tokens than frames
    allow) contribute zero instead of inf (`zero_infinity`).
    """
    log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T, B, V)
    total = F.ctc_loss(log_probs, tokens, lens, token_lens, blank=BLANK, reduction="sum", zero_infinity=True)
    return total / token_lens.sum().clamp_min(1)


def ctc_alignable(token_lens: torch.Tensor, frame_lens: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the target fits in the frames, counting the blanks CTC needs between repeats."""
    repeats = ((tokens[:, 1:] == tokens[:, :-1]) & (tokens[:, 1:] != BLANK)).sum(1) if tokens.shape[1] > 1 \
        else torch.zeros_like(token_lens)
    return (token_lens > 0) & (token_lens + repeats <= frame_lens)


def greedy_decode(logits: torch.Tensor, lens: torch.Tensor) -> list[list[int]]:
    """Best path: argmax per frame, merge repeats, drop blanks. logits (B, T, V) -> token id lists."""
    best = logits.argmax(-1).cpu()
    out = []
    for seq, n in zip(best, lens.cpu().tolist()):
        seq = torch.unique_consecutive(seq[:n])
        out.append(seq[seq != BLANK].tolist())
    return out

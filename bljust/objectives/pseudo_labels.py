"""Pseudo-labels from a CTC model: greedy labels, their confidence, and which ones are usable."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from bljust.objectives.ctc import ctc_alignable, greedy_decode

CONFIDENCES = ("max_posterior", "logprob")


def utterance_confidence(logits: torch.Tensor, lens: torch.Tensor, kind: str) -> torch.Tensor:
    """(B,) confidence of the greedy (best-path) label of each utterance.

    logits: (B, T, V); lens: (B,) valid frames. Both kinds average over the valid frames, so long
    and short utterances compare:
      max_posterior: mean_t max_v p_t(v)          in (0, 1]
      logprob:       mean_t max_v log p_t(v)      in (-inf, 0], the best path's log-probability
                     divided by its length in frames
    """
    assert kind in CONFIDENCES, kind
    log_probs = F.log_softmax(logits.float(), dim=-1).max(dim=-1).values  # (B, T)
    valid = torch.arange(logits.shape[1], device=logits.device)[None, :] < lens[:, None]
    per_frame = log_probs.exp() if kind == "max_posterior" else log_probs
    return (per_frame * valid).sum(1) / lens.clamp_min(1)


@torch.no_grad()
def label_batch(model: torch.nn.Module, feats: torch.Tensor, feat_lens: torch.Tensor, kind: str,
                autocast=None) -> tuple[list[list[int]], torch.Tensor, torch.Tensor]:
    """Greedy CTC labels of a batch by `model` in eval mode (no dropout, no gradient).

    Returns (token lists, confidences (B,) on CPU, output frame lengths (B,) on CPU). The model's
    train/eval mode is restored, so this can run in the middle of training.
    """
    was_training = model.training
    model.eval()
    try:
        if autocast is None:
            logits, lens = model(feats, feat_lens)
        else:
            with autocast():
                logits, lens = model(feats, feat_lens)
    finally:
        model.train(was_training)
    return greedy_decode(logits.float(), lens), utterance_confidence(logits, lens, kind).cpu(), lens.cpu()


@dataclass
class DropCounts:
    """Pseudo-labels thrown away, by reason (running totals)."""

    empty: int = 0
    too_long: int = 0  # more tokens (plus blanks between repeats) than the CTC alignment has frames
    low_confidence: int = 0

    def add(self, other: "DropCounts") -> None:
        self.empty += other.empty
        self.too_long += other.too_long
        self.low_confidence += other.low_confidence

    def total(self) -> int:
        return self.empty + self.too_long + self.low_confidence


@dataclass
class Kept:
    """Which utterances of a labelled batch survive the filter, and why the others did not."""

    keep: list[bool]
    drops: DropCounts = field(default_factory=DropCounts)


def filter_labels(tokens: list[list[int]], frame_lens: torch.Tensor, confidence: torch.Tensor,
                  threshold: float) -> Kept:
    """Keep a label only if it is non-empty, CTC-alignable in its frames and confident enough.

    A label can only be too long when it was encoded differently from how it was decoded
    (subword re-tokenisation) or comes from a model with another frame rate; greedy labels of
    the model itself always fit. Each dropped label is counted under its first failing test.
    """
    drops = DropCounts()
    keep = []
    for toks, frames, conf in zip(tokens, frame_lens.tolist(), confidence.tolist()):
        t = torch.tensor([toks], dtype=torch.long)
        if not toks:
            drops.empty += 1
        elif not bool(ctc_alignable(torch.tensor([len(toks)]), torch.tensor([frames]), t)[0]):
            drops.too_long += 1
        elif conf < threshold:
            drops.low_confidence += 1
        else:
            keep.append(True)
            continue
        keep.append(False)
    return Kept(keep, drops)

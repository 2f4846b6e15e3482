"""AdamW and its learning-rate schedule: linear warm-up, then cosine decay or constant."""

from __future__ import annotations

import math
from typing import Iterable

import torch

from bljust.config import OptimConfig


def optim_with(cfg: OptimConfig, **changes) -> OptimConfig:
    """A copy of an optimiser config (typed or Hydra node) with some fields changed."""
    return OptimConfig(**{**dict(cfg), **changes})


def make_adamw(params: Iterable[torch.nn.Parameter], cfg: OptimConfig, lr: float | None = None) -> torch.optim.AdamW:
    """AdamW without weight decay on biases and norm gains (1-D parameters), as is standard."""
    params = [p for p in params if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = (bool(params) and params[0].device.type == "cuda") if cfg.fused is None else cfg.fused
    return torch.optim.AdamW(groups, lr=lr if lr is not None else cfg.lr, betas=tuple(cfg.betas), fused=fused or None)


def lr_factor(step: int, warmup: int, total: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at `step` (0-based)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_scheduler(opt: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, cfg.warmup_steps, total_steps, cfg.schedule, cfg.min_lr_ratio)
    )

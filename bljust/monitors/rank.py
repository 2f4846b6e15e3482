"""Embedding rank: RankMe (Garrido et al. 2022) and the numerical rank, from singular values."""

from __future__ import annotations

import torch

RANKME_EPS = 1e-7  # Garrido et al.'s epsilon


def singular_values(x: torch.Tensor) -> torch.Tensor:
    """Singular values of an (N, D) embedding matrix, in float64 (descending)."""
    return torch.linalg.svdvals(x.double())


def rankme(sv: torch.Tensor, eps: float = RANKME_EPS) -> float:
    """exp(-sum p_k log p_k) with p_k = sigma_k / ||sigma||_1 + eps: the effective rank, in [1, D]."""
    p = sv / sv.abs().sum() + eps
    return float(torch.exp(-(p * p.log()).sum()))


def numerical_rank(sv: torch.Tensor, rtol: float) -> int:
    """How many singular values exceed rtol times the largest."""
    return int((sv > rtol * sv.max()).sum()) if sv.numel() else 0

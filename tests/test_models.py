"""Model building blocks checked against their definitions."""

from __future__ import annotations

import torch

from bljust.models.conformer import Dropout


def test_cpu_dropout_is_dropout():
    torch.manual_seed(0)
    drop = Dropout(0.1)
    x = torch.randn(64, 200, 96, requires_grad=True)
    y = drop(x)
    keep = y != 0
    assert abs(keep.float().mean().item() - 0.9) < 0.005  # keep probability 1 - p
    assert torch.allclose(y[keep], x[keep] / 0.9)  # kept values scaled by 1 / (1 - p)
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, keep / 0.9)  # gradient flows through kept entries only
    drop.eval()
    assert torch.equal(drop(x), x)
    drop.train()
    torch.manual_seed(1)
    a = drop(x)
    torch.manual_seed(1)
    assert torch.equal(a, drop(x))  # seeded: a resumed run redraws the same masks

"""Wall time of one call, with the accelerator's queue drained before and after: CUDA kernels run
asynchronously, so without the syncs a timer measures only the launch. Also the matmul rate at a
model's own GEMM shapes, the peak the MFU benchmarks (tools/bench_mfu.py, tools/bench_peer.py)
divide by."""

from __future__ import annotations

import time
from typing import Callable

import torch


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds `fn()` takes on `device`, counting the work it queued there."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def matmul_rate(m: int, k: int, n: int, dtype: torch.dtype, device: torch.device, reps: int) -> float:
    """FLOP/s of (m x k) @ (k x n), the best of `reps` timed repetitions of a few calls each."""
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    calls = max(1, int(2e9 / (2 * m * k * n)))  # ~2 GFLOP per timing, long enough to time
    best = float("inf")
    for _ in range(reps):
        best = min(best, timed(lambda: [torch.matmul(a, b) for _ in range(calls)], device))
    return 2 * m * k * n * calls / best


def gemm_shapes(frames: int, d_model: int, ff_dim: int) -> dict[str, tuple[int, int, int]]:
    """(m, k, n) of an encoder's main GEMMs over `frames` rows: feed-forward in and out, attention
    projection."""
    return {"ffn in": (frames, d_model, ff_dim), "ffn out": (frames, ff_dim, d_model),
            "attn proj": (frames, d_model, d_model)}

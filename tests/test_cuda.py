"""The CUDA paths, run when a GPU is lent (`make gpu-check`; skipped without one): bf16 autocast
with fp32 master weights, the fused AdamW's sync-free skip of a non-finite update, and the
allocator peak (`max_allocated_mb`) in the logged metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bljust.tracking.metrics import read_metrics

pytestmark = [pytest.mark.cuda, pytest.mark.train]


def cuda_trainer(small_cfg, run: Path, *overrides: str):
    from bljust.train import Trainer

    cfg = small_cfg(["device=cuda", "train.max_steps=30", "train.log_every=5", "train.eval_every=100",
                     "train.ckpt_every=100", "monitor.enabled=false", f"run_dir={run}", *overrides])
    return Trainer(cfg, run)


def test_bf16_autocast_computes_in_bf16_and_keeps_fp32_weights(small_cfg, tmp_path):
    from bljust.objectives.ctc import ctc_loss

    tr = cuda_trainer(small_cfg, tmp_path)  # train.precision=auto: bf16 on CUDA
    batch = next(tr.labelled).to(tr.device)
    tr.model.eval()  # no dropout: both passes see the same network
    with torch.no_grad():
        with tr.ctx.autocast():
            logits, lens = tr.model(batch.feats, batch.feat_lens)
        ref, _ = tr.model(batch.feats, batch.feat_lens)
    tr.model.train()
    assert logits.dtype == torch.bfloat16 and ref.dtype == torch.float32
    # bf16 keeps 8 bits of mantissa: the loss agrees with fp32 to about a percent
    bf16_loss = ctc_loss(logits.float(), lens, batch.tokens, batch.token_lens)
    fp32_loss = ctc_loss(ref, lens, batch.tokens, batch.token_lens)
    assert torch.isfinite(bf16_loss) and abs(float(bf16_loss) / float(fp32_loss) - 1) < 0.02
    tr.run()
    losses = [r["loss_sup"] for r in read_metrics(tmp_path / "metrics.jsonl") if "loss_sup" in r]
    assert len(losses) == 6 and torch.isfinite(torch.tensor(losses)).all()
    assert losses[-1] < losses[0]  # from the random start the bf16 steps learn
    assert all(p.dtype == torch.float32 for p in tr.model.parameters())


def test_fused_adamw_skips_a_nonfinite_update_without_a_host_sync(small_cfg, tmp_path):
    tr = cuda_trainer(small_cfg, tmp_path)  # optim.fused=auto: fused on CUDA
    method = tr.method
    assert method.optimizers["main"].defaults["fused"]
    batch = next(tr.labelled).to(tr.device)

    def loss(scale: float) -> torch.Tensor:
        # no CTC here: its CUDA kernel reads the lengths on the host; the update is what is tested
        with tr.ctx.autocast():
            logits, _ = tr.model(batch.feats, batch.feat_lens)
        return logits.float().square().mean() * scale

    def update_without_sync(loss: torch.Tensor) -> None:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")  # any host sync inside raises
        try:
            method.update(loss, {"main": method.params})
        finally:
            torch.cuda.set_sync_debug_mode("default")

    method.update(loss(1.0), {"main": method.params})  # first step: AdamW creates its state (host copies)
    before = [p.detach().clone() for p in method.params]
    update_without_sync(loss(float("nan")))
    skipped = [p.detach().clone() for p in method.params]
    update_without_sync(loss(1.0))
    assert all(torch.equal(a, b) for a, b in zip(before, skipped))  # the NaN step changed nothing
    assert any(not torch.equal(a, p) for a, p in zip(skipped, method.params))  # the good one did
    assert method.nonfinite_skips == 1 and method.nonfinite_streak == 0
    state = method.optimizers["main"].state[method.params[0]]
    assert float(state["step"]) == 2  # the skipped update did not count as an AdamW step
    assert all(torch.isfinite(p).all() for p in method.params)


def test_max_allocated_mb_is_logged_on_cuda(small_cfg, tmp_path):
    tr = cuda_trainer(small_cfg, tmp_path, "train.max_steps=10")
    tr.run()
    peaks = [r["max_allocated_mb"] for r in read_metrics(tmp_path / "metrics.jsonl") if "max_allocated_mb" in r]
    total_mb = torch.cuda.get_device_properties(tr.device).total_memory / 2**20
    assert len(peaks) == 2 and 0 < peaks[0] <= peaks[1] < total_mb
    # a peak of the allocator so far: the final evaluation after the last log may only raise it
    assert peaks[-1] <= torch.cuda.max_memory_allocated(tr.device) / 2**20

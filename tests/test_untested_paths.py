"""Paths no other test ran: the learning-rate schedule's values, DataLoader workers, the small and
large model shapes, InfoNCE inside a training run, and a SIGUSR1 stop with data workers."""

from __future__ import annotations

import math
import os
import subprocess

import pytest
import torch

from bljust.optim import lr_factor, make_adamw, make_scheduler, optim_with


def test_lr_schedule_at_known_steps():
    # warm-up 4 of 12 steps, cosine to 10 % of the peak; by hand from the formula:
    # step s < 4: (s + 1) / 4; then 0.1 + 0.9 * (1 + cos(pi * (s - 4) / 8)) / 2, flat after step 12
    assert [lr_factor(s, 4, 12, "cosine", 0.1) for s in (0, 1, 3, 4, 8, 12, 30)] == pytest.approx(
        [0.25, 0.5, 1.0, 1.0, 0.55, 0.1, 0.1])
    assert lr_factor(6, 4, 12, "cosine", 0.0) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)  # 0.8536
    assert [lr_factor(s, 2, 12, "constant", 0.1) for s in (0, 1, 2, 11, 50)] == [0.5, 1.0, 1.0, 1.0, 1.0]
    assert lr_factor(0, 0, 10, "cosine", 0.0) == 1.0  # no warm-up: the peak at once


def test_scheduler_drives_adamw_through_those_values(small_cfg):
    cfg = optim_with(small_cfg().optim, lr=1e-3, warmup_steps=2, schedule="cosine", min_lr_ratio=0.0)
    opt = make_adamw([torch.nn.Parameter(torch.zeros(2, 2))], cfg)
    sched = make_scheduler(opt, cfg, total_steps=6)
    lrs = []
    for _ in range(7):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # 1e-3 * [1/2, 1, then (1 + cos(pi * k / 4)) / 2 for k = 0..4]
    assert lrs == pytest.approx([5e-4, 1e-3, 1e-3, 1e-3 * (1 + math.sqrt(0.5)) / 2, 5e-4,
                                 1e-3 * (1 - math.sqrt(0.5)) / 2, 0.0], abs=1e-12)


def _batches(small_cfg, manifest, workers: int, n: int) -> list:
    from bljust.data.dataset import AsrDataset, BatchStream
    from bljust.data.features import Cmvn
    from bljust.data.manifests import load_cuts
    from bljust.data.tokenizer import Tokenizer
    from bljust.prepare import prepare

    cfg = small_cfg()
    data = prepare(cfg, verbose=False)
    ds = AsrDataset(Cmvn.load(data.cmvn), Tokenizer.load(data.tokenizer))
    # a few utterances: several batches an epoch, without computing the corpus's features twice
    if not manifest.exists():
        load_cuts(data.labelled).subset(first=16).to_file(manifest)
    stream = BatchStream(load_cuts(manifest), ds, 20.0, seed=3, num_workers=workers)
    n = n or stream.batches_per_epoch() + 2  # over an epoch boundary: the sampler reshuffles there
    return [next(stream) for _ in range(n)]


def test_dataloader_workers_yield_the_same_batches_as_the_main_process(small_cfg, tmp_path):
    inline = _batches(small_cfg, tmp_path / "few.jsonl.gz", 0, 0)
    workers = _batches(small_cfg, tmp_path / "few.jsonl.gz", 2, len(inline))
    assert len({tuple(b.ids) for b in inline}) > 2  # several distinct batches, not one repeated
    for a, b in zip(inline, workers, strict=True):
        assert a.ids == b.ids and a.texts == b.texts
        for k in ("feats", "feat_lens", "tokens", "token_lens"):
            assert torch.equal(getattr(a, k), getattr(b, k)), (a.ids, k)


@pytest.mark.train
@pytest.mark.parametrize("size, millions", [("small", (5, 9)), ("large", (80, 130))])
def test_small_and_large_models_train_a_step(size, millions, small_cfg):
    """The shapes conf/model/ names (~7 M and ~100 M parameters) build, and one CTC backward
    reaches every parameter."""
    from bljust.models.asr import AsrModel, count_parameters

    cfg = small_cfg([f"model={size}"])
    model = AsrModel(cfg.model, vocab_size=32)
    assert cfg.model.name == size and millions[0] < count_parameters(model) / 1e6 < millions[1]
    feats, lens = torch.randn(2, 120, cfg.features.num_mel_bins), torch.tensor([120, 90])
    logits, out_lens = model(feats, lens)
    assert logits.shape[0] == 2 and logits.shape[2] == 32 and int(out_lens.max()) == logits.shape[1]
    targets = torch.tensor([[3, 4, 5], [6, 7, 0]])
    loss = torch.nn.functional.ctc_loss(logits.log_softmax(-1).transpose(0, 1), targets, out_lens,
                                        torch.tensor([3, 2]), zero_infinity=False)
    loss.backward()
    assert torch.isfinite(loss)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert not missing, missing


@pytest.mark.train
def test_infonce_is_the_unsupervised_loss_of_a_training_run(small_cfg, tmp_path):
    """objective.unsup=infonce: PT+FT pre-trains with InfoNCE (its head, not BEST-RQ's, in the
    checkpoint) and the logged L_u is the objective's value on a fresh draw of the same batch."""
    from bljust.tracking.checkpoint import load_checkpoint
    from bljust.tracking.metrics import read_metrics
    from bljust.train import Trainer

    cfg = small_cfg(["method=ptft", "method.pretrain_steps=2", "train.max_steps=1", "objective.unsup=infonce",
                     "model.num_layers=1", "train.max_duration=20", "train.log_every=1", "eval.max_dev_utts=2",
                     "monitor.enabled=false", f"run_dir={tmp_path}"])
    Trainer(cfg, tmp_path).run()
    records = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "step" in r and not r.get("final")]
    unsup = [r["loss_unsup"] for r in records if "loss_unsup" in r]
    assert len(unsup) == 2 and all(math.isfinite(v) for v in unsup)
    # in-batch negatives at a random start: the loss sits near log(number of candidates), not at 0
    assert all(v > 1.0 for v in unsup), unsup
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt["step"] == 3 and ckpt["config"]["objective"]["unsup"] == "infonce"
    head = set(ckpt["method"]["modules"]["unsup"])
    assert {"query.weight", "key.weight"} <= head and not any("codebooks" in k for k in head), head


@pytest.mark.e2e
def test_sigusr1_with_data_workers_stops_and_resumes_exactly(demo_root, tmp_path):
    """A stop signal while DataLoader workers prefetch: the run saves and exits 0, and the rerun
    ends bit for bit where an uninterrupted run with the same workers ends."""
    from conftest import train_cmd
    from test_train import _assert_same_end

    extra = ["train.num_workers=1", "eval.max_dev_utts=2", "model.num_layers=1"]
    cmd = lambda run: [*train_cmd(demo_root, run, 6, *extra, ckpt_every=4, max_duration=20)]  # noqa: E731
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    r = subprocess.run(cmd(whole), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(cmd(stopped), capture_output=True, text=True, timeout=600,
                       env={**os.environ, "BLJUST_FAULT": "step:3:SIGUSR1"})
    assert r.returncode == 0, r.stderr
    assert "stopped by signal 10" in r.stdout + r.stderr
    from bljust.tracking.checkpoint import load_checkpoint

    assert load_checkpoint(stopped / "checkpoints" / "last.pt")["step"] == 3  # saved where it stopped
    r = subprocess.run(cmd(stopped), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout
    _assert_same_end(whole, stopped)

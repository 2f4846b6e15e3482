"""BL-JUST: per-group gradients, the γ schedule, exact resume, and reduction to supervised."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from bljust.methods.base import supervised_loss
from bljust.methods.bljust import ScaleGrad, gamma_at, phase_of
from bljust.tracking.checkpoint import load_checkpoint
from bljust.tracking.metrics import read_metrics

# No randomness except the masking draw, so a manual recomputation sees the same losses.
QUIET = ["model.dropout=0.0", "specaug.enabled=false", "optim.grad_clip=0"]


def test_scale_grad_scales_only_the_gradient():
    x = torch.randn(3, requires_grad=True)
    y = ScaleGrad.apply(x, 0.25)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full((3,), 0.25))


class _Cfg:
    def __init__(self, **kw):
        self.gamma0, self.gamma_max, self.gamma_schedule, self.ramp_unit, self.ramp_length = 0.0, 1.0, "linear", "epochs", 10
        self.__dict__.update(kw)


def test_gamma_schedules_exact():
    lin = _Cfg()
    assert [gamma_at(lin, 0, e) for e in (0, 1, 5, 10, 15)] == pytest.approx([0, 0.1, 0.5, 1.0, 1.0])
    steps = _Cfg(ramp_unit="steps", ramp_length=4, gamma0=0.2, gamma_max=0.6)
    assert [gamma_at(steps, s, 0) for s in range(6)] == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.6, 0.6])
    cos = _Cfg(gamma_schedule="cosine", ramp_length=2)
    assert [gamma_at(cos, 0, e) for e in (0, 1, 2, 3)] == pytest.approx([0, 0.5, 1, 1])
    assert gamma_at(_Cfg(gamma_schedule="constant", gamma_max=0.3), 0, 0) == 0.3


def test_phase_plan():
    kinds = [phase_of(s, 2, 3, 7) for s in range(2 * 3 + 7 + 2)]
    assert "".join(p.kind[0] for p in kinds) == "eejjjeejjjeejff"
    assert [p.index for p in kinds if p.kind == "joint"] == list(range(7))
    assert [p.epoch for p in kinds if p.kind == "joint"] == [0, 0, 0, 1, 1, 1, 2]
    warm = [phase_of(s, 2, 3, 7, explore_first=4) for s in range(4 + 2 * 3 + 7 + 2)]
    assert "".join(p.kind[0] for p in warm) == "eeee" + "eejjjeejjjeejff"
    assert [(p.epoch, p.index) for p in warm[:6]] == [(-1, 0), (-1, 1), (-1, 2), (-1, 3), (0, 0), (0, 1)]
    assert warm[4:] == kinds


def _trainer(small_cfg, run_dir, overrides):
    from bljust.train import Trainer

    cfg = small_cfg(["method=bljust", f"run_dir={run_dir}", "eval.max_dev_utts=2", *overrides])
    return Trainer(cfg, Path(run_dir))


@pytest.mark.train
@pytest.mark.filterwarnings(r"ignore:Seems like `optimizer.step\(\)` has been overridden")
def test_joint_step_gives_each_group_its_own_gradient(small_cfg, tmp_path):
    gamma = 0.7
    tr = _trainer(small_cfg, tmp_path, [*QUIET, "method.explore=0", "method.joint_steps_per_epoch=5", "method.finetune=0",
                                        "method.gamma_schedule=constant", f"method.gamma_max={gamma}",
                                        "objective.bestrq.mask_prob=0.1", "objective.bestrq.codebook_size=64"])
    method, ctx = tr.method, tr.ctx
    lab, unl = next(tr.labelled), next(tr.unlabelled_stream())
    ctx.labelled = itertools.repeat(lab)
    ctx.unlabelled = lambda: itertools.repeat(unl)
    for opt in method.optimizers.values():
        opt.step = lambda *a, **k: None  # keep the gradients, skip the update
    torch.manual_seed(11)
    out = method.step(0).record()
    assert out["gamma"] == pytest.approx(gamma)
    got = {name: [p.grad.clone() for p in params] for name, params in method.groups.items()}

    torch.manual_seed(11)
    ls = supervised_loss(ctx, lab)
    lu, _ = method.unsup(ctx.model.encoder, unl.feats, unl.feat_lens)
    assert ls.item() == pytest.approx(out["loss_sup"].item()) and lu.item() == pytest.approx(out["loss_unsup"].item())
    want = {
        "encoder": torch.autograd.grad(ls + gamma * lu, method.groups["encoder"], retain_graph=True),
        "ctc_head": torch.autograd.grad(ls, method.groups["ctc_head"], retain_graph=True),
        "unsup_head": torch.autograd.grad(lu, method.groups["unsup_head"], retain_graph=True),
    }
    for name in want:
        for g, w in zip(got[name], want[name]):
            assert torch.allclose(g, w, rtol=1e-4, atol=1e-7), name
    # the encoder's gradient really contains the L_u term (the test would pass vacuously otherwise)
    only_sup = torch.autograd.grad(ls, method.groups["encoder"])
    assert any(not torch.allclose(g, s, atol=1e-6) for g, s in zip(got["encoder"], only_sup))


@pytest.mark.e2e
def test_gamma_zero_without_exploration_is_supervised(small_cfg, tmp_path):
    steps = ["train.max_steps=4", "train.eval_every=4", "optim.lr=1e-3", *QUIET]
    sup = _trainer(small_cfg, tmp_path / "sup", [*steps, "method=supervised"])
    sup.run()
    bl = _trainer(small_cfg, tmp_path / "bl", [*steps, "method.explore=0", "method.gamma0=0", "method.gamma_max=0",
                                               "method.joint_schedule=cosine", "method.finetune=0",
                                               "method.encoder_lr=1e-3", "method.ctc_head_lr=1e-3",
                                               "method.joint_steps_per_epoch=4", "objective.bestrq.codebook_size=64"])
    bl.run()
    a, b = sup.model.state_dict(), bl.model.state_dict()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


@pytest.mark.e2e
def test_interrupted_run_resumes_with_the_same_gamma_and_weights(small_cfg, tmp_path):
    keys = ["train.max_steps=4", "train.log_every=1", "train.ckpt_every=1", "train.eval_every=100",
            "method.explore=2", "method.joint_steps_per_epoch=2", "method.ramp_unit=steps", "method.ramp_length=3",
            "method.explore_unit=steps", "method.finetune=1", "method.finetune_unit=steps", "method.gamma_max=1",
            "objective.bestrq.codebook_size=64"]
    whole = _trainer(small_cfg, tmp_path / "whole", keys)
    whole.run()

    cut = _trainer(small_cfg, tmp_path / "cut", keys)
    real_step = cut.method.step

    def dies_at_5(step):
        if step == 5:
            raise KeyboardInterrupt  # as if killed: last.pt holds step 5
        return real_step(step)

    cut.method.step = dies_at_5
    with pytest.raises(KeyboardInterrupt):
        cut.run()
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["step"] == 5
    resumed = _trainer(small_cfg, tmp_path / "cut", keys)
    resumed.run()
    gammas = lambda d: [(r["step"], r.get("gamma")) for r in read_metrics(d / "metrics.jsonl") if "step" in r and not r.get("final")]
    assert gammas(tmp_path / "whole") == gammas(tmp_path / "cut")
    assert [g for _, g in gammas(tmp_path / "whole") if g is not None] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.train
def test_bljust_without_exploration_at_constant_gamma_follows_just(small_cfg, tmp_path):
    """BL-JUST with no exploration, no fine-tune and γ = α held constant is JUST with weight α,
    step for step (without clipping: JUST clips one global norm, BL-JUST each group, docs/methods.md).
    The only difference left is that φ_u's gradient is ∇L_u, not α∇L_u, which AdamW's per-parameter
    normalisation all but cancels."""
    from bljust.train import Trainer

    alpha, steps = 0.5, 8
    common = ["train.max_steps=8", "train.log_every=1", "train.eval_every=100", "train.ckpt_every=100",
              "eval.max_dev_utts=2", "optim.grad_clip=0", "optim.lr=2e-3", "objective.bestrq.codebook_size=64",
              "monitor.enabled=false"]
    just = small_cfg([*common, "method=just", f"method.alpha={alpha}", f"run_dir={tmp_path / 'just'}"])
    Trainer(just, tmp_path / "just").run()
    bl = small_cfg([*common, "method=bljust", "method.explore=0", "method.finetune=0", "method.joint_steps_per_epoch=4",
                    "method.gamma_schedule=constant", f"method.gamma_max={alpha}", "method.joint_schedule=cosine",
                    *[f"method.{g}_lr=2e-3" for g in ("encoder", "ctc_head", "unsup_head")],
                    "method.log_grad_cosine=false", f"run_dir={tmp_path / 'bl'}"])
    Trainer(bl, tmp_path / "bl").run()
    rows = lambda d: [r for r in read_metrics(d / "metrics.jsonl") if "loss_sup" in r]
    a, b = rows(tmp_path / "just"), rows(tmp_path / "bl")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, steps + 1))
    assert [r["loss_sup"] for r in b] == pytest.approx([r["loss_sup"] for r in a], abs=1e-4)
    assert [r["loss_unsup"] for r in b] == pytest.approx([r["loss_unsup"] for r in a], abs=1e-4)
    assert a[-1]["loss_sup"] != pytest.approx(a[0]["loss_sup"], abs=1e-3)  # they moved: not vacuous
    assert a[-1]["compute_c"] == b[-1]["compute_c"] == 2 * steps

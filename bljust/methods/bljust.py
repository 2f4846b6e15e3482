"""`method=bljust`: penalty-based bilevel joint training (Saif et al. 2024; PBGD, Shen & Chen 2023).

    min_{θ, φ_s} L_s(θ, φ_s)   s.t.   (θ, φ_u) ∈ argmin L_u(θ, φ_u)

is solved as min L_s + γ (L_u − v), v = min L_u, with γ ramped up. After `explore_first` warm-start
passes (or steps) on L_u, per outer epoch:
  1. exploration: `explore` passes (or steps) descending L_u alone on (θ, φ_u), one AdamW kept for
     the whole run at a constant `explore_lr`;
  2. joint steps on a labelled and an unlabelled batch, each parameter group its own AdamW:
     θ gets ∇(L_s + γ L_u), φ_s gets ∇L_s, φ_u gets ∇L_u;
then `finetune` passes (or steps) of CTC alone at `finetune_lr`, continuing the joint optimisers.
The defaults are the authors' schedule; docs/methods.md says which values are theirs and which
the experiment files scale.

The joint step costs one forward/backward per batch and nothing more: L_u is computed through a
gradient-scaling identity on the encoder output, so one backward pass of L_s + L_u delivers
γ ∇_θ L_u to the encoder while φ_u still receives the unscaled ∇L_u. v is constant in the
upper-level variables (θ belongs to the lower level too), so it only enters the logged gap
L_u − v̂ (`penalty`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import nn

from bljust.config import MethodConfig, Schedule
from bljust.methods.base import (FWD, FWD_BWD, Method, StepOutput, TrainContext, supervised_loss,
                                 unsupervised_loss)
from bljust.objectives import build_unsupervised
from bljust.optim import make_adamw, make_scheduler, optim_with


class Unit(StrEnum):
    steps = "steps"
    passes = "passes"  # over the data set that phase reads (unlabelled: exploration; labelled: fine-tune)


class GammaSchedule(StrEnum):
    linear = "linear"
    constant = "constant"
    cosine = "cosine"


class RampUnit(StrEnum):
    steps = "steps"  # joint steps
    epochs = "epochs"  # outer epochs


class VEstimate(StrEnum):
    explore = "explore"  # L_u at the end of exploration
    copy = "copy"  # V-PBGD: a few L_u steps on a copy, at log steps
    none = "none"


@dataclass
class BLJustConfig(MethodConfig):
    """Penalty-based bilevel joint training (PBGD). train.max_steps counts the joint steps (the
    supervised budget). (paper) marks the authors' value."""

    name: str = "bljust"
    explore: int = 4  # lower-level exploration per outer epoch (paper: 4 passes)
    explore_first: int = 0  # L_u alone before the first outer epoch (the paper's earlier version: 20 passes)
    explore_unit: Unit = Unit.passes  # of explore and explore_first (paper: passes)
    explore_lr: float = 1e-3  # (paper) constant
    joint_steps_per_epoch: int = 0  # 0 = one pass over the labelled data (paper)
    encoder_lr: float = 1e-4  # (paper)
    ctc_head_lr: float = 1e-4  # (paper)
    unsup_head_lr: float = 1e-4  # (paper)
    joint_schedule: Schedule = Schedule.constant  # (paper); cosine = optim.warmup_steps, then cosine decay
    gamma0: float = 0.0  # (paper)
    gamma_max: float = 0.4  # (paper: +1/500 per epoch over 200 epochs)
    gamma_schedule: GammaSchedule = GammaSchedule.linear  # (paper)
    ramp_unit: RampUnit = RampUnit.epochs  # (paper)
    ramp_length: int = 200  # in ramp_unit: gamma reaches gamma_max after this many (paper: 200 epochs)
    scale_upper_by_inv_gamma: bool = False  # PBGD reference: upper step size x min(1/gamma, 1)
    v_estimate: VEstimate = VEstimate.explore
    v_copy_steps: int = 5  # V-PBGD: L_u descent steps of the copy, at log steps only
    finetune: int = 5  # CTC alone at the end (paper: 5 epochs)
    finetune_unit: Unit = Unit.passes
    finetune_lr: float = 1e-5  # (paper)
    # at log steps, cos(∇_θ L_s, ∇_θ L_u) on the encoder: two extra backward passes, not counted in C
    log_grad_cosine: bool = True

    def check(self, cfg) -> list[tuple[bool, str]]:
        return [
            (self.gamma_max >= self.gamma0 >= 0, "method.gamma_max must be >= method.gamma0 >= 0"),
            (min(self.explore, self.explore_first, self.finetune, self.joint_steps_per_epoch, self.ramp_length) >= 0,
             "method.explore, explore_first, finetune, joint_steps_per_epoch and ramp_length must be >= 0"),
            (min(self.explore_lr, self.encoder_lr, self.ctc_head_lr, self.unsup_head_lr, self.finetune_lr) > 0,
             "method.explore_lr, encoder_lr, ctc_head_lr, unsup_head_lr and finetune_lr must be > 0"),
            (self.v_copy_steps >= 1, "method.v_copy_steps must be >= 1"),
        ]


class ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the gradient by `scale` on the way back."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


class GradScaledEncoder(nn.Module):
    """The encoder as L_u sees it in a joint step: same outputs, gradient into θ scaled by γ."""

    def __init__(self, encoder: nn.Module, scale: float):
        super().__init__()
        self.encoder, self.scale = encoder, scale

    def forward(self, feats: torch.Tensor, lens: torch.Tensor):
        h, out_lens = self.encoder(feats, lens)
        return ScaleGrad.apply(h, self.scale), out_lens


def gamma_at(cfg: BLJustConfig, joint_step: int, epoch: int) -> float:
    """γ for a joint step: ramp from gamma0 to gamma_max over ramp_length steps or epochs."""
    if cfg.gamma_schedule == GammaSchedule.constant:
        return cfg.gamma_max
    progress = epoch if cfg.ramp_unit == RampUnit.epochs else joint_step
    frac = 1.0 if cfg.ramp_length <= 0 else min(1.0, progress / cfg.ramp_length)
    if cfg.gamma_schedule == GammaSchedule.cosine:
        frac = 0.5 * (1 - math.cos(math.pi * frac))
    return cfg.gamma0 + (cfg.gamma_max - cfg.gamma0) * frac


@dataclass(frozen=True)
class Phase:
    kind: str  # explore | joint | finetune
    epoch: int
    index: int  # explore: step within the epoch; joint: global joint step; finetune: step within


def phase_of(step: int, explore: int, joint_per_epoch: int, joint_total: int, explore_first: int = 0) -> Phase:
    """Which phase loop step `step` is in: a pure function of the step, so resume is exact.
    The warm-start exploration before the first outer epoch is epoch -1."""
    if step < explore_first:
        return Phase("explore", -1, step)
    s = step - explore_first
    epochs = math.ceil(joint_total / joint_per_epoch)
    for e in range(epochs):
        if s < explore:
            return Phase("explore", e, s)
        s -= explore
        joint_here = min(joint_per_epoch, joint_total - e * joint_per_epoch)
        if s < joint_here:
            return Phase("joint", e, e * joint_per_epoch + s)
        s -= joint_here
    return Phase("finetune", epochs, s)


class BLJust(Method):
    name = "bljust"
    config = BLJustConfig

    def __init__(self, ctx: TrainContext):
        super().__init__(ctx)
        cfg, m = ctx.cfg, self.cfg
        self.unsup = build_unsupervised(cfg).to(ctx.device)
        self.modules["unsup"] = self.unsup
        self.groups = {
            "encoder": list(ctx.model.encoder.parameters()),
            "ctc_head": list(ctx.model.ctc_head.parameters()),
            "unsup_head": list(self.unsup.parameters()),
        }
        lrs = {"encoder": m.encoder_lr, "ctc_head": m.ctc_head_lr, "unsup_head": m.unsup_head_lr}
        joint = cfg.optim if m.joint_schedule == Schedule.cosine else optim_with(cfg.optim, warmup_steps=0,
                                                                                schedule=Schedule.constant)
        for name, params in self.groups.items():
            self.optimizers[name] = make_adamw(params, joint, lr=lrs[name])
            self.schedulers[name] = make_scheduler(self.optimizers[name], joint, cfg.train.max_steps)
        constant = optim_with(cfg.optim, warmup_steps=0, schedule=Schedule.constant)
        self.optimizers["explore"] = make_adamw(self.groups["encoder"] + self.groups["unsup_head"], constant,
                                                lr=m.explore_lr)
        self.schedulers["explore"] = make_scheduler(self.optimizers["explore"], constant, 1)
        self.joint_per_epoch = m.joint_steps_per_epoch or ctx.labelled.batches_per_epoch()
        unl = ctx.unlabelled().batches_per_epoch() if m.explore_unit == Unit.passes and (m.explore or m.explore_first) else 1
        self.explore_steps, self.explore_first_steps = m.explore * unl, m.explore_first * unl
        lab = ctx.labelled.batches_per_epoch() if m.finetune_unit == Unit.passes else 1
        self.finetune_steps = m.finetune * lab
        self.v_hat = torch.tensor(float("nan"))  # estimate of v = min L_u, for the logged gap
        self._last_joint: tuple | None = None  # the last joint step's batches, for diagnostics()

    def total_steps(self) -> int:
        joint = self.ctx.cfg.train.max_steps
        epochs = math.ceil(joint / self.joint_per_epoch)
        return self.explore_first_steps + epochs * self.explore_steps + joint + self.finetune_steps

    def step(self, step: int) -> StepOutput:
        phase = phase_of(step, self.explore_steps, self.joint_per_epoch, self.ctx.cfg.train.max_steps,
                         self.explore_first_steps)
        if phase.kind == "explore":
            return self._explore(phase)
        if phase.kind == "joint":
            return self._joint(phase, log_step=(step + 1) % self.ctx.cfg.train.log_every == 0)
        return self._finetune()

    def _explore(self, phase: Phase) -> StepOutput:
        host = next(self.ctx.unlabelled())
        loss, stats = unsupervised_loss(self.ctx, self.unsup, host.to(self.ctx.device))
        params = self.groups["encoder"] + self.groups["unsup_head"]
        norm = self.update(loss, {"explore": params})["explore"]
        last = self.explore_first_steps if phase.epoch < 0 else self.explore_steps
        if phase.index == last - 1:  # L_u after exploring: the lower level's value
            self.v_hat = loss.detach().cpu()
        return StepOutput(FWD_BWD, host.seconds, {"grad_norm_explore": norm},
                          {"loss_unsup": loss.detach(), "phase": 0.0, "outer_epoch": phase.epoch, **stats})

    def _joint(self, phase: Phase, log_step: bool) -> StepOutput:
        m = self.cfg
        gamma = gamma_at(m, phase.index, phase.epoch)
        lab, unl = next(self.ctx.labelled), next(self.ctx.unlabelled())
        lab_dev, unl_dev = lab.to(self.ctx.device), unl.to(self.ctx.device)
        loss_sup = supervised_loss(self.ctx, lab_dev)
        loss_unsup, stats = unsupervised_loss(self.ctx, self.unsup, unl_dev,
                                              GradScaledEncoder(self.ctx.model.encoder, gamma))
        upper_scale = min(1.0 / gamma, 1.0) if (m.scale_upper_by_inv_gamma and gamma > 0) else 1.0
        if upper_scale != 1.0:  # PBGD: smaller upper-level steps as the penalty grows
            for name in ("encoder", "ctc_head"):
                for group, lr in zip(self.optimizers[name].param_groups, self.schedulers[name].get_last_lr()):
                    group["lr"] = lr * upper_scale
        norms = self.update(loss_sup + loss_unsup, self.groups)
        self.supervised_updates += 1
        self._last_joint = (lab_dev, unl_dev) if log_step else None
        compute = 2 * FWD_BWD
        values = {"loss_sup": loss_sup.detach(), "loss_unsup": loss_unsup.detach(), "gamma": gamma,
                  "upper_scale": upper_scale, "phase": 1.0, "outer_epoch": phase.epoch,
                  "lr": self.schedulers["encoder"].get_last_lr()[0], **stats}
        if log_step and m.v_estimate == VEstimate.copy:
            self.v_hat = self._v_by_copy(unl_dev)
            compute += m.v_copy_steps * FWD_BWD + FWD
        if m.v_estimate != VEstimate.none:
            values["penalty"] = loss_unsup.detach().cpu() - self.v_hat  # the lower level's gap L_u - v̂
            values["v_hat"] = self.v_hat
        return StepOutput(compute, lab.seconds + unl.seconds, {f"grad_norm_{k}": v for k, v in norms.items()}, values)

    def diagnostics(self, step: int) -> dict[str, float]:
        """cos(∇_θ L_s, ∇_θ L_u) over the encoder's parameters, on the last joint step's batches and
        weights after its update: two forward/backward passes outside the compute count. In eval
        mode and with the RNG state restored, so logging it leaves training unchanged."""
        if not (self.cfg.log_grad_cosine and self._last_joint):
            return {}
        lab, unl = self._last_joint
        self._last_joint = None
        model, params = self.ctx.model, self.groups["encoder"]
        devices = [self.ctx.device] if self.ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            was_training = model.training
            model.eval()
            try:
                g_s = torch.autograd.grad(supervised_loss(self.ctx, lab), params, allow_unused=True)
                g_u = torch.autograd.grad(unsupervised_loss(self.ctx, self.unsup, unl)[0], params, allow_unused=True)
            finally:
                model.train(was_training)
        flat = [torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float() for g, p in zip(gs, params)])
                for gs in (g_s, g_u)]
        return {"grad_cos_sup_unsup": float(torch.nn.functional.cosine_similarity(flat[0], flat[1], dim=0))}

    def _v_by_copy(self, batch) -> torch.Tensor:
        """V-PBGD: descend L_u for a few steps on a copy of (θ, φ_u); its final loss estimates v.

        Runs at log steps only, so joint steps stay at one forward/backward per batch.
        """
        encoder, unsup = copy.deepcopy(self.ctx.model.encoder), copy.deepcopy(self.unsup)
        opt = torch.optim.AdamW(list(encoder.parameters()) + list(unsup.parameters()), lr=self.cfg.explore_lr)
        for _ in range(self.cfg.v_copy_steps):
            with self.ctx.autocast():
                loss, _ = unsup(encoder, batch.feats, batch.feat_lens)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad(), self.ctx.autocast():
            loss, _ = unsup(encoder, batch.feats, batch.feat_lens)
        return loss.detach().float().cpu()

    def _finetune(self) -> StepOutput:
        """CTC alone, continuing the joint encoder and CTC-head optimisers (their moments) at finetune_lr."""
        host = next(self.ctx.labelled)
        loss = supervised_loss(self.ctx, host.to(self.ctx.device))
        for name in ("encoder", "ctc_head"):
            for group in self.optimizers[name].param_groups:
                group["lr"] = self.cfg.finetune_lr
        groups = {k: self.groups[k] for k in ("encoder", "ctc_head")}
        norms = self.update(loss, groups, schedule=False)
        self.supervised_updates += 1
        return StepOutput(FWD_BWD, host.seconds, {f"grad_norm_{k}": v for k, v in norms.items()},
                          {"loss_sup": loss.detach(), "phase": 2.0, "lr": self.cfg.finetune_lr})

    def state_dict(self):
        return {**super().state_dict(), "v_hat": self.v_hat}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.v_hat = state["v_hat"]

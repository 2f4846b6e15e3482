"""`method=bljust`: penalty-based bilevel joint training (Saif et al. 2024; PBGD, Shen & Chen 2023).

    min_{θ, φ_s} L_s(θ, φ_s)   s.t.   (θ, φ_u) ∈ argmin L_u(θ, φ_u)

is solved as min L_s + γ (L_u − v), v = min L_u, with γ ramped up. After `explore_first` warm-start
steps on L_u, per outer epoch:
  1. exploration: `explore` steps (or passes) descending L_u alone on (θ, φ_u), own AdamW;
  2. joint steps on a labelled and an unlabelled batch, each parameter group its own AdamW:
     θ gets ∇(L_s + γ L_u), φ_s gets ∇L_s, φ_u gets ∇L_u;
then `finetune_steps` supervised-only steps at a small learning rate.

The joint step costs one forward/backward per batch and nothing more: L_u is computed through a
gradient-scaling identity on the encoder output, so one backward pass of L_s + L_u delivers
γ ∇_θ L_u to the encoder while φ_u still receives the unscaled ∇L_u. v is constant in the
upper-level variables (θ belongs to the lower level too), so it only enters the logged penalty
estimate L_u − v̂.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from bljust.methods.base import Method, TrainContext, supervised_loss, unsupervised_loss
from bljust.objectives import build_unsupervised
from bljust.optim import make_adamw, make_scheduler, optim_with


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


def gamma_at(cfg, joint_step: int, epoch: int) -> float:
    """γ for a joint step: ramp from gamma0 to gamma_max over ramp_length steps or epochs."""
    if cfg.gamma_schedule == "constant":
        return cfg.gamma_max
    progress = epoch if cfg.ramp_unit == "epochs" else joint_step
    frac = 1.0 if cfg.ramp_length <= 0 else min(1.0, progress / cfg.ramp_length)
    if cfg.gamma_schedule == "cosine":
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

    def __init__(self, ctx: TrainContext):
        super().__init__(ctx)
        cfg, m = ctx.cfg, ctx.cfg.method
        self.unsup = build_unsupervised(cfg).to(ctx.device)
        self.modules["unsup"] = self.unsup
        self.groups = {
            "encoder": list(ctx.model.encoder.parameters()),
            "ctc_head": list(ctx.model.ctc_head.parameters()),
            "unsup_head": list(self.unsup.parameters()),
        }
        lrs = {"encoder": m.encoder_lr, "ctc_head": m.ctc_head_lr, "unsup_head": m.unsup_head_lr}
        for name, params in self.groups.items():
            self.optimizers[name] = make_adamw(params, cfg.optim, lr=lrs[name])
            self.schedulers[name] = make_scheduler(self.optimizers[name], cfg.optim, cfg.train.max_steps)
        constant = optim_with(cfg.optim, warmup_steps=0, schedule="constant")
        self.optimizers["explore"] = make_adamw(self.groups["encoder"] + self.groups["unsup_head"], constant,
                                                lr=m.explore_lr)
        self.optimizers["finetune"] = make_adamw(self.groups["encoder"] + self.groups["ctc_head"], constant,
                                                 lr=m.finetune_lr)
        for name in ("explore", "finetune"):
            self.schedulers[name] = make_scheduler(self.optimizers[name], constant, 1)
        self.joint_per_epoch = m.joint_steps_per_epoch or ctx.labelled.batches_per_epoch()
        self.explore_steps = m.explore if m.explore_unit == "steps" else m.explore * ctx.unlabelled().batches_per_epoch()
        self.v_hat = torch.tensor(float("nan"))  # estimate of v = min L_u, for the logged penalty

    def total_steps(self) -> int:
        m, joint = self.ctx.cfg.method, self.ctx.cfg.train.max_steps
        return m.explore_first + math.ceil(joint / self.joint_per_epoch) * self.explore_steps + joint + m.finetune_steps

    def step(self, step: int) -> dict[str, torch.Tensor | float]:
        phase = phase_of(step, self.explore_steps, self.joint_per_epoch, self.ctx.cfg.train.max_steps,
                         self.ctx.cfg.method.explore_first)
        if phase.kind == "explore":
            return self._explore(phase)
        if phase.kind == "joint":
            return self._joint(phase, log_step=(step + 1) % self.ctx.cfg.train.log_every == 0)
        return self._finetune()

    def _explore(self, phase: Phase) -> dict[str, torch.Tensor | float]:
        host = next(self.ctx.unlabelled())
        loss, stats = unsupervised_loss(self.ctx, self.unsup, host.to(self.ctx.device))
        params = self.groups["encoder"] + self.groups["unsup_head"]
        norm = self.update(loss, {"explore": params})["explore"]
        last = self.ctx.cfg.method.explore_first if phase.epoch < 0 else self.explore_steps
        if phase.index == last - 1:  # L_u after exploring: the lower level's value
            self.v_hat = loss.detach().cpu()
        return {"loss_unsup": loss.detach(), "grad_norm_explore": norm, "phase": 0.0, "outer_epoch": phase.epoch,
                "batch_seconds": host.seconds, **stats}

    def _joint(self, phase: Phase, log_step: bool) -> dict[str, torch.Tensor | float]:
        m = self.ctx.cfg.method
        gamma = gamma_at(m, phase.index, phase.epoch)
        lab, unl = next(self.ctx.labelled), next(self.ctx.unlabelled())
        unl_dev = unl.to(self.ctx.device)
        loss_sup = supervised_loss(self.ctx, lab.to(self.ctx.device))
        loss_unsup, stats = unsupervised_loss(self.ctx, self.unsup, unl_dev,
                                              GradScaledEncoder(self.ctx.model.encoder, gamma))
        upper_scale = min(1.0 / gamma, 1.0) if (m.scale_upper_by_inv_gamma and gamma > 0) else 1.0
        if upper_scale != 1.0:  # PBGD: smaller upper-level steps as the penalty grows
            for name in ("encoder", "ctc_head"):
                for group, lr in zip(self.optimizers[name].param_groups, self.schedulers[name].get_last_lr()):
                    group["lr"] = lr * upper_scale
        norms = self.update(loss_sup + loss_unsup, self.groups)
        self.supervised_updates += 1
        out = {"loss_sup": loss_sup.detach(), "loss_unsup": loss_unsup.detach(), "gamma": gamma,
               "upper_scale": upper_scale, "phase": 1.0, "outer_epoch": phase.epoch,
               "lr": self.schedulers["encoder"].get_last_lr()[0],
               "batch_seconds": lab.seconds + unl.seconds, **stats,
               **{f"grad_norm_{k}": v for k, v in norms.items()}}
        if log_step and m.v_estimate == "copy":
            self.v_hat = self._v_by_copy(unl_dev)
        if m.v_estimate != "none":
            out["penalty"] = loss_unsup.detach().cpu() - self.v_hat
            out["v_hat"] = self.v_hat
        return out

    def _v_by_copy(self, batch) -> torch.Tensor:
        """V-PBGD: descend L_u for a few steps on a copy of (θ, φ_u); its final loss estimates v.

        Runs at log steps only, so joint steps stay at one forward/backward per batch.
        """
        encoder, unsup = copy.deepcopy(self.ctx.model.encoder), copy.deepcopy(self.unsup)
        opt = torch.optim.AdamW(list(encoder.parameters()) + list(unsup.parameters()), lr=self.ctx.cfg.method.explore_lr)
        for _ in range(self.ctx.cfg.method.v_copy_steps):
            with self.ctx.autocast():
                loss, _ = unsup(encoder, batch.feats, batch.feat_lens)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad(), self.ctx.autocast():
            loss, _ = unsup(encoder, batch.feats, batch.feat_lens)
        return loss.detach().float().cpu()

    def _finetune(self) -> dict[str, torch.Tensor | float]:
        host = next(self.ctx.labelled)
        loss = supervised_loss(self.ctx, host.to(self.ctx.device))
        norm = self.update(loss, {"finetune": self.groups["encoder"] + self.groups["ctc_head"]})["finetune"]
        self.supervised_updates += 1
        return {"loss_sup": loss.detach(), "grad_norm_finetune": norm, "phase": 2.0, "batch_seconds": host.seconds}

    def state_dict(self):
        return {**super().state_dict(), "v_hat": self.v_hat}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.v_hat = state["v_hat"]

"""`method=just`: joint training with a fixed weight, L_s + alpha * L_u, every step."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bljust.config import MethodConfig
from bljust.methods.base import FWD_BWD, Method, StepOutput, TrainContext, supervised_loss, unsupervised_loss
from bljust.objectives import build_unsupervised
from bljust.optim import make_adamw, make_scheduler


@dataclass
class JustConfig(MethodConfig):
    """Every step: L_s on a labelled batch + alpha * L_u on an unlabelled batch, one optimiser."""

    name: str = "just"
    alpha: float = 0.5

    def check(self, cfg) -> list[tuple[bool, str]]:
        return [(self.alpha >= 0, "method.alpha must be >= 0")]


class Just(Method):
    name = "just"
    config = JustConfig

    def __init__(self, ctx: TrainContext):
        super().__init__(ctx)
        self.unsup = build_unsupervised(ctx.cfg).to(ctx.device)
        self.modules["unsup"] = self.unsup
        self.params = list(ctx.model.parameters()) + list(self.unsup.parameters())
        self.optimizers["main"] = make_adamw(self.params, ctx.cfg.optim)
        self.schedulers["main"] = make_scheduler(self.optimizers["main"], ctx.cfg.optim, ctx.cfg.train.max_steps)

    def step(self, step: int) -> StepOutput:
        lab, unl = next(self.ctx.labelled), next(self.ctx.unlabelled())
        loss_sup = supervised_loss(self.ctx, lab.to(self.ctx.device))
        loss_unsup, stats = unsupervised_loss(self.ctx, self.unsup, unl.to(self.ctx.device))
        norm = self.update(loss_sup + self.cfg.alpha * loss_unsup, {"main": self.params})["main"]
        self.supervised_updates += 1
        return StepOutput(2 * FWD_BWD, lab.seconds + unl.seconds, {"grad_norm": norm},
                          {"loss_sup": loss_sup.detach(), "loss_unsup": loss_unsup.detach(),
                           "lr": self.schedulers["main"].get_last_lr()[0], **stats})

"""`method=just`: joint training with a fixed weight, L_s + alpha * L_u, every step."""

from __future__ import annotations

import torch

from bljust.methods.base import Method, TrainContext, supervised_loss, unsupervised_loss
from bljust.objectives import build_unsupervised
from bljust.optim import make_adamw, make_scheduler


class Just(Method):
    name = "just"

    def __init__(self, ctx: TrainContext):
        super().__init__(ctx)
        self.unsup = build_unsupervised(ctx.cfg).to(ctx.device)
        self.modules["unsup"] = self.unsup
        self.params = list(ctx.model.parameters()) + list(self.unsup.parameters())
        self.optimizers["main"] = make_adamw(self.params, ctx.cfg.optim)
        self.schedulers["main"] = make_scheduler(self.optimizers["main"], ctx.cfg.optim, ctx.cfg.train.max_steps)

    def step(self, step: int) -> dict[str, torch.Tensor | float]:
        lab, unl = next(self.ctx.labelled), next(self.ctx.unlabelled())
        loss_sup = supervised_loss(self.ctx, lab.to(self.ctx.device))
        loss_unsup, stats = unsupervised_loss(self.ctx, self.unsup, unl.to(self.ctx.device))
        norm = self.update(loss_sup + self.ctx.cfg.method.alpha * loss_unsup, {"main": self.params})["main"]
        self.supervised_updates += 1
        return {"loss_sup": loss_sup.detach(), "loss_unsup": loss_unsup.detach(), "grad_norm": norm,
                "lr": self.schedulers["main"].get_last_lr()[0], "batch_seconds": lab.seconds + unl.seconds, **stats}

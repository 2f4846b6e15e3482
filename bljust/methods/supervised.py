"""`method=supervised`: CTC on labelled data only, the floor every other method must beat."""

from __future__ import annotations

import torch

from bljust.methods.base import Method, TrainContext, supervised_loss
from bljust.optim import make_adamw, make_scheduler


class Supervised(Method):
    name = "supervised"

    def __init__(self, ctx: TrainContext):
        super().__init__(ctx)
        self.params = [p for p in ctx.model.parameters() if p.requires_grad]
        self.optimizers["main"] = make_adamw(self.params, ctx.cfg.optim)
        self.schedulers["main"] = make_scheduler(self.optimizers["main"], ctx.cfg.optim, ctx.cfg.train.max_steps)

    def step(self, step: int) -> dict[str, torch.Tensor | float]:
        host_batch = next(self.ctx.labelled)
        batch = host_batch.to(self.ctx.device)
        loss = supervised_loss(self.ctx, batch)
        norm = self.update(loss, {"main": self.params})["main"]
        self.supervised_updates += 1
        return {"loss_sup": loss.detach(), "grad_norm": norm, "lr": self.schedulers["main"].get_last_lr()[0],
                "batch_seconds": host_batch.seconds}

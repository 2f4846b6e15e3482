"""`method=supervised`: CTC on labelled data only, the floor every other method must beat."""

from __future__ import annotations

from dataclasses import dataclass

from bljust.config import MethodConfig
from bljust.methods.base import FWD_BWD, Method, StepOutput, TrainContext, supervised_loss
from bljust.optim import make_adamw, make_scheduler


@dataclass
class SupervisedConfig(MethodConfig):
    name: str = "supervised"


class Supervised(Method):
    name = "supervised"
    config = SupervisedConfig

    def __init__(self, ctx: TrainContext):
        super().__init__(ctx)
        self.params = [p for p in ctx.model.parameters() if p.requires_grad]
        self.optimizers["main"] = make_adamw(self.params, ctx.cfg.optim)
        self.schedulers["main"] = make_scheduler(self.optimizers["main"], ctx.cfg.optim, ctx.cfg.train.max_steps)

    def step(self, step: int) -> StepOutput:
        host = next(self.ctx.labelled)
        loss = supervised_loss(self.ctx, host.to(self.ctx.device))
        norm = self.update(loss, {"main": self.params})["main"]
        self.supervised_updates += 1
        return StepOutput(FWD_BWD, host.seconds, {"grad_norm": norm},
                          {"loss_sup": loss.detach(), "lr": self.schedulers["main"].get_last_lr()[0]})

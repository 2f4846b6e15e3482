"""`method=ptft`: pre-train the encoder on L_u, then fine-tune it with a fresh CTC head on L_s.

One run does both stages: steps [0, pretrain_steps) are stage 1 on unlabelled batches, then
train.max_steps fine-tuning steps on labelled batches (so train.max_steps is the number of
supervised updates, as for every method). Each stage has its own AdamW and schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

from bljust.config import MethodConfig
from bljust.methods.base import FWD_BWD, Method, StepOutput, TrainContext, supervised_loss, unsupervised_loss
from bljust.objectives import build_unsupervised
from bljust.optim import make_adamw, make_scheduler, optim_with


@dataclass
class PtftConfig(MethodConfig):
    """Pre-train on L_u for `pretrain_steps`, then fine-tune on L_s for train.max_steps steps."""

    name: str = "ptft"
    pretrain_steps: int = 1000
    pretrain_lr: float = 1e-3
    pretrain_warmup_steps: int = 200
    freeze_encoder_steps: int = 0  # fine-tune only the fresh CTC head for this many steps first

    def check(self, cfg) -> list[tuple[bool, str]]:
        return [(self.pretrain_steps >= 0, "method.pretrain_steps must be >= 0"),
                (self.freeze_encoder_steps >= 0 and self.pretrain_warmup_steps >= 0,
                 "method.pretrain_warmup_steps and method.freeze_encoder_steps must be >= 0")]


class Ptft(Method):
    name = "ptft"
    config = PtftConfig

    def __init__(self, ctx: TrainContext):
        super().__init__(ctx)
        cfg, m = ctx.cfg, self.cfg
        self.unsup = build_unsupervised(cfg).to(ctx.device)
        self.modules["unsup"] = self.unsup
        self.encoder_params = list(ctx.model.encoder.parameters())
        self.head_params = list(ctx.model.ctc_head.parameters())
        self.pre_params = self.encoder_params + list(self.unsup.parameters())
        pre_optim = optim_with(cfg.optim, lr=m.pretrain_lr, warmup_steps=m.pretrain_warmup_steps)
        self.optimizers["pretrain"] = make_adamw(self.pre_params, pre_optim)
        self.schedulers["pretrain"] = make_scheduler(self.optimizers["pretrain"], pre_optim, max(1, m.pretrain_steps))
        self.optimizers["finetune"] = make_adamw(self.encoder_params + self.head_params, cfg.optim)
        self.schedulers["finetune"] = make_scheduler(self.optimizers["finetune"], cfg.optim, cfg.train.max_steps)

    def total_steps(self) -> int:
        return self.cfg.pretrain_steps + self.ctx.cfg.train.max_steps

    def step(self, step: int) -> StepOutput:
        m = self.cfg
        if step < m.pretrain_steps:
            host = next(self.ctx.unlabelled())
            loss, stats = unsupervised_loss(self.ctx, self.unsup, host.to(self.ctx.device))
            norm = self.update(loss, {"pretrain": self.pre_params})["pretrain"]
            return StepOutput(FWD_BWD, host.seconds, {"grad_norm": norm},
                              {"loss_unsup": loss.detach(), "stage": 1.0,
                               "lr": self.schedulers["pretrain"].get_last_lr()[0], **stats})
        host = next(self.ctx.labelled)
        loss = supervised_loss(self.ctx, host.to(self.ctx.device))
        frozen = self.encoder_params if step - m.pretrain_steps < m.freeze_encoder_steps else ()
        norm = self.update(loss, {"finetune": self.encoder_params + self.head_params}, frozen)["finetune"]
        self.supervised_updates += 1
        return StepOutput(FWD_BWD, host.seconds, {"grad_norm": norm},
                          {"loss_sup": loss.detach(), "stage": 2.0, "lr": self.schedulers["finetune"].get_last_lr()[0]})

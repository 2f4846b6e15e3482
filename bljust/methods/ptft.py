"""`method=ptft`: pre-train the encoder on L_u, then fine-tune it with a fresh CTC head on L_s.

One run does both stages: steps [0, pretrain_steps) are stage 1 on unlabelled batches, then
train.max_steps fine-tuning steps on labelled batches (so train.max_steps is the number of
supervised updates, as for every method). Each stage has its own AdamW and schedule.
"""

from __future__ import annotations

import torch

from bljust.methods.base import Method, TrainContext, supervised_loss, unsupervised_loss
from bljust.objectives import build_unsupervised
from bljust.optim import make_adamw, make_scheduler, optim_with


class Ptft(Method):
    name = "ptft"

    def __init__(self, ctx: TrainContext):
        super().__init__(ctx)
        cfg, m = ctx.cfg, ctx.cfg.method
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
        return self.ctx.cfg.method.pretrain_steps + self.ctx.cfg.train.max_steps

    def step(self, step: int) -> dict[str, torch.Tensor | float]:
        m = self.ctx.cfg.method
        if step < m.pretrain_steps:
            host = next(self.ctx.unlabelled())
            loss, stats = unsupervised_loss(self.ctx, self.unsup, host.to(self.ctx.device))
            norm = self.update(loss, {"pretrain": self.pre_params})["pretrain"]
            return {"loss_unsup": loss.detach(), "grad_norm": norm, "stage": 1.0, "batch_seconds": host.seconds,
                    "lr": self.schedulers["pretrain"].get_last_lr()[0], **stats}
        host = next(self.ctx.labelled)
        loss = supervised_loss(self.ctx, host.to(self.ctx.device))
        frozen = self.encoder_params if step - m.pretrain_steps < m.freeze_encoder_steps else ()
        norm = self.update(loss, {"finetune": self.encoder_params + self.head_params}, frozen)["finetune"]
        self.supervised_updates += 1
        return {"loss_sup": loss.detach(), "grad_norm": norm, "stage": 2.0, "batch_seconds": host.seconds,
                "lr": self.schedulers["finetune"].get_last_lr()[0]}

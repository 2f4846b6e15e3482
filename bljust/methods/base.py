"""What every method shares: the registry, the training context, the step's typed output, the
supervised loss and optimiser bookkeeping.

A method is one module in this package: a config dataclass (extending `MethodConfig`, with its
checks) and a `Method` subclass naming it; defining the subclass registers it in `METHODS`, and
`conf/method/<name>.yaml` makes it selectable (`method=<name>`).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch

from bljust.config import Config, MethodConfig, method_config
from bljust.distributed import all_reduce_grads
from bljust.data.dataset import Batch, BatchStream
from bljust.data.specaug import SpecAugment
from bljust.models.asr import AsrModel
from bljust.objectives.ctc import ctc_loss


@dataclass
class TrainContext:
    """Everything a method needs to take a step; built by the trainer."""

    cfg: Config
    model: AsrModel
    device: torch.device
    labelled: BatchStream
    unlabelled: Callable[[], BatchStream]  # built on first use: supervised never reads unlabelled audio
    specaug: SpecAugment
    out_dir: Path | None = None  # the run folder, for methods that write files there (pseudo_label offline)

    @property
    def compute_dtype(self) -> torch.dtype:
        """bf16 on CUDA (or when asked for), fp32 otherwise: what the matmuls of a step run in."""
        p = self.cfg.train.precision
        return torch.bfloat16 if p == "bf16" or (p == "auto" and self.device.type == "cuda") else torch.float32

    def autocast(self):
        """bf16 autocast where compute_dtype is bf16, plain fp32 otherwise."""
        if self.compute_dtype == torch.bfloat16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()


# Compute is counted in C: a forward+backward pass over one batch (up to train.max_duration seconds
# of audio) is 1 C; a forward-only pass (labelling, V-PBGD's copy evaluation) is 1/3 C, the usual
# estimate of a backward pass costing twice a forward one.
FWD_BWD = 1.0
FWD = 1.0 / 3.0


@dataclass
class StepOutput:
    """What one step reports. Each field says how it combines over micro-batches and DDP ranks."""

    compute_c: float  # C spent: summed over micro-batches (per rank: each rank's batch is max_duration)
    batch_seconds: float  # audio in the update: summed over micro-batches and ranks (the effective batch)
    grad_norms: dict[str, torch.Tensor] = field(default_factory=dict)  # pre-clip, of the update: the last micro-batch's
    values: dict[str, Any] = field(default_factory=dict)  # losses, lr, statistics: means over micro-batches and ranks

    def record(self) -> dict[str, Any]:
        """Everything as one flat record (the metrics.jsonl keys)."""
        return {**self.values, **self.grad_norms, "batch_seconds": self.batch_seconds, "compute_c": self.compute_c}

    @staticmethod
    def combine(outs: list["StepOutput"]) -> "StepOutput":
        """One update's output from its micro-batches' outputs."""
        keys = outs[-1].values
        return StepOutput(sum(o.compute_c for o in outs), sum(o.batch_seconds for o in outs), outs[-1].grad_norms,
                          {k: sum(o.values[k] for o in outs) / len(outs) for k in keys})


METHODS: dict[str, type["Method"]] = {}


def supervised_loss(ctx: TrainContext, batch: Batch) -> torch.Tensor:
    """CTC loss on a labelled batch with SpecAugment."""
    with ctx.autocast():
        logits, lens = ctx.model(ctx.specaug(batch.feats), batch.feat_lens)
    return ctc_loss(logits, lens, batch.tokens, batch.token_lens)


def unsupervised_loss(ctx: TrainContext, objective: torch.nn.Module, batch: Batch,
                      encoder: torch.nn.Module | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_u on an unlabelled batch (no SpecAugment: the objective does its own masking).

    `encoder` replaces the model's encoder as the objective sees it (BL-JUST's gradient scaling).
    """
    with ctx.autocast():
        return objective(encoder or ctx.model.encoder, batch.feats, batch.feat_lens)


def clip_and_check(params: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Clip gradients by global norm; returns the pre-clip norm (inf/NaN if any grad is non-finite)."""
    return torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))


class Method:
    """What one training step does. Subclasses set `name` and `config` (their config dataclass),
    set `optimizers`/`schedulers` and implement step().

    step() returns tensors (not Python floats) so the loop syncs with the device only at log steps.
    """

    name: ClassVar[str]
    config: ClassVar[type[MethodConfig]]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            METHODS[cls.name] = cls

    def __init__(self, ctx: TrainContext):
        self.ctx = ctx
        self.cfg = method_config(ctx.cfg)  # typed: this method's own dataclass
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}
        self.modules: dict[str, torch.nn.Module] = {}  # trainable parts outside the model (L_u heads)
        self.supervised_updates = 0
        # skipped updates over the run, and in a row (the trainer stops past a limit): counted on the
        # device by update(), read (a sync) only at log steps and checkpoints
        self._nonfinite_skips, self._nonfinite_streak = torch.zeros(()), torch.zeros(())
        self.accum = ctx.cfg.train.accum_grad
        self.micro = 0  # which micro-batch of the current update step() is on

    def total_steps(self) -> int:
        """Steps the loop runs. train.max_steps is the supervised budget; methods that add a
        separate phase (ptft's pre-training) add its steps on top."""
        return self.ctx.cfg.train.max_steps

    def step(self, step: int) -> StepOutput:
        raise NotImplementedError

    def diagnostics(self, step: int) -> dict[str, float]:
        """Extra values for log steps, outside the compute count (e.g. BL-JUST's gradient cosine)."""
        return {}

    def train_step(self, step: int) -> StepOutput:
        """One update: `train.accum_grad` calls of step() on fresh batches, one optimiser step."""
        if self.accum == 1:
            return self.step(step)
        before, outs = self.supervised_updates, []
        for self.micro in range(self.accum):
            outs.append(self.step(step))
        self.micro = 0
        self.supervised_updates = before + (self.supervised_updates - before) // self.accum
        return StepOutput.combine(outs)

    def update(self, loss: torch.Tensor, groups: dict[str, list[torch.nn.Parameter]],
               frozen: list[torch.nn.Parameter] = (), schedule: bool = True) -> dict[str, torch.Tensor]:
        """One backward pass of `loss`, then a step of each named optimiser on its group.

        With gradient accumulation the gradients of `train.accum_grad` micro-batches add up (each
        loss divided by their number) and only the last one steps. Before clipping, gradients are
        averaged over DDP ranks, so every rank clips, checks and steps on the same numbers. Each
        group is clipped on its own and its pre-clip norm returned. A non-finite gradient in any
        group skips the whole step (counted). `frozen` parameters keep their values. With
        `schedule=False` the learning-rate schedulers do not advance (the caller sets the rate).
        """
        if self.micro == 0:
            for name in groups:
                self.optimizers[name].zero_grad(set_to_none=True)
        (loss / self.accum if self.accum > 1 else loss).backward()
        for p in frozen:
            p.grad = None
        if self.micro < self.accum - 1:
            return {name: torch.full((), float("nan")) for name in groups}
        all_reduce_grads([p for params in groups.values() for p in params])
        norms = {name: clip_and_check(params, self.ctx.cfg.optim.grad_clip) for name, params in groups.items()}
        found_inf = (~torch.isfinite(torch.stack(list(norms.values())).float())).any().float()
        fused = [self.optimizers[name].defaults.get("fused") for name in groups]
        if all(fused):  # the fused kernel skips the update itself when found_inf = 1: no host sync
            for name in groups:
                self.optimizers[name].found_inf = found_inf
                self.optimizers[name].step()
        elif not found_inf.item():
            for name in groups:
                self.optimizers[name].step()
        self._nonfinite_skips = self._nonfinite_skips.to(found_inf.device) + found_inf
        self._nonfinite_streak = (self._nonfinite_streak.to(found_inf.device) + found_inf) * found_inf
        if schedule:
            for name in groups:
                self.schedulers[name].step()
        return norms

    @property
    def nonfinite_skips(self) -> int:
        return int(self._nonfinite_skips.item())

    @property
    def nonfinite_streak(self) -> int:
        return int(self._nonfinite_streak.item())

    def state_dict(self) -> dict[str, Any]:
        return {
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "supervised_updates": self.supervised_updates,
            "nonfinite_skips": self.nonfinite_skips,
            "nonfinite_streak": self.nonfinite_streak,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        self.supervised_updates = state["supervised_updates"]
        self._nonfinite_skips = torch.tensor(float(state["nonfinite_skips"]))
        self._nonfinite_streak = torch.tensor(float(state.get("nonfinite_streak", 0)))

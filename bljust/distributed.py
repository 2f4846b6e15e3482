"""Data-parallel training across processes: torchrun, or a submitit (SLURM / local) job.

The process group is detected from the environment (RANK / WORLD_SIZE / LOCAL_RANK as torchrun
and `submitit.helpers.TorchDistributedEnvironment` set them); with one process every helper here
is a no-op, so the single-process path stays exactly what it was.

Gradients are averaged by an explicit all-reduce after the backward pass (`all_reduce_grads`),
not by wrapping the model in DistributedDataParallel: our methods call the encoder outside
`model.forward` (L_u goes through the objective), keep the L_u head outside the model, and switch
parameter sets between phases (ptft's pre-training never calls `model.forward`; BL-JUST explores,
steps jointly, fine-tunes). DDP's reducer assumes every trainable parameter is reached from the
wrapped forward once per iteration, which none of that satisfies without find_unused_parameters
and a wrapper per head. The price is that communication does not overlap the backward pass.

Control messages (stop flags, gathered eval results, RNG states) go over a CPU (gloo) group so
they never wait on the GPU stream.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterable

import torch
import torch.distributed as dist

_control: Any = None  # the gloo group for small CPU messages; WORLD when the backend is gloo


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _export_submitit_env() -> None:
    """Inside a multi-task submitit job: the torchrun-style variables, derived from SLURM's."""
    import submitit

    if submitit.JobEnvironment().num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def init_from_env(use_cuda: bool, timeout_min: float = 60.0) -> DistInfo:
    """Join the process group the launcher set up (nccl on CUDA, gloo on CPU); no-op when alone.

    The timeout bounds how long a rank waits for the others (rank 0's dev evaluation included).
    """
    global _control
    if "WORLD_SIZE" not in os.environ and os.environ.get("SUBMITIT_EXECUTOR"):
        _export_submitit_env()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local % torch.cuda.device_count())
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(minutes=timeout_min))
        _control = dist.new_group(backend="gloo") if use_cuda else dist.group.WORLD
    return DistInfo(rank, world, local)


def shutdown() -> None:
    global _control
    if dist.is_initialized():
        dist.destroy_process_group()
    _control = None


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_grads(params: Iterable[torch.nn.Parameter], bucket_elems: int = 1 << 24) -> None:
    """Average `.grad` over ranks, in flat buckets (one collective per ~64 MB of fp32).

    A parameter with a gradient on some rank and none on another (a head that a rank's batch did
    not reach) gets zeros where missing, so every rank sends the same buckets and none hangs.
    Parameters without a gradient anywhere keep `.grad = None` (the optimiser skips them).
    """
    world = world_size()
    if world == 1:
        return
    params = list({id(p): p for p in params if p.requires_grad}.values())
    if not params:
        return
    device = params[0].device
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.uint8, device=device)
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    for p, anywhere in zip(params, has.tolist()):
        if anywhere and p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params if p.grad is not None]
    pending = []
    for bucket in _buckets(grads, bucket_elems):
        flat = torch.cat([g.reshape(-1) for g in bucket])
        pending.append((bucket, flat, dist.all_reduce(flat, async_op=True)))
    for bucket, flat, work in pending:
        work.wait()
        flat.div_(world)
        for g, v in zip(bucket, flat.split([g.numel() for g in bucket])):
            g.copy_(v.view_as(g))


def _buckets(tensors: list[torch.Tensor], cap: int) -> Iterable[list[torch.Tensor]]:
    """Consecutive runs of same-dtype tensors of at most `cap` elements (one tensor may exceed it)."""
    bucket: list[torch.Tensor] = []
    size = 0
    for t in tensors:
        if bucket and (size + t.numel() > cap or t.dtype != bucket[0].dtype):
            yield bucket
            bucket, size = [], 0
        bucket.append(t)
        size += t.numel()
    if bucket:
        yield bucket


def broadcast_state(modules: Iterable[torch.nn.Module]) -> None:
    """Rank 0's parameters and buffers everywhere, so every rank starts from the same weights."""
    if world_size() == 1:
        return
    for module in modules:
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def agree_max(value: float) -> float:
    """The largest `value` over ranks (a stop request raised on any rank stops them all)."""
    if world_size() == 1:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control)
    return float(t.item())


def reduce_record(record: dict[str, Any], sum_keys: tuple[str, ...] = ()) -> dict[str, float]:
    """Numbers averaged over ranks (summed for `sum_keys`); one CPU collective for the lot.

    Every rank must pass the same keys in the same order (the same method at the same step does).
    """
    values = {k: float(v) for k, v in record.items()}
    world = world_size()
    if world == 1:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64)
    dist.all_reduce(t, group=_control)
    return {k: float(s) if k in sum_keys else float(s) / world for k, s in zip(values, t.tolist())}


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank (small things: RNG states, eval results)."""
    if world_size() == 1:
        return [obj]
    # torch.save/load around the exchange: all_gather_object's own pickling of tensors fails to
    # unpickle in torch 2.11 ("UntypedStorage has no attribute dtype").
    buf = io.BytesIO()
    torch.save(obj, buf)
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, buf.getvalue(), group=_control)
    return [torch.load(io.BytesIO(b), weights_only=False) for b in out]  # our own bytes, just made


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=_control)
    return box[0]


def barrier() -> None:
    if world_size() > 1:
        dist.barrier(group=_control)


def failure_on_main(action: Callable[[], None], is_main: bool, errors: type[BaseException]) -> str | None:
    """Run `action` on rank 0 only; every rank gets None, or the message of the `errors` it raised,
    so that all ranks stop (or go on) together. Collective."""
    failure = None
    if is_main:
        try:
            action()
        except errors as err:
            failure = str(err)
    return broadcast_object(failure)

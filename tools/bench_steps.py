"""Step-time benchmark: BL-JUST joint step vs one supervised step + one unsupervised step.

    python tools/bench_steps.py [--rounds 20] [key=value ...]   (config overrides, e.g. model=small)

All three step kinds run interleaved in one process on the same fixed real batches (data loading
excluded), so machine noise hits them alike; the figure is the ratio of medians. Target: <= 1.05.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
from pathlib import Path

import torch

from bljust.cli import compose_config
from bljust.tracking.timing import timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    from bljust.methods.base import clip_and_check, unsupervised_loss
    from bljust.methods.bljust import BLJust
    from bljust.methods.supervised import Supervised
    from bljust.optim import make_adamw
    from bljust.train import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(["method=bljust", "logging.wandb=disabled", "train.num_workers=0",
                              "method.explore=0", "method.finetune=0", "method.joint_steps_per_epoch=1000", "train.max_steps=100000",
                              f"run_dir={tmp}", *args.overrides])
        tr = Trainer(cfg, Path(tmp))
        ctx = tr.ctx
        lab, unl = next(tr.labelled), next(tr.unlabelled_stream())
        ctx.labelled = itertools.repeat(lab)
        ctx.unlabelled = lambda: itertools.repeat(unl)
        joint = tr.method
        assert isinstance(joint, BLJust)
        sup = Supervised(ctx)
        # A plain L_u step as ptft's pre-training does it: same objective, its own AdamW.
        unsup_params = list(ctx.model.encoder.parameters()) + list(joint.unsup.parameters())
        unsup_opt = make_adamw(unsup_params, cfg.optim)

        def unsup_step() -> None:
            loss, _ = unsupervised_loss(ctx, joint.unsup, unl)
            unsup_opt.zero_grad(set_to_none=True)
            loss.backward()
            clip_and_check(unsup_params, cfg.optim.grad_clip)
            unsup_opt.step()

        kinds = {"supervised": lambda: sup.step(0), "unsupervised": unsup_step,
                 "bljust_joint": lambda: joint.step(0)}
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for r in range(args.warmup + args.rounds):
            for name, fn in kinds.items():
                dt = timed(fn, tr.device)
                if r >= args.warmup:
                    times[name].append(dt)
        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = med["bljust_joint"] / (med["supervised"] + med["unsupervised"])
        print(f"device {tr.device} | model {cfg.model.name} | labelled batch {lab.seconds:.1f} s audio, "
              f"unlabelled batch {unl.seconds:.1f} s audio | {args.rounds} interleaved rounds")
        for k, v in med.items():
            print(f"  {k:13s} median {v * 1000:8.1f} ms  (min {min(times[k]) * 1000:.1f}, max {max(times[k]) * 1000:.1f})")
        print(f"joint / (supervised + unsupervised) = {ratio:.3f}  (target <= 1.05)")
        print(f"to the supervised step: unsupervised ({cfg.objective.unsup}) {med['unsupervised'] / med['supervised']:.3f}, "
              f"bljust_joint {med['bljust_joint'] / med['supervised']:.3f}")


if __name__ == "__main__":
    main()

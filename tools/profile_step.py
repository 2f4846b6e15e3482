"""Profile a method's training steps with torch.profiler: where the step time goes.

    python tools/profile_step.py METHOD [--steps 6] [--warmup 4] [--out docs/profiles/METHOD.txt] [key=value ...]

Runs the method's real steps (its own batches, phases and optimisers) on the demo corpus in this
process, profiles --steps of them after --warmup, and writes the operator table (sorted by self
time; CPU, and CUDA when present) to --out, plus a Chrome trace beside it with --trace.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from bljust.cli import compose_config

PHASES = {  # overrides that put every phase of the method inside a short run
    "ptft": ["method.pretrain_steps=3"],
    "bljust": ["method.explore=1", "method.explore_unit=steps", "method.joint_steps_per_epoch=4", "method.finetune=0"],
    "pseudo_label": ["method.start_step=2", "method.cache_size=2"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("method")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--trace", action="store_true", help="also write a Chrome trace (OUT.json)")
    ap.add_argument("--rows", type=int, default=30)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_intermixed_args()

    from bljust.train import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(["recipe=demo", f"method={args.method}", "logging.wandb=disabled",
                              "train.max_steps=100000", *PHASES.get(args.method, []), f"run_dir={tmp}",
                              *args.overrides])
        tr = Trainer(cfg, Path(tmp))
        method = tr.method
        for s in range(args.warmup):
            method.train_step(s)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if tr.device.type == "cuda" else [])
        with profile(activities=activities, record_shapes=False) as prof:
            for s in range(args.warmup, args.warmup + args.steps):
                method.train_step(s)
            if tr.device.type == "cuda":
                torch.cuda.synchronize()
        sort = "self_cuda_time_total" if tr.device.type == "cuda" else "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=sort, row_limit=args.rows, max_name_column_width=60)
        head = (f"# torch.profiler: method={args.method}, {args.steps} steps after {args.warmup} warm-up, "
                f"device {tr.device} ({torch.get_num_threads()} threads), model {cfg.model.name}, "
                f"train.max_duration={cfg.train.max_duration}, train.num_workers={cfg.train.num_workers}\n"
                f"# command: python tools/profile_step.py {' '.join(sys.argv[1:])}\n")
        print(head + table)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(head + table)
            if args.trace:
                prof.export_chrome_trace(str(args.out.with_suffix(".json")))


if __name__ == "__main__":
    main()

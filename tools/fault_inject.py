"""Fault injection: kill a training run at random points, re-run the same command, and check it
ends exactly where an uninterrupted run ends.

    python tools/fault_inject.py --work /tmp/fi --faults 6 --seed 0 [--max-seconds 900] -- \
        recipe=demo train.max_steps=40 train.ckpt_every=5 ...   (overrides for python -m bljust.train)

First one uninterrupted run (work/whole), then the same command in work/faulted, faulted up to
--faults times and then run to the end. Each fault is one of
  kill@<point>:<n>  SIGKILL from inside at the n-th hit of a named point (bljust/tracking/faults.py:
                    step, ckpt_write, ckpt_rotate, eval): the moments a timer rarely hits;
  term@<point>:<n>  SIGTERM (SLURM preemption) there instead: the run must save and exit 0;
  kill@<seconds>    SIGKILL from outside after a random delay (startup, data loading, anywhere);
  term@<seconds>    SIGTERM from outside after a random delay.
Then last.pt (model, optimisers, schedulers, method state, stream positions, step), metrics.jsonl
(wall-clock fields left out) and wer.json of the two runs must be equal. Exits 1 otherwise; the
report (JSON) goes to stdout and to work/report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bljust.tracking.checkpoint import load_checkpoint
from bljust.tracking.metrics import read_metrics

POINTS = ("step", "ckpt_write", "ckpt_rotate", "eval", "monitor")
# measurements of the machine, not of the training: they differ between any two runs
TIME_KEYS = ("train_seconds", "steps_per_second", "eval_seconds", "monitor_seconds", "monitor_seconds_total",
             "data_wait_fraction", "peak_rss_mb", "max_allocated_mb")


def train_cmd(overrides: list[str], run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "bljust.train", *overrides, f"run_dir={run_dir}"]


def run_once(cmd: list[str], fault: str | None, log: Path, timeout: float) -> dict[str, Any]:
    """Run the command once under `fault`; what happened, for the report."""
    env = dict(os.environ)
    delay = None
    if fault and fault[5:].split(":")[0] in POINTS:
        env["BLJUST_FAULT"] = fault[5:] + (":SIGTERM" if fault.startswith("term@") else "")
    elif fault:
        delay = float(fault.split("@")[1])
    start = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"\n=== fault {fault} ===\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            proc.wait(timeout=delay if delay is not None else timeout)
        except subprocess.TimeoutExpired:
            if delay is None:
                proc.kill()
                raise
            proc.send_signal(signal.SIGTERM if fault.startswith("term@") else signal.SIGKILL)
            proc.wait(timeout=timeout)
    return {"fault": fault, "rc": proc.returncode, "seconds": round(time.perf_counter() - start, 2)}


def pick_fault(kind: str, rng: random.Random, remaining: int, every: dict[str, int], run_seconds: float) -> str:
    """A concrete fault of `kind` that can still fire in a run with `remaining` steps to go."""
    if kind.endswith("@time"):
        return f"{kind[:-4]}{rng.uniform(0.2, 1.0) * run_seconds:.2f}"
    point = kind.split("@")[1]
    hits = remaining // every.get(point, 1)  # ckpt_write also hits on best.pt: an upper bound the other way
    return f"{kind}:{rng.randint(1, max(hits, 1))}"


# The first faults go through these in order (so even a short session hits a step, a checkpoint
# write, the rotation window and a preemption); later ones are drawn at random.
KINDS = ["kill@step", "kill@ckpt_write", "kill@ckpt_rotate", "term@step", "kill@eval", "kill@time", "term@time"]


def resume_step(run_dir: Path) -> int:
    """The step a re-run would resume from (last.pt, else prev.pt), 0 for none."""
    for name in ("last.pt", "prev.pt"):
        try:
            return load_checkpoint(run_dir / "checkpoints" / name)["step"]
        except Exception:
            continue
    return 0


def compare(a_dir: Path, b_dir: Path) -> list[str]:
    """Differences between two finished runs; empty when they are equal."""
    diffs = []
    a, b = (load_checkpoint(d / "checkpoints" / "last.pt") for d in (a_dir, b_dir))
    for key in ("step", "streams", "best_dev_error"):
        if a[key] != b[key]:
            diffs.append(f"last.pt {key}: {a[key]} != {b[key]}")
    diffs += tensor_diffs("model", a["model"], b["model"])
    diffs += tensor_diffs("method", a["method"], b["method"])
    ma, mb = ([{k: v for k, v in r.items() if k not in TIME_KEYS} for r in read_metrics(d / "metrics.jsonl")]
              for d in (a_dir, b_dir))
    if ma != mb:
        first = next((i for i, (x, y) in enumerate(zip(ma, mb)) if x != y), min(len(ma), len(mb)))
        x, y = (m[first] if first < len(m) else {} for m in (ma, mb))
        keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
        diffs.append(f"metrics.jsonl differ from record {first} ({len(ma)} vs {len(mb)} records): "
                     + ", ".join(f"{k} {x.get(k)} != {y.get(k)}" for k in keys))
    wa, wb = ((d / "wer.json").read_text() if (d / "wer.json").is_file() else None for d in (a_dir, b_dir))
    if wa is None or wa != wb:
        diffs.append("wer.json missing or different")
    return diffs


def tensor_diffs(prefix: str, a: Any, b: Any) -> list[str]:
    """Exact comparison of nested dicts/lists of tensors and plain values."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{prefix}: keys differ"]
        return [d for k in a for d in tensor_diffs(f"{prefix}.{k}", a[k], b[k])]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{prefix}: lengths differ"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in tensor_diffs(f"{prefix}[{i}]", x, y)]
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return [] if a.shape == b.shape and torch.equal(a, b) else [f"{prefix}: tensors differ"]
    return [] if a == b else [f"{prefix}: {a} != {b}"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="folder for the two runs (must not hold them yet)")
    ap.add_argument("--faults", type=int, default=6, help="how many faults to inject at most")
    ap.add_argument("--fault", action="append", default=[], help="a given fault (kill@step:3, term@4.5, ...) "
                    "instead of random ones; repeatable")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=900.0, help="stop injecting faults after this long")
    ap.add_argument("overrides", nargs="*", help="config overrides for python -m bljust.train")
    args = ap.parse_args(argv)
    whole, faulted = args.work / "whole", args.work / "faulted"
    for d in (whole, faulted):
        if (d / "checkpoints").exists():
            sys.exit(f"error: {d} already holds a run; use a fresh --work folder")
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "train.log"
    start = time.perf_counter()

    ref = run_once(train_cmd(args.overrides, whole), None, log, args.max_seconds)
    if ref["rc"] != 0:
        sys.exit(f"error: the uninterrupted run failed (exit {ref['rc']}); see {log}")
    ckpt = load_checkpoint(whole / "checkpoints" / "last.pt")
    steps, t = ckpt["step"], ckpt["config"]["train"]
    every = {"step": 1, "eval": t["eval_every"], "ckpt_write": t["ckpt_every"], "ckpt_rotate": t["ckpt_every"],
             "monitor": ckpt["config"]["monitor"]["every_steps"]}
    rng = random.Random(args.seed)

    attempts = []
    for i in range(len(args.fault) if args.fault else args.faults):
        if time.perf_counter() - start > args.max_seconds or (faulted / "wer.json").is_file():
            break  # out of time, or the faulted run got to the end
        remaining = steps - resume_step(faulted)
        kind = KINDS[i % len(KINDS)] if i < len(KINDS) else rng.choice(KINDS)
        fault = args.fault[i] if args.fault else pick_fault(kind, rng, remaining, every, ref["seconds"])
        attempt = run_once(train_cmd(args.overrides, faulted), fault, log, args.max_seconds)
        attempt.update(resumed_from=steps - remaining, resume_point_after=resume_step(faulted),
                       finished=(faulted / "wer.json").is_file())
        attempts.append(attempt)
    final = run_once(train_cmd(args.overrides, faulted), None, log, args.max_seconds)
    diffs = compare(whole, faulted) if final["rc"] == 0 else [f"final re-run failed (exit {final['rc']})"]
    report = {"equal": not diffs, "differences": diffs, "reference": ref, "attempts": attempts, "final": final,
              "steps": steps, "seconds": round(time.perf_counter() - start, 1)}
    text = json.dumps(report, indent=1)
    (args.work / "report.json").write_text(text)
    print(text)
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())

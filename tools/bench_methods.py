"""Per-method training throughput, peak memory and data-loading wait, from real training runs.

    python tools/bench_methods.py [--steps 60] [--methods supervised ptft ...] [--out docs/bench_methods.md] [key=value ...]

Each method trains for --steps loop steps on the demo corpus in its own process (the default
DataLoader workers, `train.num_workers`), logging every step; the first fifth of the steps is
warm-up and not counted. From the run's own metrics.jsonl:
  audio/s    seconds of audio consumed per second of training (labelled + unlabelled batches;
             pseudo_label's labelling passes count as time, not audio)
  steps/s    loop steps per second
  wait       fraction of training time the loop spent blocked on the data loader
  peak RSS   the process's peak resident memory (on CUDA also the allocator's peak)
Extra key=value arguments are config overrides for every run (e.g. model=small, device=cuda).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bljust.tracking.metrics import read_metrics

METHODS = ("supervised", "ptft", "just", "bljust", "pseudo_label")


def method_args(method: str, steps: int) -> list[str]:
    """Every phase of the method inside `steps` loop steps."""
    if method == "ptft":  # half pre-training, half fine-tuning
        return [f"method.pretrain_steps={steps // 2}", f"train.max_steps={steps - steps // 2}",
                f"method.pretrain_warmup_steps={max(1, steps // 10)}"]
    if method == "bljust":  # explore 2 + joint 8 per outer epoch
        epochs = max(1, steps // 10)
        return [f"train.max_steps={epochs * 8}", "method.joint_steps_per_epoch=8", "method.explore=2", "method.explore_unit=steps", "method.finetune=0"]
    if method == "pseudo_label":  # pseudo-labelling from the second fifth on, so it is measured
        return [f"train.max_steps={steps}", f"method.start_step={steps // 5}", "method.cache_size=4",
                "method.replace_prob=0.2"]
    return [f"train.max_steps={steps}"]  # supervised, just


def summarise(records: list[dict], warmup_frac: float = 0.2) -> dict[str, float]:
    steps = [r for r in records if "train_seconds" in r]
    last_step = steps[-1]["step"]
    start = next(r for r in steps if r["step"] >= warmup_frac * last_step)
    counted = [r for r in steps if r["step"] > start["step"]]
    seconds = steps[-1]["train_seconds"] - start["train_seconds"]
    audio = sum(r.get("batch_seconds", 0.0) for r in counted)
    wait = sum(r["data_wait_fraction"] / r["steps_per_second"] for r in counted)  # per-record seconds
    out = {"audio_per_s": audio / seconds, "steps_per_s": len(counted) / seconds, "wait": wait / seconds,
           "peak_rss_mb": steps[-1]["peak_rss_mb"], "steps": len(counted)}
    if "max_allocated_mb" in steps[-1]:
        out["max_allocated_mb"] = steps[-1]["max_allocated_mb"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--out", type=Path, help="also write the table here (markdown)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_intermixed_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            run = Path(tmp) / method
            cmd = [sys.executable, "-m", "bljust.train", "recipe=demo", f"method={method}", "train.log_every=1",
                   "train.eval_every=100000", "train.ckpt_every=100000", "monitor.every_steps=100000",
                   "eval.max_dev_utts=1", "logging.wandb=disabled", "train.progress=false",
                   *method_args(method, args.steps), *args.overrides, f"run_dir={run}"]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "WANDB_SILENT": "true"})
            if proc.returncode:
                sys.exit(f"bench_methods: {method} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
            rows[method] = summarise(read_metrics(run / "metrics.jsonl"))
            print(f"{method}: {json.dumps({k: round(v, 3) for k, v in rows[method].items()})}", flush=True)
    base = rows.get("supervised", {}).get("audio_per_s")
    head = "| method | audio s / s | vs supervised | steps / s | data wait | peak RSS MB | steps counted |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for method, r in rows.items():
        rel = f"{r['audio_per_s'] / base:.2f}" if base else "–"
        lines.append(f"| {method} | {r['audio_per_s']:.1f} | {rel} | {r['steps_per_s']:.2f} | {r['wait']:.1%} | "
                     f"{r['peak_rss_mb']:.0f}" + (f" (CUDA {r['max_allocated_mb']:.0f})" if "max_allocated_mb" in r
                                                  else "") + f" | {r['steps']} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()

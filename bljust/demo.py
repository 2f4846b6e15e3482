"""The whole demo in one command: every method on the demo corpus at one equal compute budget.

    python -m bljust.demo [--budget 450] [--seeds 0,1] [--methods ptft,bljust] [--root runs/demo_all] [overrides...]

Builds the demo corpus if it is missing, trains supervised, ptft, just, bljust and pseudo_label
with the same number of forward/backward passes over a batch (`--budget`, "C"), scores each final
checkpoint on dev and test, and writes the comparison: ROOT/report.md (method x split WER/CER,
mean ± sd over seeds, supervised updates, training minutes) and ROOT/report.html (self-contained,
plots embedded). Runs go two at a time on one thread each (`--jobs`), the way a 2-core machine is
used best by models this small. Extra arguments are Hydra overrides given to every run (corpus
sizes, `model=small`, `logging.wandb=online`, ...). A second identical command resumes: finished
runs are kept, a killed one continues from its last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bljust import compare

METHODS = ("pseudo_label", "bljust", "just", "ptft", "supervised")  # longest first: shorter makespan


def method_overrides(method: str, budget: int) -> list[str]:
    """Hydra overrides that give `method` a budget of `budget` forward/backward passes ("C").

    A joint step (just, bljust) costs 2 C (one labelled and one unlabelled batch); pseudo-labelling's
    labelling passes (forward only, a few per cache refill) are not counted. The split of each budget
    follows recipes/demo/compare.sh, whose 1200 C version is the table in docs/demo_comparison.md.
    """
    b = max(budget, 6)
    if method == "supervised":
        return [f"train.max_steps={b}"]
    if method == "ptft":
        return [f"method.pretrain_steps={b // 2}", f"train.max_steps={b - b // 2}",
                f"method.pretrain_warmup_steps={max(1, min(100, b // 12))}"]
    if method == "just":
        return [f"train.max_steps={b // 2}", "method.alpha=0.5"]
    if method == "bljust":
        # run k of recipes/demo/bljust_sweep.sh, the best dev CER of that sweep (docs/demo_comparison.md):
        # joint steps only (2 C each) in 10 outer epochs, gamma ramped 0 -> 1 over the first 5
        joint = b // 2
        return [f"train.max_steps={joint}", f"method.joint_steps_per_epoch={max(1, joint // 10)}", "method.explore=0",
                "method.ramp_length=5", *[f"method.{g}_lr=2e-3" for g in ("encoder", "ctc_head", "unsup_head")]]
    if method == "pseudo_label":
        # supervised warm-up for 5/12 of the budget, then cycles of 1 supervised : 2 pseudo-labelled
        return [f"train.max_steps={b}", f"method.start_step={round(b * 5 / 12)}", "method.sup_updates=1",
                "method.pl_updates=2", f"method.cache_size={max(2, b // 30)}", "method.replace_prob=0.2"]
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def common_overrides(budget: int) -> list[str]:
    """Cadences scaled to the budget: four dev evaluations (on 80 utterances: the curve; the
    final scores use all of dev and test) and two monitor passes per run."""
    return ["recipe=demo", f"train.eval_every={max(1, budget // 4)}", "eval.max_dev_utts=80",
            f"train.ckpt_every={max(1, budget // 4)}", f"train.log_every={max(1, budget // 24)}",
            f"monitor.every_steps={max(1, budget // 2)}",
            f"optim.warmup_steps={max(1, min(100, budget // 6))}", "train.num_workers=0", "train.progress=false"]


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def method_list(text: str) -> list[str]:
    methods = [m for m in text.split(",") if m]
    for m in methods:
        if m not in METHODS:
            raise argparse.ArgumentTypeError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    return methods


def run_one(method: str, seed: int, args: argparse.Namespace, env: dict[str, str]) -> tuple[str, int, str]:
    """Train one method, then score its final checkpoint on dev and test; returns (label, rc, log)."""
    run_dir = args.root / method / f"seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "demo.log"
    py = sys.executable
    cmds = [[py, "-m", "bljust.train", f"method={method}", f"train.seed={seed}", *common_overrides(args.budget),
             *method_overrides(method, args.budget), f"logging.group={args.root.name}", *args.overrides,
             f"run_dir={run_dir}"]]
    cmds += [[py, "-m", "bljust.evaluate", f"ckpt={run_dir / 'checkpoints' / 'last.pt'}", f"split={split}",
              f"out={run_dir / 'eval_last'}"] for split in ("dev", "test")]
    with open(log, "a") as fh:
        for cmd in cmds:
            fh.write("$ " + " ".join(cmd) + "\n")
            fh.flush()
            rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
            if rc:
                return f"{method}/seed{seed}", rc, str(log)
    return f"{method}/seed{seed}", 0, str(log)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=450, help="forward/backward passes per method (default 450)")
    # comma-separated lists, so Hydra overrides may follow them on the command line
    ap.add_argument("--seeds", type=int_list, default=[0], help="e.g. 0,1")
    ap.add_argument("--methods", type=method_list, default=list(METHODS), help=f"e.g. {','.join(METHODS)}")
    ap.add_argument("--root", type=Path, default=Path("runs/demo_all"))
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="runs at a time")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. model=small")
    args = ap.parse_args(argv)
    start = time.time()
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "WANDB_SILENT": "true"}
    py = sys.executable
    # the corpus, manifests, CMVN and tokenizer once, before the runs share them
    rc = subprocess.call([py, "-m", "bljust.prepare", "recipe=demo", *args.overrides], env=env)
    if rc:
        print(f"demo: prepare failed (exit {rc})", file=sys.stderr)
        return rc
    jobs = [(m, s) for s in args.seeds for m in METHODS if m in args.methods]
    print(f"demo: {len(jobs)} runs, budget {args.budget} C each, {args.jobs} at a time x {threads} thread(s), "
          f"under {args.root}", flush=True)
    failed = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for label, rc, log in pool.map(lambda job: run_one(*job, args, env), jobs):
            print(f"demo: {label} {'done' if rc == 0 else f'FAILED (exit {rc}), see {log}'}", flush=True)
            if rc:
                failed.append(label)
    rc = compare.main([str(args.root), "--wer-json", "eval_last/wer.json", "--out", str(args.root / "report.md"),
                       "--html", str(args.root / "report.html"),
                       "--title", f"bljust demo: {len(args.seeds)} seed(s), {args.budget} C per method"])
    wall = time.time() - start
    (args.root / "demo.json").write_text(json.dumps({
        "wall_seconds": round(wall, 1), "budget": args.budget, "seeds": args.seeds, "jobs": args.jobs,
        "threads_per_job": threads, "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "command": " ".join(["python -m bljust.demo", *(argv if argv is not None else sys.argv[1:])]),
        "failed": failed}, indent=1) + "\n")
    print(f"demo: {len(jobs) - len(failed)}/{len(jobs)} runs in {wall / 60:.1f} min; "
          f"{args.root / 'report.md'}, {args.root / 'report.html'}")
    return 1 if failed or rc else 0


if __name__ == "__main__":
    sys.exit(main())

"""The whole demo in one command: every method on the demo corpus at one equal compute budget.

    python -m bljust.demo [--experiment demo] [--seeds 0,1] [--methods ptft,bljust] [--root runs/demo_all] [overrides...]

Builds the demo corpus if it is missing, trains every method of an experiment (one file per method
in conf/experiment/<experiment>/, each at the same compute budget in C, written there), scores each final
checkpoint on dev and test, and writes the comparison: ROOT/report.md (method x split WER/CER,
mean ± sd over seeds, supervised updates, training minutes) and ROOT/report.html (self-contained,
plots embedded). Runs share the cores on one thread each, as many at a time as finishes soonest
(`balanced_jobs`: five runs on 2 cores go three at a time, so no core idles while the last run
trains alone); `--jobs` sets it. Extra arguments are Hydra overrides given to every run (corpus
sizes, `model=small`, `logging.wandb=online`, ...). A second identical command resumes: finished
runs are kept, a killed one continues from its last checkpoint. While runs train, each run's output
goes to ROOT/<method>/seed<n>/demo.log and the console shows the live view (bljust/reporting/live.py):
every 20 s (`--live-every`) a line per running run with its step / total, last dev CER and time left.
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
from bljust.cli import CONF_DIR
from bljust.methods import METHODS
from bljust.reporting.live import LiveView

# longest first: a shorter makespan when runs wait for a free slot
ORDER = ("pseudo_label", "bljust", "just", "ptft", "supervised")


def experiment_methods(experiment: str) -> list[str]:
    """The methods with a file in conf/experiment/<experiment>/, in ORDER, then the rest by name."""
    folder = CONF_DIR / "experiment" / experiment
    found = sorted(p.stem for p in folder.glob("*.yaml") if p.stem in METHODS)
    if not found:
        raise SystemExit(f"error: no method files in {folder} (one <method>.yaml per method)")
    return sorted(found, key=lambda m: (ORDER.index(m) if m in ORDER else len(ORDER), m))


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def method_list(text: str) -> list[str]:
    methods = [m for m in text.split(",") if m]
    for m in methods:
        if m not in METHODS:
            raise argparse.ArgumentTypeError(f"unknown method {m!r}; choose from {', '.join(sorted(METHODS))}")
    return methods


def balanced_jobs(runs: int, cpus: int) -> int:
    """How many of `runs` equally long single-thread runs to start at a time on `cpus` cores so the
    last one ends soonest: the fewest such jobs (less memory) among the best. With more jobs than
    cores the runs share them, so a wave of j runs takes j / cpus run-lengths; the last, partial
    wave takes at least one run-length however many cores it has."""
    def makespan(j: int) -> float:
        full, rest = divmod(runs, j)
        return full * max(1.0, j / cpus) + (max(1.0, rest / cpus) if rest else 0.0)
    return min(range(max(1, min(cpus, runs)), max(runs, 1) + 1), key=lambda j: (makespan(j), j))


def run_one(method: str, seed: int, args: argparse.Namespace, env: dict[str, str],
            view: LiveView) -> tuple[str, int, str]:
    """Train one method, then score its final checkpoint on dev and test; returns (label, rc, log)."""
    label, run_dir = f"{method}/seed{seed}", args.root / method / f"seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "demo.log"
    py = sys.executable
    cmds = [[py, "-m", "bljust.train", f"+experiment={args.experiment}/{method}", f"train.seed={seed}",
             f"logging.group={args.root.name}", *args.overrides, f"run_dir={run_dir}"]]
    cmds += [[py, "-m", "bljust.evaluate", f"ckpt={run_dir / 'checkpoints' / 'last.pt'}", f"split={split}",
              f"out={run_dir / 'eval_last'}"] for split in ("dev", "test")]
    view.start(label, run_dir)
    rc = 0
    with open(log, "a") as fh:
        for cmd in cmds:
            fh.write("$ " + " ".join(cmd) + "\n")
            fh.flush()
            rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
            if rc:
                break
    view.end(label, rc, str(log))
    return label, rc, str(log)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default="demo",
                    help="a folder of conf/experiment/ with one file per method (default: demo)")
    # comma-separated lists, so Hydra overrides may follow them on the command line
    ap.add_argument("--seeds", type=int_list, default=[0], help="e.g. 0,1")
    ap.add_argument("--methods", type=method_list, default=None, help="e.g. ptft,bljust (default: every method of the experiment)")
    ap.add_argument("--root", type=Path, default=Path("runs/demo_all"))
    ap.add_argument("--jobs", type=int, default=None, help="runs at a time (default: balanced_jobs)")
    ap.add_argument("--live-every", type=float, default=20.0,
                    help="seconds between the live view's lines on the running runs (default: 20)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. model=small")
    args = ap.parse_args(argv)
    start = time.time()
    py = sys.executable
    methods = [m for m in experiment_methods(args.experiment) if args.methods is None or m in args.methods]
    jobs = [(m, s) for s in args.seeds for m in methods]
    cpus = os.cpu_count() or 1
    args.jobs = args.jobs or balanced_jobs(len(jobs), cpus)
    threads = max(1, cpus // args.jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "WANDB_SILENT": "true"}
    # the corpus, manifests, CMVN and tokenizer once, before the runs share them; composed with an
    # experiment file, since the experiment sets the corpus sizes (the same for all its methods)
    rc = subprocess.call([py, "-m", "bljust.prepare", f"+experiment={args.experiment}/{methods[0]}",
                          *args.overrides], env=env)
    if rc:
        print(f"demo: prepare failed (exit {rc})", file=sys.stderr)
        return rc
    print(f"demo: {len(jobs)} runs of conf/experiment/{args.experiment}/, {args.jobs} at a time x {threads} thread(s), "
          f"under {args.root}", flush=True)
    failed = []
    # the runs' output goes to their demo.log; the console gets the live view's lines
    with LiveView(args.live_every) as view, ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for label, rc, log in pool.map(lambda job: run_one(*job, args, env, view), jobs):
            if rc:
                failed.append(label)
    rc = compare.main([str(args.root), "--wer-json", "eval_last/wer.json", "--out", str(args.root / "report.md"),
                       "--html", str(args.root / "report.html"),
                       "--title", f"bljust demo: experiment {args.experiment}, n={len(args.seeds)} seed(s)"])
    wall = time.time() - start
    (args.root / "demo.json").write_text(json.dumps({
        "wall_seconds": round(wall, 1), "experiment": args.experiment, "seeds": args.seeds, "jobs": args.jobs,
        "threads_per_job": threads, "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "command": " ".join(["python -m bljust.demo", *(argv if argv is not None else sys.argv[1:])]),
        "failed": failed}, indent=1) + "\n")
    print(f"demo: {len(jobs) - len(failed)}/{len(jobs)} runs in {wall / 60:.1f} min; "
          f"{args.root / 'report.md'}, {args.root / 'report.html'}")
    return 1 if failed or rc else 0


if __name__ == "__main__":
    sys.exit(main())

"""Does a label-free monitor early in training predict the final WER? Spearman and Kendall rank
correlations across runs, at chosen fractions of training, for every monitor and training loss.

    python tools/early_prediction.py RUN_OR_ROOT... [--fractions 0.1 0.2 0.5] [--split test]
        [--metric wer] [--wer-json wer.json] [--plot-fraction 0.2] [--out docs/results/early_prediction]

Writes OUT.md (the table) and OUT.png (scatter plots at --plot-fraction); prints the table.
A value "at 20 %" is the first one logged at or after step 0.2 x the run's last step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bljust.monitors.early_prediction import analyse, find_runs, load_run, markdown, scatter_png, signal_keys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--fractions", nargs="+", type=float, default=[0.1, 0.2, 0.5])
    ap.add_argument("--split", default="test")
    ap.add_argument("--metric", default="wer", choices=["wer", "cer"])
    ap.add_argument("--wer-json", default="wer.json", help="scores file inside each run folder")
    ap.add_argument("--plot-fraction", type=float, default=0.2)
    ap.add_argument("--out", type=Path, default=None, help="write OUT.md and OUT.png")
    args = ap.parse_args(argv)
    runs = [r for p in find_runs(args.runs) if (r := load_run(p, args.wer_json, args.split, args.metric))]
    if len(runs) < 3:
        print(f"early_prediction: {len(runs)} finished runs; rank correlations need at least 3", file=sys.stderr)
        return 1
    target = f"{args.split} {args.metric.upper()}"
    table = markdown(analyse(runs, args.fractions), args.fractions, target)
    print(f"{len(runs)} runs; final {target}: " + ", ".join(f"{r.final_error:.1f}" for r in runs))
    if len({r.final_error for r in runs}) == 1:
        print(f"early_prediction: every run ends at the same {target}: no ranking to predict (correlations are –)")
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(table)
        scatter_png(runs, signal_keys(runs), args.plot_fraction, target, args.out.with_suffix(".png"))
        print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

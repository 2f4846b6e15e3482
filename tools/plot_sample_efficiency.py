"""Test CER against labelled minutes, one line per method, from protocol folders (PNG + table).

    python tools/plot_sample_efficiency.py 5=runs/protocol/adapt_l5 15=runs/protocol/adapt \
        60=runs/protocol/adapt_l60 --out docs/results/adapt_sample_efficiency.png

Each MINUTES=ROOT reads ROOT/final/<method>/seed*/wer.json (the best-on-dev checkpoint's scores);
a point is the mean over the seeds found there, its bar their standard deviation. The markdown
table (printed) also says, per method, how many labelled minutes supervised fine-tuning needs
to match it, interpolated linearly in log-minutes between the measured points: the labelled
audio that method's use of the unlabelled audio is worth.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_points(roots: dict[float, Path], split: str, metric: str) -> dict[str, dict[float, list[float]]]:
    """method -> minutes -> the seeds' error rates on `split`."""
    points: dict[str, dict[float, list[float]]] = {}
    for minutes, root in roots.items():
        found = sorted((root / "final").glob("*/seed*/wer.json"))
        if not found:
            sys.exit(f"error: {root}/final: no */seed*/wer.json (run the protocol's seeds phase first)")
        for path in found:
            scores = json.loads(path.read_text()).get(split)
            if scores is None:
                sys.exit(f"error: {path}: no {split!r} scores")
            points.setdefault(path.parent.parent.name, {}).setdefault(minutes, []).append(scores[metric])
    return points


def matching_minutes(curve: dict[float, float], target: float) -> float | None:
    """Labelled minutes at which a falling `curve` (minutes -> error) reaches `target`, linear in
    log-minutes between its points; None outside the measured range."""
    xs = sorted(curve)
    for lo, hi in zip(xs, xs[1:]):
        a, b = curve[lo], curve[hi]
        if min(a, b) <= target <= max(a, b) and a != b:
            f = (a - target) / (a - b)
            return math.exp(math.log(lo) + f * (math.log(hi) - math.log(lo)))
    return None


def table(points: dict[str, dict[float, list[float]]], metric: str, reference: str) -> str:
    minutes = sorted({m for per in points.values() for m in per})
    head = "| method | " + " | ".join(f"{m:g} min" for m in minutes) + f" | {reference} needs (min) |\n"
    rows = [head, "|---" * (len(minutes) + 2) + "|\n"]
    ref = {m: statistics.mean(v) for m, v in points.get(reference, {}).items()}
    for method in sorted(points):
        cells = []
        for m in minutes:
            v = points[method].get(m)
            cells.append("–" if not v else f"{statistics.mean(v):.1f}" + (f" ± {statistics.stdev(v):.1f}" if len(v) > 1 else "")
                         + f" (n={len(v)})")
        worth = []
        for m in minutes:
            v = points[method].get(m)
            match = matching_minutes(ref, statistics.mean(v)) if v and method != reference else None
            worth.append(f"{m:g}→{match:.1f}" if match else "")
        rows.append(f"| {method} | " + " | ".join(cells) + f" | {', '.join(w for w in worth if w) or '–'} |\n")
    return "".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("points", nargs="+", help="MINUTES=PROTOCOL_ROOT, one per labelled amount")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    ap.add_argument("--split", default="test")
    ap.add_argument("--metric", default="cer", choices=("cer", "wer"))
    ap.add_argument("--reference", default="supervised", help="the labelled-only method others are matched to")
    ap.add_argument("--flat", default="none", help="methods that use no labels, drawn as one flat line (comma-separated)")
    ap.add_argument("--title", default=None)
    args = ap.parse_args(argv)
    roots = {}
    for item in args.points:
        text, sep, root = item.partition("=")
        try:
            minutes = float(text)
        except ValueError:
            minutes = 0.0
        if not sep or minutes <= 0:
            ap.error(f"{item!r}: expected MINUTES=PROTOCOL_ROOT with MINUTES > 0")
        roots[minutes] = Path(root)
    points = read_points(roots, args.split, args.metric)
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for method in sorted(points):
        per = points[method]
        xs = sorted(per)
        ys = [statistics.mean(per[x]) for x in xs]
        err = [statistics.stdev(per[x]) if len(per[x]) > 1 else 0.0 for x in xs]
        if method in args.flat.split(","):  # the same model at every point: one line
            ax.axhline(ys[0], ls=":", color="grey", label=f"{method} ({ys[0]:.1f})")
            continue
        ax.errorbar(xs, ys, yerr=err, fmt="o-", capsize=3, label=method)
    ax.set_xscale("log")
    ax.minorticks_off()  # log axis: only the measured minutes are labelled
    ax.set_xticks(sorted(roots), [f"{m:g}" for m in sorted(roots)])
    ax.set_xlabel("labelled target minutes")
    ax.set_ylabel(f"target {args.split} {args.metric.upper()} (%)")
    ax.set_title(args.title or f"{args.split} {args.metric.upper()} against labelled minutes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(table(points, args.metric, args.reference))
    print(f"plot -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Plot dev CER/WER of one run against step and training time (PNG) from its metrics.jsonl.

    python tools/plot_curve.py runs/demo3h/supervised/tiny --out docs/supervised_3h_curve.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bljust.tracking.metrics import read_metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--title", default=None)
    args = ap.parse_args()
    recs = [r for r in read_metrics(args.run / "metrics.jsonl") if f"{args.split}_cer" in r and not r.get("final")]
    if not recs:
        sys.exit(f"error: {args.run}/metrics.jsonl has no {args.split}_cer records")
    steps = [r["step"] for r in recs]
    minutes = [r["train_seconds"] / 60 for r in recs]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for ax, x, xlabel in ((axes[0], steps, "training step"), (axes[1], minutes, "training time (minutes, 2 CPU cores)")):
        ax.plot(x, [r[f"{args.split}_cer"] for r in recs], "o-", label=f"{args.split} CER")
        ax.plot(x, [r[f"{args.split}_wer"] for r in recs], "s-", label=f"{args.split} WER")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("error rate (%)")
        ax.set_ylim(0, 105)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(args.title or str(args.run))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

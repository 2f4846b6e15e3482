"""Compare finished runs from their own files (no network): a markdown table of method x split
WER/CER, mean +- standard deviation over seeds, with supervised updates and training time.

    python tools/compare.py runs/demo_compare [--out table.md] [--html report.html]

With --html it also writes a self-contained HTML page with the curves (dev WER/CER, both losses,
gamma, code perplexity, label-free monitors; against step and training time), PNGs embedded,
and the PNGs themselves beside it in <report>_plots/.

A run is any folder under the given root holding wer.json (or --wer-json) and config.yaml; runs
are grouped by their parent folder's name (the method, or a variant label).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bljust.tracking.metrics import read_metrics  # noqa: E402


def collect(root: Path, wer_json: str = "wer.json") -> list[dict]:
    runs = []
    for wer_path in sorted(root.rglob(wer_json)):
        run = wer_path.parent if wer_json == "wer.json" else Path(str(wer_path)[: -len(wer_json) - 1])
        if not (run / "config.yaml").is_file():
            continue
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        recs = read_metrics(run / "metrics.jsonl")
        last = [r for r in recs if "train_seconds" in r]
        runs.append({
            # label = the run's parent folder (runs/<recipe>/<label>/<run_name>): the method name by
            # default, or a variant's own label such as supervised_1200
            "run": str(run), "method": run.parent.name, "seed": cfg["train"]["seed"],
            "wer": json.loads(wer_path.read_text()),
            "supervised_updates": last[-1]["supervised_updates"] if last else 0,
            "train_minutes": last[-1]["train_seconds"] / 60 if last else 0.0,
            "records": recs,  # read once here; the HTML report's curves come from them too
        })
    return runs


def fmt(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def table(runs: list[dict]) -> str:
    splits = sorted({s for r in runs for s, v in r["wer"].items() if isinstance(v, dict)},
                    key=lambda s: (not s.startswith("dev"), s))
    by_method: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_method[r["method"]].append(r)
    head = ["method", "seeds", *[f"{s} WER" for s in splits], *[f"{s} CER" for s in splits],
            "supervised updates", "train min"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, rs in sorted(by_method.items()):
        cells = [method, ",".join(str(r["seed"]) for r in sorted(rs, key=lambda r: r["seed"]))]
        # a run still being scored may lack a split: average what is there, "–" when nothing is
        cells += [fmt([r["wer"][s]["wer"] for r in rs if s in r["wer"]]) for s in splits]
        cells += [fmt([r["wer"][s]["cer"] for r in rs if s in r["wer"]]) for s in splits]
        cells += [fmt([float(r["supervised_updates"]) for r in rs]), fmt([r["train_minutes"] for r in rs])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--html", type=Path, help="write a self-contained HTML report with embedded plots here")
    ap.add_argument("--title", default=None, help="HTML report title (default: the runs folder)")
    ap.add_argument("--wer-json", default="wer.json", help="scores file inside each run (e.g. eval_last/wer.json)")
    args = ap.parse_args()
    runs = collect(args.root, args.wer_json)
    if not runs:
        sys.exit(f"error: no finished runs (wer.json + config.yaml) under {args.root}")
    md = table(runs)
    print(md, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(md)
    if args.html:
        from tools.report_html import write_html, write_plots

        plots = write_plots(runs, args.html.parent / f"{args.html.stem}_plots")
        write_html(args.html, args.title or f"bljust comparison: {args.root}", md, plots,
                   notes=f"{len(runs)} runs under {args.root}; scores from each run's {args.wer_json}.")
        print(f"wrote {args.html} ({len(plots)} plots)")


if __name__ == "__main__":
    main()

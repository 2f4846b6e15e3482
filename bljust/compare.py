"""Compare finished runs from their own files (no network): a markdown table of method x split
WER/CER, mean ± standard deviation over seeds, with each method's compute (C), supervised updates
and training time, then paired bootstrap intervals of each method's test WER/CER difference
against `supervised` and `ptft`, from the runs' hypotheses (of dev instead with --bootstrap-split dev,
for discriminating runs that never score test).

    python -m bljust.compare RUNS... [--out table.md] [--html report.html] [--wer-json eval_last/wer.json]

A run is any folder under the given roots holding config.yaml and the scores file (--wer-json, a
path inside the run; its hypotheses are read from hyps/<split>.txt beside it); runs are grouped
by their parent folder's name (the method, or a variant's label), across all roots.

With --html it also writes a self-contained page with the curves (dev WER/CER, both losses, gamma,
code perplexity, label-free monitors; against step and training time), PNGs embedded, and the
PNGs themselves beside it in <report>_plots/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bljust.cli import first_line
from bljust.errors import UserError
from bljust.reporting.bootstrap import BASELINES, bootstrap_section
from bljust.reporting.runs import collect
from bljust.reporting.table import method_table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("roots", nargs="+", type=Path, metavar="RUNS")
    ap.add_argument("--out", type=Path, help="also write the markdown here")
    ap.add_argument("--html", type=Path, help="write a self-contained HTML report with embedded plots here")
    ap.add_argument("--title", default=None, help="HTML report title (default: the runs folders)")
    ap.add_argument("--wer-json", default="wer.json", help="scores file inside each run (e.g. eval_last/wer.json)")
    ap.add_argument("--baselines", default=",".join(BASELINES), help="methods the others are tested against")
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the utterances")
    ap.add_argument("--bootstrap-split", default="test",
                    help="the splits the bootstrap compares, by name prefix: test (default; test, test+lm) "
                         "or dev (discriminating runs, which score dev only)")
    ap.add_argument("--bootstrap-seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.resamples < 1:
        ap.error("--resamples must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Print the report (and write the files asked for); 1 with a one-line reason on bad input."""
    args = parse_args(argv)
    try:
        runs = collect(args.roots, args.wer_json)
        table = method_table(runs)
        differences = bootstrap_section(runs, tuple(b for b in args.baselines.split(",") if b),
                                        args.resamples, args.bootstrap_seed, split_prefix=args.bootstrap_split)
    except UserError as err:
        print(f"error: {first_line(err)}", file=sys.stderr)
        return 1
    md, where = table + ("\n" + differences if differences else ""), " ".join(map(str, args.roots))
    print(md, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(md)
    if args.html:
        from bljust.reporting.html_page import write_html, write_plots

        plots = write_plots(runs, args.html.parent / f"{args.html.stem}_plots")
        write_html(args.html, args.title or f"bljust comparison: {where}", table, plots,
                   notes=f"{len(runs)} runs under {where}; scores from each run's {args.wer_json}.",
                   bootstrap_md=differences)
        print(f"wrote {args.html} ({len(plots)} plots)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

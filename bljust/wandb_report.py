"""Build a W&B report for one method comparison: the WER table and dev-WER / loss / monitor panels,
one line per method (runs grouped by job_type, which the trainer sets to the method name).

    python -m bljust.wandb_report --entity ME --project bljust-demo --group demo_compare \
        --runs runs/demo_compare            # saves the report (needs a W&B login)
    python -m bljust.wandb_report ... --dry-run report.json   # builds it offline, sends nothing

The WER table and the bootstrap intervals come from the runs' own files (python -m bljust.compare),
so the report shows exactly the numbers of the offline comparison.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bljust.cli import fail
from bljust.errors import UserError
from bljust.reporting.bootstrap import bootstrap_section
from bljust.reporting.runs import collect
from bljust.reporting.table import method_table

# Panels: (title, metric keys logged by the trainer). Missing keys just show empty panels.
PANELS = [
    ("dev WER (%)", ["dev_wer"]),
    ("dev CER (%)", ["dev_cer"]),
    ("supervised loss (CTC)", ["loss_sup"]),
    ("unsupervised loss", ["loss_unsup"]),
    ("penalty weight γ (bljust)", ["gamma"]),
    ("BEST-RQ target code perplexity", ["code_perplexity"]),
    ("monitor: k-means silhouette", ["monitor/silhouette"]),
    ("monitor: RankMe", ["monitor/rankme"]),
]


def build_report(entity: str, project: str, group: str, wer_table: str | None, title: str | None = None):
    """The report object; constructing it needs no network (entity is given explicitly)."""
    import wandb_workspaces.reports.v2 as wr

    runset = wr.Runset(entity=entity, project=project, name=group,
                       filters=f"Metric('group') == '{group}'", groupby=["job_type"])
    panels = [wr.LinePlot(title=t, x="Step", y=keys, groupby_aggfunc="mean", groupby_rangefunc="stddev",
                          layout=wr.Layout(x=(i % 2) * 12, y=(i // 2) * 8, w=12, h=8))
              for i, (t, keys) in enumerate(PANELS)]
    blocks = [
        wr.H1(f"Method comparison: {group}"),
        wr.P("Runs grouped by method (job_type); lines are the mean over seeds, bands the standard "
             "deviation. Test sets are scored once, with each run's final checkpoint."),
    ]
    if wer_table:
        blocks += [wr.H2("WER / CER by method (from the runs' own scores and hypotheses)"), wr.MarkdownBlock(wer_table)]
    blocks += [wr.H2("Training curves"), wr.PanelGrid(runsets=[runset], panels=panels)]
    return wr.Report(entity=entity, project=project, title=title or f"bljust: {group}",
                     description=f"Method comparison {group} in project {project}", blocks=blocks)


def describe(report) -> dict:
    """What the report holds, as plain data (serialising the real spec needs a W&B connection)."""
    out: dict = {"title": report.title, "entity": report.entity, "project": report.project, "blocks": []}
    for block in report.blocks:
        entry: dict = {"type": type(block).__name__}
        if hasattr(block, "text"):
            entry["text"] = str(block.text)
        if hasattr(block, "runsets"):
            entry["runsets"] = [{"name": r.name, "filters": r.filters, "groupby": list(r.groupby)} for r in block.runsets]
            entry["panels"] = [{"title": p.title, "y": list(p.y)} for p in block.panels]
        out["blocks"].append(entry)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entity", required=True, help="W&B user or team that owns the project")
    ap.add_argument("--project", required=True, help="W&B project (the recipe's logging project)")
    ap.add_argument("--group", required=True, help="the comparison's logging.group")
    ap.add_argument("--runs", type=Path, nargs="+", help="local runs folders for the WER table (python -m bljust.compare)")
    ap.add_argument("--wer-json", default="wer.json")
    ap.add_argument("--title")
    ap.add_argument("--dry-run", type=Path, metavar="JSON", help="write the report spec here, send nothing")
    args = ap.parse_args()
    wer_table = None
    if args.runs:
        try:
            runs = collect(args.runs, args.wer_json)
            differences = bootstrap_section(runs)
        except UserError as err:
            fail(err)
        wer_table = method_table(runs) + ("\n" + differences if differences else "")
    report = build_report(args.entity, args.project, args.group, wer_table, args.title)
    if args.dry_run:
        args.dry_run.write_text(json.dumps(describe(report), indent=1))
        print(f"wrote {args.dry_run} (nothing sent)")
        return
    report.save()
    print(f"report saved: {report.url}")


if __name__ == "__main__":
    main()

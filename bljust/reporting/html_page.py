"""Curves and a self-contained HTML page for a method comparison, from the runs' metrics.jsonl.

Written by `python -m bljust.compare --html`; every plot is a PNG embedded as base64, so the page
works offline and can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
import io
import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bljust.reporting.runs import Run  # noqa: E402
from bljust.reporting.table import by_label  # noqa: E402

# (metric key in metrics.jsonl, axis label); a plot is drawn only when some run logged the key.
CURVES = [
    ("dev_wer", "dev WER (%)"),
    ("dev_cer", "dev CER (%)"),
    ("loss_sup", "supervised loss (CTC per token)"),
    ("loss_unsup", "unsupervised loss"),
    ("gamma", "penalty weight γ"),
    ("code_perplexity", "BEST-RQ code perplexity"),
]
MONITOR_PREFIX = "monitor/"


def method_curves(runs: list[Run], key: str) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """method -> (mean compute C, mean train minutes, mean value) over the seeds that logged `key`
    at a step. C is the one budget every method shares (bljust/methods/base.py), so methods with
    different costs per step line up; a run from before C was logged counts its steps."""
    out = {}
    for method, rs in by_label(runs).items():
        at: dict[int, list[tuple[float, float, float]]] = defaultdict(list)
        for r in rs:
            for rec in r.records:
                if key in rec and not rec.get("final") and "train_seconds" in rec:
                    at[rec["step"]].append((float(rec.get("compute_c", rec["step"])), rec["train_seconds"] / 60,
                                            float(rec[key])))
        steps = sorted(at)
        if steps:
            out[method] = tuple([statistics.mean(v[i] for v in at[s]) for s in steps] for i in range(3))
    return out


def monitor_keys(runs: list[Run]) -> list[str]:
    keys: set[str] = set()
    for r in runs:
        for rec in r.records:
            keys.update(k for k in rec if k.startswith(MONITOR_PREFIX) and isinstance(rec[k], (int, float)))
    return sorted(keys)


def plot_png(curves: dict, label: str, colors: dict[str, str] | None = None) -> bytes:
    """One figure, two panels: the metric against compute C and against training minutes. `colors`
    keeps each method's colour the same across figures."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
    for method, (compute, minutes, values) in sorted(curves.items()):
        color = (colors or {}).get(method)
        axes[0].plot(compute, values, marker="o", markersize=3, label=method, color=color)
        axes[1].plot(minutes, values, marker="o", markersize=3, label=method, color=color)
    for ax, xlabel in ((axes[0], "compute C (passes over a max_duration batch)"),
                       (axes[1], "training time (minutes)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(title="method (mean over seeds)", fontsize=9, loc="best", framealpha=0.8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_plots(runs: list[Run], out_dir: Path) -> list[tuple[str, Path]]:
    """PNG files for every curve some run logged; returns (label, path) in display order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = CURVES + [(k, k[len(MONITOR_PREFIX):] + " (label-free monitor)") for k in monitor_keys(runs)]
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {m: palette[i % len(palette)] for i, m in enumerate(sorted({r.label for r in runs}))}
    written = []
    for key, label in wanted:
        curves = method_curves(runs, key)
        if curves:
            path = out_dir / f"{key.replace('/', '_')}.png"
            path.write_bytes(plot_png(curves, label, colors))
            written.append((label, path))
    return written


def markdown_table_html(md: str) -> str:
    rows = [line.strip().strip("|").split("|") for line in md.strip().splitlines()]
    head, body = rows[0], [r for r in rows[2:]]
    th = "".join(f"<th>{html.escape(c.strip())}</th>" for c in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def markdown_html(md: str) -> str:
    """The markdown the reports write (tables and plain paragraphs, blank-line separated) as HTML."""
    blocks = [b.strip() for b in md.strip().split("\n\n") if b.strip()]
    return "\n".join(markdown_table_html(b) if b.startswith("|") else f"<p>{html.escape(b)}</p>" for b in blocks)


def write_html(path: Path, title: str, md_table: str, plots: list[tuple[str, Path]], notes: str = "",
               bootstrap_md: str = "") -> None:
    figures = "".join(
        f"<figure><img alt=\"{html.escape(label)}\" src=\"data:image/png;base64,"
        f"{base64.b64encode(png.read_bytes()).decode()}\"><figcaption>{html.escape(label)}</figcaption></figure>"
        for label, png in plots)
    differences = (f"<h2>Differences against the baselines (paired bootstrap)</h2>\n{markdown_html(bootstrap_md)}"
                   if bootstrap_md else "")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #bbb; padding: 4px 8px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
img {{ max-width: 100%; }} figure {{ margin: 1.5em 0; }} figcaption {{ color: #555; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(notes)}</p>
<h2>Error rates by method (mean ± standard deviation over seeds)</h2>
{markdown_table_html(md_table)}
{differences}
<h2>Curves (one line per method, mean over seeds)</h2>
{figures}
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)

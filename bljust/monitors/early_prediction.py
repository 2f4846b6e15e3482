"""Early prediction of final WER: across finished runs, the rank correlation of each monitor (and of
each training loss) at a fraction of training with the run's final error.

Read-only over run folders (metrics.jsonl + wer.json); tools/early_prediction.py is the command.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau, rankdata, spearmanr

from bljust.monitors.pruning import final_step, value_at_fraction
from bljust.tracking.metrics import read_metrics

SKIP_KEYS = {"monitor/frames"}  # constant by construction


@dataclass
class RunRecord:
    path: Path
    records: list[dict[str, Any]]
    total: int  # the run's last step
    final_error: float  # the chosen split and metric from its wer.json, in %


def find_runs(paths: list[Path]) -> list[Path]:
    """Run folders: each given folder holding metrics.jsonl, else every such folder below it."""
    found: list[Path] = []
    for p in paths:
        found += [p] if (p / "metrics.jsonl").is_file() else sorted(m.parent for m in p.rglob("metrics.jsonl"))
    return sorted(set(found))


def load_run(path: Path, wer_json: str, split: str, metric: str) -> RunRecord | None:
    """None (and the reason printed) for a run without a final score: unfinished or pruned."""
    wer_path = path / wer_json
    if not wer_path.is_file():
        print(f"early_prediction: skipping {path}: no {wer_json} (unfinished or pruned)")
        return None
    table = json.loads(wer_path.read_text())
    if split not in table:
        print(f"early_prediction: skipping {path}: {wer_json} has no split {split!r}")
        return None
    records = read_metrics(path / "metrics.jsonl")
    total = final_step(records) or max((r.get("step", 0) for r in records), default=0)
    return RunRecord(path, records, total, float(table[split][metric]))


def signal_keys(runs: list[RunRecord]) -> list[str]:
    """Every monitor (monitor/...) and training loss (loss...) logged by any run."""
    keys = {k for r in runs for rec in r.records for k in rec
            if (k.startswith("monitor/") or k.startswith("loss")) and k not in SKIP_KEYS}
    return sorted(keys, key=lambda k: (not k.startswith("loss"), k))


def correlations(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(Spearman rho, Kendall tau) of paired values; NaN with fewer than 3 pairs or a constant side."""
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return math.nan, math.nan
    return float(spearmanr(xs, ys).statistic), float(kendalltau(xs, ys).statistic)


RHO_RESAMPLES = 2000


def bootstrap_rho(xs: list[float], ys: list[float], resamples: int = RHO_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of Spearman's rho, resampling runs with replacement (seeded, so a
    table is reproducible). Resamples with a constant side have no rho and are left out; NaN when
    fewer than 3 runs or most resamples have none."""
    if len(xs) < 3:
        return math.nan, math.nan
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    rng = np.random.default_rng(seed)
    # one draw per resample, as a loop would make them (so tables do not change), then every
    # resample's rho at once: rho is the Pearson correlation of the average ranks (ties shared)
    idx = np.stack([rng.integers(0, len(x), len(x)) for _ in range(resamples)])
    rx, ry = rankdata(x[idx], axis=1), rankdata(y[idx], axis=1)
    varies = (rx.max(1) > rx.min(1)) & (ry.max(1) > ry.min(1))  # a constant side has no rho
    if varies.sum() < resamples / 2:
        return math.nan, math.nan
    dx, dy = rx[varies] - rx[varies].mean(1, keepdims=True), ry[varies] - ry[varies].mean(1, keepdims=True)
    rhos = (dx * dy).sum(1) / np.sqrt((dx * dx).sum(1) * (dy * dy).sum(1))
    lo, hi = np.percentile(rhos, [2.5, 97.5])
    return float(lo), float(hi)


def pairs(runs: list[RunRecord], key: str, fraction: float) -> tuple[list[float], list[float]]:
    """(value of key at fraction, final error) for every run that logged key by then."""
    xs, ys = [], []
    for r in runs:
        v = value_at_fraction(r.records, key, fraction, r.total)
        if v is not None and math.isfinite(v):
            xs.append(v)
            ys.append(r.final_error)
    return xs, ys


def analyse(runs: list[RunRecord], fractions: list[float]) -> list[dict[str, Any]]:
    """One row per signal: n, rho, the bootstrap interval of rho and tau at each fraction."""
    rows = []
    for key in signal_keys(runs):
        row: dict[str, Any] = {"signal": key}
        for f in fractions:
            xs, ys = pairs(runs, key, f)
            rho, tau = correlations(xs, ys)
            row[f] = (len(xs), rho, bootstrap_rho(xs, ys) if math.isfinite(rho) else (math.nan, math.nan), tau)
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], fractions: list[float], target: str) -> str:
    head = ["signal"] + [f"{name} @{f:.0%}" for f in fractions for name in ("n", "Spearman ρ", "ρ 95 % CI", "Kendall τ")]
    lines = [f"Rank correlation with final {target} across runs (|ρ| near 1 = predictive; sign says which way; "
             f"the interval resamples runs, {RHO_RESAMPLES} times).",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["signal"]]
        for f in fractions:
            n, rho, (lo, hi), tau = row[f]
            cells += [str(n), _num(rho), "–" if math.isnan(lo) else f"[{lo:+.2f}, {hi:+.2f}]", _num(tau)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _num(v: float) -> str:
    return "–" if math.isnan(v) else f"{v:+.2f}"


def scatter_png(runs: list[RunRecord], keys: list[str], fraction: float, target: str, path: Path) -> None:
    """One panel per signal: its value at `fraction` against the final error, one dot per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(keys)) or 1
    rows = max(1, math.ceil(len(keys) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.9 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        xs, ys = pairs(runs, key, fraction)
        rho, tau = correlations(xs, ys)
        ax.scatter(xs, ys, s=18)
        ax.set_title(f"{key}\nρ={_num(rho)} τ={_num(tau)}", fontsize=8)
        ax.set_xlabel(f"at {fraction:.0%} of training", fontsize=7)
        ax.set_ylabel(f"final {target}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""Successive-halving style pruning for sweeps: stop a run whose monitor, at a fraction of training,
is worse than the median of the finished runs at the same fraction.

A run is "finished" when its metrics.jsonl holds the final record (`"final": true`); a pruned
run never writes one, so pruned runs do not set the bar for later ones.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bljust.tracking.metrics import read_metrics

MARKER = "PRUNED.json"


def value_at_fraction(records: list[dict[str, Any]], key: str, fraction: float, total: int) -> float | None:
    """The first logged value of `key` at or after step fraction * total (None if there is none)."""
    for r in records:
        if r.get("step", 0) >= fraction * total and r.get(key) is not None and not r.get("final"):
            return float(r[key])
    return None


def final_step(records: list[dict[str, Any]]) -> int | None:
    """The step of the final record, or None for an unfinished (or pruned) run."""
    finals = [r["step"] for r in records if r.get("final")]
    return finals[-1] if finals else None


def finished_values(root: Path, key: str, fraction: float, exclude: Path | None = None) -> list[float]:
    """`key` at `fraction` of training in every finished run under `root` (except `exclude`)."""
    values = []
    for path in sorted(root.rglob("metrics.jsonl")):
        if exclude is not None and path.parent.resolve() == exclude.resolve():
            continue
        records = read_metrics(path)
        total = final_step(records)
        value = value_at_fraction(records, key, fraction, total) if total else None
        if value is not None:
            values.append(value)
    return values


def is_worse_than_median(value: float, others: list[float], higher_is_better: bool, min_finished: int) -> bool:
    """True when there are >= min_finished others and value is strictly worse than their median."""
    if len(others) < max(1, min_finished):
        return False
    median = statistics.median(others)
    return value < median if higher_is_better else value > median


def write_marker(run_dir: Path, info: dict[str, Any]) -> Path:
    path = run_dir / MARKER
    path.write_text(json.dumps(info, indent=1))
    return path

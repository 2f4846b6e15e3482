"""The README's main command (`python -m bljust.demo`) end to end at toy size: every method trained,
scored on dev and test, and compared; the table, the HTML and the runs' own scores agree."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bljust.cli import compose_config
from bljust.demo import balanced_jobs, experiment_methods
from bljust.methods import METHODS
from tests.conftest import small_overrides

ROOT = Path(__file__).resolve().parent.parent


def _c(experiment: str, method: str, overrides: tuple[str, ...] = ()) -> float:
    """C a method's run plans in an experiment (the counting of bljust/methods/base.py), from its
    file and `overrides` (a protocol trial's)."""
    cfg = compose_config([f"+experiment={experiment}/{method}", *overrides])
    t, m = cfg.train.max_steps, cfg.method
    if method == "supervised":
        return t
    if method == "ptft":
        return m.pretrain_steps + t
    if method == "just":
        return 2 * t
    if method == "bljust":
        assert m.explore_unit == "steps" or m.explore == 0, "passes depend on the corpus: use steps here"
        epochs = -(-t // m.joint_steps_per_epoch)
        return m.explore_first + epochs * m.explore + 2 * t + (m.finetune if m.finetune_unit == "steps" else 0)
    return t  # pseudo_label: every update 1 C; the labelling passes (1/3 C each) come on top


@pytest.mark.parametrize("experiment", ["demo", "smoke", "bench", "scarce"])
def test_every_method_of_an_experiment_gets_the_same_compute_budget(experiment):
    methods = experiment_methods(experiment)
    assert set(methods) == set(METHODS)
    budgets = {m: _c(experiment, m) for m in methods}
    assert max(budgets.values()) <= 1.0 * min(budgets.values()) / 0.98, budgets


def test_the_demo_starts_as_many_runs_at_a_time_as_end_soonest():
    # five equal runs on 2 cores: 2 at a time leaves one core idle for the fifth run (3 run-lengths),
    # 3 at a time keeps both busy (1.5 + 1 = 2.5); an even count goes one per core
    assert balanced_jobs(5, 2) == 3
    assert balanced_jobs(4, 2) == 2 and balanced_jobs(10, 2) == 2
    assert balanced_jobs(3, 2) == 3  # 1.5 run-lengths, not 2
    assert balanced_jobs(5, 16) == 5 and balanced_jobs(5, 1) == 1 and balanced_jobs(1, 2) == 1


@pytest.mark.e2e
def test_demo_command_runs_every_method_and_writes_an_agreeing_report(demo_root, tmp_path):
    root = tmp_path / "demo_all"
    overrides = [o for o in small_overrides(demo_root) if not o.startswith(("run_dir=", "train.num_workers",
                                                                              "train.progress"))]
    overrides += ["model=tiny", "eval.max_dev_utts=4", "monitor.probe_hours=0.005", "monitor.num_clusters=4",
                  "monitor.max_frames=300"]
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "bljust.demo", "--experiment", "smoke", "--root", str(root), *overrides],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    md = (root / "report.md").read_text()
    table, _, differences = md.partition("\n\n")  # the method table, then the paired bootstrap
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in table.splitlines()[2:]}
    head = [c.strip() for c in table.splitlines()[0].split("|")[2:-1]]
    assert set(rows) == set(METHODS)
    for method in METHODS:
        scores = json.loads((root / method / "seed0" / "eval_last" / "wer.json").read_text())
        for split in ("dev", "test"):
            for metric in ("wer", "cer"):
                cell = rows[method][head.index(f"{split} {metric.upper()}")]
                assert cell == f"{scores[split][metric]:.1f}", (method, split, metric)
    # every method but the baselines against both, and ptft against supervised, on the whole test split
    pairs = {tuple(c.strip() for c in line.split("|")[1:5])
             for line in [ln for ln in differences.splitlines() if ln.startswith("| ")][1:]}  # below the header
    utts = len((root / "supervised" / "seed0" / "eval_last" / "hyps" / "test.txt").read_text().splitlines())
    assert {(m, b) for m, b, _, _ in pairs} == ({(m, "supervised") for m in METHODS if m != "supervised"}
                                                | {(m, "ptft") for m in METHODS if m not in ("supervised", "ptft")})
    assert {(split, n) for _, _, split, n in pairs} == {("test", str(utts))}
    html = (root / "report.html").read_text()
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', html)) >= 3
    assert all(m in html for m in METHODS) and "http" not in html.replace("http-equiv", "")
    summary = json.loads((root / "demo.json").read_text())
    # the demo's own clock against the test's: it ran inside the command, and not trivially short
    assert summary["failed"] == [] and 1 < summary["wall_seconds"] <= elapsed

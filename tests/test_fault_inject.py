"""tools/fault_inject.py at toy size: a demo run killed at a step, inside a checkpoint write, between
the last.pt/prev.pt renames, and preempted with SIGTERM ends exactly like an uninterrupted run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

TOOL = Path(__file__).resolve().parent.parent / "tools" / "fault_inject.py"


def _overrides(demo_root):
    from conftest import SMALL

    return [*[f"recipe.demo.{k}={v}" for k, v in SMALL.items()], f"recipe.corpus_dir={demo_root}/corpus",
                 f"recipe.data_dir={demo_root}/prepared", "logging.wandb=disabled", "train.progress=false",
                 "train.num_workers=0", "optim.warmup_steps=5", "train.log_every=1", "train.max_duration=20",
                 "train.max_steps=6", "train.ckpt_every=2", "train.eval_every=3", "eval.max_dev_utts=2"]


def test_killed_and_preempted_run_ends_like_an_uninterrupted_one(demo_root, tmp_path):
    overrides = _overrides(demo_root)
    r = subprocess.run([sys.executable, str(TOOL), "--work", str(tmp_path), "--faults", "4", "--seed", "0",
                        "--max-seconds", "900", "--", *overrides], capture_output=True, text=True, timeout=1200)
    report = json.loads((tmp_path / "report.json").read_text())
    assert r.returncode == 0 and report["equal"], report["differences"]
    kinds = [a["fault"].split(":")[0] for a in report["attempts"]]
    assert kinds == ["kill@step", "kill@ckpt_write", "kill@ckpt_rotate", "term@step"], report["attempts"]
    for attempt in report["attempts"]:
        if attempt["fault"].startswith("kill@"):
            assert attempt["rc"] == -9, attempt  # every kill fired before the run could finish
        else:
            assert attempt["rc"] == 0, attempt  # SIGTERM: save, then exit cleanly
    log = (tmp_path / "train.log").read_text()
    assert "falling back to" in log and "prev.pt" in log  # the rotation kill left only prev.pt
    assert "stopped by signal 15" in log


def test_run_killed_inside_a_monitor_pass_ends_like_an_uninterrupted_one(demo_root, tmp_path):
    monitor = ["monitor.every_steps=2", "monitor.probe_hours=0.01", "monitor.max_frames=1500",
               "monitor.num_clusters=8", "monitor.silhouette_frames=300"]
    r = subprocess.run([sys.executable, str(TOOL), "--work", str(tmp_path), "--fault", "kill@monitor:2",
                        "--max-seconds", "900", "--", *_overrides(demo_root), *monitor],
                       capture_output=True, text=True, timeout=1200)
    report = json.loads((tmp_path / "report.json").read_text())
    assert r.returncode == 0 and report["equal"], report["differences"]
    assert [a["rc"] for a in report["attempts"]] == [-9]  # killed in the second pass (step 4)
    metrics = [json.loads(line) for line in (tmp_path / "faulted" / "metrics.jsonl").read_text().splitlines()]
    assert any("monitor/rankme" in m for m in metrics)  # the monitors ran, and were resumed past

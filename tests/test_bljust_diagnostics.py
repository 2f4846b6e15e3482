"""tools/bljust_diagnostics.py on hand-written run folders: only BL-JUST runs, the keys that differ,
the joint steps' gradient cosine and gap, exploration's last L_u."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import yaml

TOOL = Path(__file__).parent.parent / "tools" / "bljust_diagnostics.py"


def _tool():
    spec = importlib.util.spec_from_file_location("bljust_diagnostics", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(path: Path, method: dict, records: list[dict], dev_cer: float) -> None:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump({"method": method, "optim": {"lr": 2e-3}}))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (path / "wer.json").write_text(json.dumps({"dev": {"cer": dev_cer, "wer": 90.0}}))


def test_rows_summarise_the_joint_steps_of_bljust_runs_only(tmp_path, capsys):
    logs = [{"step": 10, "phase": 0.0, "loss_unsup": 5.0}, {"step": 20, "phase": 0.0, "loss_unsup": 4.5},
            {"step": 30, "phase": 1.0, "loss_unsup": 4.7, "penalty": 0.2, "gamma": 0.1, "grad_cos_sup_unsup": 0.1},
            {"step": 40, "phase": 1.0, "loss_unsup": 4.6, "penalty": 0.1, "gamma": 0.4, "grad_cos_sup_unsup": -0.3},
            {"step": 50, "phase": 2.0, "loss_sup": 1.0}, {"step": 50, "final": True, "dev_cer": 1.0}]
    _run(tmp_path / "a", {"name": "bljust", "gamma_max": 0.4, "explore": 75}, logs, 41.26)
    _run(tmp_path / "b", {"name": "bljust", "gamma_max": 1.0, "explore": 75}, logs[:2] + [{"step": 60, "phase": 2.0,
         "penalty": None}], 50.0)  # a NaN gap (no exploration) is written as null
    _run(tmp_path / "sup", {"name": "supervised"}, [{"step": 10, "loss_sup": 2.0}], 30.0)
    out = tmp_path / "why.md"
    assert _tool().main([str(tmp_path), "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("| run | method.gamma_max | dev CER |")  # only the key that differs
    rows = {c[0]: c[1:] for line in lines[2:] for c in [[x.strip() for x in line.strip("| ").split("|")]]}
    assert set(rows) == {str(tmp_path / "a"), str(tmp_path / "b")}
    assert rows[str(tmp_path / "a")] == ["0.4", "41.3", "90.0", "-0.100 (2)", "0.200 → 0.100", "0.40", "4.50 → 4.60"]
    assert rows[str(tmp_path / "b")] == ["1.0", "50.0", "90.0", "– (0)", "– → –", "–", "4.50 → –"]  # no joint step logged


def test_no_bljust_run_is_one_line(tmp_path, capsys):
    _run(tmp_path / "sup", {"name": "supervised"}, [], 30.0)
    assert _tool().main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no BL-JUST run" in err

"""The offline comparison (markdown + HTML with embedded plots + paired bootstrap) and the W&B
report, built from run folders laid out as the trainer writes them; nothing is sent anywhere."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import yaml

from bljust.evaluate import write_hyps
from bljust.reporting.runs import collect
from bljust.reporting.table import method_table
from bljust.wandb_report import build_report, describe

ROOT = Path(__file__).resolve().parent.parent
REFS = [(f"u{i:02d}", "THE CAT SAT ON THE MAT") for i in range(40)]


def _fake_run(root: Path, method: str, seed: int, test_wer: float, drop_words: int = 0) -> None:
    """A finished run; its test hypotheses drop the last `drop_words` of every 6-word reference."""
    run = root / method / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"train": {"seed": seed}, "method": {"name": method}}))
    write_hyps([(u, ref, " ".join(ref.split()[:6 - drop_words])) for u, ref in REFS], run / "hyps" / "test.txt")
    records = []
    for step in (10, 20, 30):
        rec = {"step": step, "train_seconds": 6.0 * step, "supervised_updates": step, "compute_c": 10.0 * step + seed,
               "loss_sup": 3.0 - step / 20 - seed * 0.1, "dev_wer": 100 - step, "dev_cer": 60 - step,
               "monitor/rankme": 5.0 + step / 10}
        if method == "bljust":
            rec |= {"gamma": step / 30, "loss_unsup": 4.0 - step / 30}
        records.append(rec)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "wer.json").write_text(json.dumps({"checkpoint": "last", "step": 30,
                                              "dev": {"wer": test_wer - 1, "cer": 20.0},
                                              "test": {"wer": test_wer, "cer": 25.0}}))


def test_compare_writes_agreeing_markdown_and_self_contained_html(tmp_path, monkeypatch):
    from conftest import run_cli

    runs_dir = tmp_path / "runs"
    for method, wers in {"supervised": (80.0, 84.0), "bljust": (70.0, 72.0)}.items():
        for seed, wer in enumerate(wers):
            _fake_run(runs_dir, method, seed, wer, drop_words=3 if method == "supervised" else 0)
    out_md, out_html = tmp_path / "out" / "table.md", tmp_path / "out" / "report.html"
    monkeypatch.chdir(ROOT)
    code, _, err = run_cli(monkeypatch, "bljust.compare", str(runs_dir), "--out", str(out_md), "--html", str(out_html))
    assert code == 0, err
    md = out_md.read_text()
    head = ("| method | seeds | dev WER | test WER | dev CER | test CER | test empty % | compute C | supervised updates "
            "| train min |")
    assert md.startswith(head + "\n")
    # dev and test WER and CER (mean ± sd), empty test hyps, compute C (last value, mean of 300 and 301), updates,
    # minutes
    assert ("| bljust | n=2 (0,1) | 70.0 ± 1.4 | 71.0 ± 1.4 | 20.0 ± 0.0 | 25.0 ± 0.0 | 0.0 ± 0.0 | 300.5 ± 0.7 "
            "| 30.0 ± 0.0 | 3.0 ± 0.0 |") in md
    assert "| supervised | n=2 (0,1) | 81.0 ± 2.8 | 82.0 ± 2.8 |" in md
    # every utterance loses half its words under supervised and none under bljust: every resample
    # gives the same -50 points, and bljust's rate is below supervised's in all of them
    assert "| bljust | supervised | test | 40 | -50.0 [-50.0, -50.0] | 1.00 |" in md
    page = out_html.read_text()
    assert "71.0 ± 1.4" in page and "82.0 ± 2.8" in page  # the same numbers as the table
    assert "-50.0 [-50.0, -50.0]" in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    plots = sorted(p.name for p in (tmp_path / "out" / "report_plots").glob("*.png"))
    # dev WER/CER, CTC loss, unsupervised loss and gamma (bljust only), and the monitor
    assert plots == ["dev_cer.png", "dev_wer.png", "gamma.png", "loss_sup.png", "loss_unsup.png", "monitor_rankme.png"]
    assert len(images) == len(plots) and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched from the network


def test_wandb_report_is_built_offline_with_table_and_grouped_panels(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    _fake_run(tmp_path, "supervised", 0, 80.0)
    md = method_table(collect([tmp_path]))
    report = build_report("team", "bljust-demo", "demo_compare", md)
    spec = describe(report)
    assert (spec["entity"], spec["project"]) == ("team", "bljust-demo")
    assert any(b["type"] == "MarkdownBlock" and "| supervised | n=1 (0) |" in b["text"] for b in spec["blocks"])
    grid = next(b for b in spec["blocks"] if b["type"] == "PanelGrid")
    assert grid["runsets"] == [{"name": "demo_compare", "filters": "Metric('group') == 'demo_compare'",
                                "groupby": ["job_type"]}]
    assert {"dev_wer", "loss_sup", "loss_unsup", "gamma"} <= {y for p in grid["panels"] for y in p["y"]}


def test_the_table_counts_empty_test_hypotheses(tmp_path):
    """A model on the blank plateau outputs nothing: its share of empty hypotheses is in the table."""
    _fake_run(tmp_path, "pseudo_label", 0, 100.0, drop_words=6)
    _fake_run(tmp_path, "pseudo_label", 1, 90.0, drop_words=3)
    table = method_table(collect([tmp_path], "wer.json"))
    row = next(line for line in table.splitlines() if line.startswith("| pseudo_label |"))
    assert row.split(" | ")[6] == "50.0 ± 70.7"  # every hypothesis of seed 0 empty, none of seed 1's

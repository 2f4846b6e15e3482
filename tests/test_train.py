"""End-to-end training on real espeak-ng speech: the loss falls, a killed run resumes exactly,
and the trained checkpoint works with evaluate and transcribe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bljust.tracking.checkpoint import load_checkpoint
from bljust.tracking.metrics import read_metrics

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def trained(demo_root, tmp_path_factory) -> Path:
    """A tiny model trained for 300 small steps on ~4 minutes of labelled demo speech."""
    from conftest import compose

    from bljust.train import Trainer

    run = tmp_path_factory.mktemp("trained")
    cfg = compose(demo_root, ["train.max_steps=300", "train.max_duration=20", "train.log_every=10",
                              "train.eval_every=150", "optim.lr=2e-3", "optim.warmup_steps=20", f"run_dir={run}"])
    Trainer(cfg, run).run()
    return run


def unigram_entropy(demo_root: Path) -> float:
    """Per-token entropy (nats) of the training transcripts: the CTC loss a model reaches from
    token frequencies alone, without listening. Falling below it means the model uses the audio."""
    import math
    from collections import Counter

    from bljust.data.manifests import cut_text, load_cuts
    from bljust.data.tokenizer import Tokenizer

    tok = Tokenizer.load(demo_root / "prepared" / "tokenizer.model")
    counts = Counter(t for c in load_cuts(demo_root / "prepared" / "manifests" / "labelled.jsonl.gz")
                     for t in tok.encode(cut_text(c)))
    n = sum(counts.values())
    return -sum(k / n * math.log(k / n) for k in counts.values())


def test_ctc_loss_falls_below_what_text_statistics_allow(trained, demo_root):
    losses = [r["loss_sup"] for r in read_metrics(trained / "metrics.jsonl") if "loss_sup" in r]
    assert len(losses) == 30
    floor = unigram_entropy(demo_root)
    first, last = sum(losses[:2]) / 2, sum(losses[-3:]) / 3
    assert last < first - 0.2, f"CTC loss did not fall: {first:.3f} -> {last:.3f}"
    assert last < floor - 0.1, f"loss {last:.3f} not below the text-only floor {floor:.3f}: not using the audio"


def test_outputs_follow_the_contract(trained):
    table = json.loads((trained / "wer.json").read_text())
    assert table["step"] == 300 and {"dev", "test"} <= set(table)
    for split in ("dev", "test"):
        assert 0 <= table[split]["cer"] and table[split]["utterances"] > 0
        lines = (trained / "hyps" / f"{split}.txt").read_text().splitlines()
        assert len(lines) == table[split]["utterances"]
    assert "${" not in (trained / "config.yaml").read_text()  # saved resolved
    ckpt = load_checkpoint(trained / "checkpoints" / "last.pt")
    assert ckpt["step"] == 300 and ckpt["config"]["method"]["name"] == "supervised"
    # best.pt is the dev evaluation with the lowest error of eval.select_metric (CER in the demo)
    assert ckpt["config"]["eval"]["select_metric"] == "cer"
    evals = [(r["dev_cer"], r["step"]) for r in read_metrics(trained / "metrics.jsonl") if "dev_cer" in r and not r.get("final")]
    best = load_checkpoint(trained / "checkpoints" / "best.pt")
    assert best["step"] == min(evals)[1] and best["best_dev_error"] == pytest.approx(min(evals)[0])


def test_rerunning_a_finished_run_changes_nothing(trained, demo_root):
    from conftest import compose

    from bljust.train import Trainer

    before = (trained / "metrics.jsonl").read_text(), (trained / "wer.json").read_text()
    cfg = compose(demo_root, ["train.max_steps=300", "train.max_duration=20", "train.log_every=10",
                              "train.eval_every=150", "optim.lr=2e-3", "optim.warmup_steps=20", f"run_dir={trained}"])
    Trainer(cfg, trained).run()
    assert ((trained / "metrics.jsonl").read_text(), (trained / "wer.json").read_text()) == before


def test_evaluate_and_transcribe_commands(trained, demo_root):
    ckpt = trained / "checkpoints" / "best.pt"
    r = subprocess.run([sys.executable, "-m", "bljust.evaluate", f"ckpt={ckpt}", "split=test", f"out={trained}/ev"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("test: WER ")
    assert json.loads((trained / "ev" / "wer.json").read_text())["test"]["utterances"] > 0
    files = sorted(str(p) for p in (demo_root / "corpus" / "test").rglob("*.flac"))[:3]
    r = subprocess.run([sys.executable, "-m", "bljust.transcribe", f"ckpt={ckpt}", *files],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert [line.split("\t")[0] for line in r.stdout.splitlines()] == files


def _error_rates(ckpt: Path, data: Path) -> dict[str, float]:
    """WER/CER of a checkpoint on a table, references normalised as the checkpoint's were."""
    from bljust.data.dataset import AsrDataset
    from bljust.evaluate import data_cuts, load_model, score, transcribe_cuts

    model, tok, cmvn, cfg = load_model(load_checkpoint(ckpt), torch.device("cpu"))
    cuts = data_cuts(str(data), 30.0, cfg.get("text"))
    return score(transcribe_cuts(model, cuts, AsrDataset(cmvn, tok), tok, torch.device("cpu")))


def test_fine_tuning_on_a_company_csv_lowers_its_error(trained, demo_root, tmp_path):
    """recipe=custom + init_from: a demo checkpoint fine-tuned on a CSV of sentences it never heard
    with labels (the demo's unlabelled split, exported with audio beside the table) gets better on it."""
    from conftest import compose

    from bljust.data.tokenizer import Tokenizer
    from bljust.train import Trainer

    from tools.export_table import export_table

    table = tmp_path / "acme" / "train.csv"
    export_table(demo_root / "corpus" / "unlabelled", table, minutes=0.75, copy_audio=True)
    # Keep rows the checkpoint's tokenizer can spell, so its CTC head carries over (warm_start.py).
    tok = Tokenizer.from_tensor(load_checkpoint(trained / "checkpoints" / "best.pt")["tokenizer"])
    lines = table.read_text().splitlines()
    table.write_text("\n".join([lines[0], *[ln for ln in lines[1:] if tok.unknown_fraction(ln.split(",")[1]) == 0]]))
    base = trained / "checkpoints" / "best.pt"
    before = _error_rates(base, table)
    cfg = compose(demo_root, ["recipe=custom", f"recipe.corpus_dir={tmp_path}/acme", "recipe.labelled=[train.csv]",
                              "recipe.dev=[train.csv]", f"recipe.data_dir={tmp_path}/prepared", f"init_from={base}",
                              "train.max_steps=80", "train.max_duration=20", "train.eval_every=80", "optim.lr=2e-3",
                              "optim.warmup_steps=5", f"run_dir={tmp_path}/ft"])
    after = Trainer(cfg, tmp_path / "ft").run()["train"]
    print(f"company CSV ({before['utterances']} utterances): WER {before['wer']:.1f} -> {after['wer']:.1f} %, "
          f"CER {before['cer']:.1f} -> {after['cer']:.1f} %")
    assert after["utterances"] == before["utterances"] >= 5
    # WER of a 300-step demo model sits near 100 %, so CER carries the signal; WER must not rise
    assert after["cer"] < before["cer"] - 3 and after["wer"] <= before["wer"]


def _strip_times(records: list[dict]) -> list[dict]:
    from tools.fault_inject import TIME_KEYS

    return [{k: v for k, v in r.items() if "seconds" not in k and k not in TIME_KEYS} for r in records]


def test_sigkill_and_rerun_resumes_exactly(demo_root, tmp_path):
    from conftest import train_cmd

    steps = 12
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(train_cmd(demo_root, whole, steps), check=True, capture_output=True, timeout=600)

    proc = subprocess.Popen(train_cmd(demo_root, killed, steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once a checkpoint exists and training has gone past it
        m = killed / "metrics.jsonl"
        if m.exists() and any(r.get("step", 0) >= 5 for r in read_metrics(m)):
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert load_checkpoint(killed / "checkpoints" / "last.pt")["step"] < steps
    r = subprocess.run(train_cmd(demo_root, killed, steps), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout

    a, b = (load_checkpoint(d / "checkpoints" / "last.pt") for d in (whole, killed))
    assert a["step"] == b["step"] == steps
    assert a["method"]["supervised_updates"] == b["method"]["supervised_updates"] == steps
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["method"]["optimizers"]["main"]["state"], b["method"]["optimizers"]["main"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for k in sa[i]:
            assert torch.equal(sa[i][k], sb[i][k]), (i, k)
    assert a["streams"] == b["streams"]
    assert _strip_times(read_metrics(whole / "metrics.jsonl")) == _strip_times(read_metrics(killed / "metrics.jsonl"))

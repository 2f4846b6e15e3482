"""Checkpoint files, metrics.jsonl and the W&B run (offline: nothing is sent)."""

from __future__ import annotations

import datetime
import os
import pickle
from pathlib import Path

import pytest
import torch

from bljust.tracking.checkpoint import CheckpointError, load_checkpoint, save_atomic
from bljust.tracking.metrics import MetricsWriter, read_metrics
from bljust.tracking.wandb_run import wandb_mode


def test_save_atomic_leaves_no_temp_file_and_loads_weights_only(tmp_path):
    obj = {"format": 1, "step": 3, "w": torch.arange(4.0)}
    save_atomic(obj, tmp_path / "c" / "last.pt")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["last.pt"]
    assert torch.equal(load_checkpoint(tmp_path / "c" / "last.pt")["w"], obj["w"])


def test_corrupt_or_foreign_checkpoint_is_one_clear_error(tmp_path):
    save_atomic({"format": 1, "step": 1, "w": torch.zeros(1000)}, tmp_path / "a.pt")
    data = (tmp_path / "a.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="trunc.pt: corrupt or truncated"):
        load_checkpoint(tmp_path / "trunc.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: not a bljust checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")


def test_evaluate_on_a_bad_checkpoint_is_one_line_that_never_suggests_an_unsafe_load(tmp_path, monkeypatch):
    from conftest import run_cli

    """torch's own refusal advises weights_only=False, which would run the file's code: never passed on."""
    save_atomic({"format": 1, "step": 1, "w": torch.zeros(1000)}, tmp_path / "a.pt")
    data = (tmp_path / "a.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    torch.save({"format": 1, "step": 1, "when": datetime.datetime(2026, 1, 1)}, tmp_path / "object.pt")
    with open(tmp_path / "plain.pkl", "wb") as f:  # not torch.save: pickle's own protocol (torch warns of it)
        pickle.dump({"model": Path("weights")}, f, protocol=4)
    cases = {
        "trunc.pt": "corrupt or truncated checkpoint (PytorchStreamReader failed reading zip archive: "
                    "failed finding central directory)",
        "object.pt": "not a bljust checkpoint: it holds a Python object of type datetime.datetime, which a safe "
                     "load refuses (a bljust checkpoint holds only tensors and plain values)",
        "plain.pkl": "corrupt or truncated checkpoint (not readable as a PyTorch file: Unsupported operand 149)",
    }
    for name, what in cases.items():
        got = run_cli(monkeypatch, "bljust.evaluate", f"ckpt={tmp_path / name}", "split=test")
        assert got == (1, "", f"error: {tmp_path / name}: {what}\n"), name


def test_metrics_writer_truncates_past_resume_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    w = MetricsWriter(path)
    for step in (1, 2, 3, 4):
        w.write({"step": step, "loss": torch.tensor(float(step)), "bad": float("nan")})
    w.close()
    with open(path, "a") as f:
        f.write('{"step": 5, "lo')  # torn by a kill mid-write
    MetricsWriter(path, resume_step=2).close()
    assert read_metrics(path) == [{"step": 1, "loss": 1.0, "bad": None}, {"step": 2, "loss": 2.0, "bad": None}]


def test_wandb_auto_mode(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode("auto") == "online"
    assert wandb_mode("disabled") == "disabled"


@pytest.mark.e2e
def test_offline_wandb_run_is_kept_in_the_checkpoint(small_cfg, tmp_path, monkeypatch, capfd):
    from bljust.train import Trainer

    secret = "s3cr3t" * 7
    monkeypatch.setenv("WANDB_API_KEY", secret)  # must never land in config, logs or checkpoints
    monkeypatch.setenv("WANDB_SILENT", "true")
    import wandb

    real_init, seen = wandb.init, {}

    def spy_init(**kwargs):
        seen.update(kwargs)
        return real_init(**kwargs)

    monkeypatch.setattr(wandb, "init", spy_init)
    cfg = small_cfg(["logging.wandb=offline", "train.max_steps=2", "train.eval_every=2", "eval.max_dev_utts=2",
                     "logging.group=cmp", "train.seed=3", f"run_dir={tmp_path}"])
    Trainer(cfg, Path(tmp_path)).run()
    # a comparison's runs: project = recipe, group = comparison, job_type = method, a seed tag
    assert (seen["project"], seen["group"], seen["job_type"]) == (cfg.recipe.wandb_project, "cmp", cfg.method.name)
    assert "seed3" in seen["tags"] and seen["resume"] == "allow"
    assert seen["config"]["train"]["max_steps"] == 2  # the resolved config
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt["wandb_id"] and list((tmp_path / "wandb").glob(f"offline-run-*-{ckpt['wandb_id']}"))
    files = [p for p in tmp_path.rglob("*") if p.is_file()]  # every file: W&B's own .wandb/.log too
    assert any(p.suffix == ".pt" for p in files) and any(p.suffix == ".wandb" for p in files)
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
    out, err = capfd.readouterr()
    assert secret not in out and secret not in err  # nor in what the run printed

"""Runs survive faults: checkpoint fallback, non-finite steps, bad data inside a run, impossible
configs and the W&B key. (Kills at random points: test_fault_inject.py; bad files one by one:
test_bad_data.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from bljust.cli import compose_config
from bljust.config import ConfigError
from bljust.errors import UserError
from bljust.tracking.checkpoint import CheckpointError, load_checkpoint, load_latest, save_atomic
from bljust.tracking.metrics import read_metrics
from bljust.tracking.wandb_run import refuse_secrets


# --- checkpoints -----------------------------------------------------------------------------
def _ckpt(step: int) -> dict:
    return {"format": 1, "step": step, "w": torch.full((100,), float(step))}


def test_last_pt_keeps_its_predecessor_and_a_bad_one_falls_back(tmp_path):
    last, prev = tmp_path / "last.pt", tmp_path / "prev.pt"
    assert load_latest([last, prev]) is None  # a fresh run
    for step in (1, 2, 3):
        save_atomic(_ckpt(step), last, keep_previous="prev.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "prev.pt"]
    assert load_checkpoint(last)["step"] == 3 and load_checkpoint(prev)["step"] == 2
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # a copy cut short, a disk fault
    ckpt, path, problems = load_latest([last, prev])
    assert path == prev and ckpt["step"] == 2
    assert len(problems) == 1 and problems[0].startswith(f"{last}: corrupt or truncated checkpoint")
    last.unlink()  # killed between the two renames of a rotation
    assert load_latest([last, prev])[1] == prev
    prev.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"no usable checkpoint to resume from: .*last.pt: missing; "
                                              r".*prev.pt: corrupt or truncated"):
        load_latest([last, prev])


# --- a run on a copy of the prepared demo data with some files damaged ------------------------
def damaged_run(demo_root: Path, tmp: Path, n_bad: int, overrides: list[str]):
    """A Trainer on the prepared demo data whose first `n_bad` labelled files are truncated copies."""
    from conftest import compose
    from lhotse import CutSet
    from lhotse.audio import AudioSource
    from lhotse.utils import fastcopy

    from bljust.data.manifests import load_cuts
    from bljust.prepare import _signature
    from bljust.train import Trainer

    prepared = tmp / "prepared"
    shutil.copytree(demo_root / "prepared", prepared)
    cfg = compose(demo_root, [f"recipe.data_dir={prepared}", f"run_dir={tmp}/run", "train.max_duration=60",
                              "train.num_buckets=3", "train.log_every=1", *overrides])
    (prepared / "prepare.json").write_text(json.dumps({"signature": _signature(cfg)}))
    (tmp / "bad").mkdir()
    cuts = []
    for i, cut in enumerate(load_cuts(prepared / "manifests" / "labelled.jsonl.gz")):
        if i < n_bad:
            data = Path(cut.recording.sources[0].source).read_bytes()
            bad = tmp / "bad" / f"{cut.id}.flac"
            bad.write_bytes(data[: len(data) // 2])
            cut = fastcopy(cut, recording=fastcopy(cut.recording, sources=[AudioSource("file", [0], str(bad))]))
        cuts.append(cut)
    CutSet.from_cuts(cuts).to_file(prepared / "manifests" / "labelled.jsonl.gz")
    return Trainer(cfg, tmp / "run"), cfg


@pytest.mark.e2e
def test_bad_files_in_a_run_are_counted_per_epoch_and_a_bad_last_pt_falls_back(demo_root, tmp_path, capsys):
    from bljust.train import Trainer

    trainer, cfg = damaged_run(demo_root, tmp_path, 3, ["train.max_steps=7", "train.ckpt_every=2",
                                                        "train.eval_every=100", "eval.max_dev_utts=2"])
    trainer.run()  # 6 batches an epoch: step 7 starts epoch 1
    out = capsys.readouterr().out
    assert "labelled data, epoch 0 done at step 7: used 78 utterances, skipped 3 (unreadable_audio: 3, e.g. " in out
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    (end,) = [r for r in records if r.get("epoch_end")]
    assert end == {"step": 7, "epoch_end": "labelled", "epoch": 0, "used": 78, "skipped": 3,
                   "skip_reasons": {"unreadable_audio": 3}}
    assert [r["skipped_utterances"] for r in records if r.get("step") == 6 and "loss_sup" in r] == [3]  # all of epoch 0

    ckpts = tmp_path / "run" / "checkpoints"
    assert load_checkpoint(ckpts / "prev.pt")["step"] == 6 and load_checkpoint(ckpts / "last.pt")["step"] == 7
    (ckpts / "last.pt").write_bytes((ckpts / "last.pt").read_bytes()[:1000])
    again = Trainer(cfg, tmp_path / "run")
    assert again.resume() == ckpts / "prev.pt" and again.step == 6
    assert again.labelled.skips.as_dict() == {"unreadable_audio": 3}  # skip counts travel in the checkpoint
    assert f"warning: {ckpts / 'last.pt'}: corrupt or truncated checkpoint" in capsys.readouterr().out


@pytest.mark.e2e
def test_mostly_bad_data_stops_the_run_with_one_clear_message(demo_root, tmp_path):
    from bljust.data.skips import BadDataError

    trainer, _ = damaged_run(demo_root, tmp_path, 30, ["train.max_steps=7", "train.ckpt_every=100",
                                                       "train.eval_every=100", "train.max_bad_fraction=0.2"])
    with pytest.raises(BadDataError, match=r"^labelled data, epoch 0: 30 of 81 utterances \(37%\) unusable, "
                                           r"more than train.max_bad_fraction=0.2 \(skipped 30 \(unreadable_audio"):
        trainer.run()


# --- non-finite loss ---------------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.parametrize("fused", ["false", "true"])  # true: the sync-free skip of CUDA runs, on the CPU
def test_nonfinite_steps_are_skipped_and_a_streak_stops_naming_the_last_good_checkpoint(small_cfg, tmp_path,
                                                                                       monkeypatch, fused):
    import bljust.methods.supervised as supervised
    from bljust.train import Trainer, TrainingDiverged

    calls = {"n": 0}
    real_loss = supervised.supervised_loss

    def flaky_loss(ctx, batch):  # step 2 NaN, steps 3-4 fine, NaN from step 5 on
        calls["n"] += 1
        loss = real_loss(ctx, batch)
        return loss * float("nan") if calls["n"] == 2 or calls["n"] >= 5 else loss

    monkeypatch.setattr(supervised, "supervised_loss", flaky_loss)
    cfg = small_cfg(["train.max_steps=10", "train.ckpt_every=2", "train.log_every=1", "train.eval_every=100",
                     "train.max_nonfinite_steps=3", f"optim.fused={fused}", f"run_dir={tmp_path}"])
    ckpt = tmp_path / "checkpoints" / "last.pt"
    with pytest.raises(TrainingDiverged, match=rf"^stopped at step 7: 3 consecutive steps had a non-finite loss "
                                               rf"or gradient \(train.max_nonfinite_steps=3\); last good checkpoint: "
                                               rf"{ckpt} \(step 4\)$"):
        Trainer(cfg, tmp_path).run()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["nonfinite_skips"] for r in records] == [0, 1, 1, 1, 2, 3, 4]
    assert [r["loss_sup"] is None for r in records] == [False, True, False, False, True, True, True]
    last = load_checkpoint(ckpt)
    assert last["step"] == 4 and last["method"]["nonfinite_streak"] == 0  # saved while the streak ran: never
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    # AdamW counted only the 3 good updates (steps 1, 3, 4): a skipped step leaves its state alone
    states = [st for opt in last["method"]["optimizers"].values() for st in opt["state"].values()]
    assert states and {float(st["step"]) for st in states} == {3.0}
    assert all(torch.isfinite(st["exp_avg_sq"]).all() for st in states)


# --- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize("override, message", [
    ("train.max_steps=-1", "train.max_steps must be > 0"),
    ("train.max_steps=3.5", "train.max_steps"),
    ("train.ckpt_every=0", "train.log_every, train.eval_every and train.ckpt_every must be > 0"),
    ("train.num_buckets=1", "train.num_buckets must be >= 2"),
    ("train.max_bad_fraction=1.5", "train.max_bad_fraction must be in [0, 1]"),
    ("train.max_nonfinite_steps=0", "train.max_nonfinite_steps must be >= 1"),
    ("objective.bestrq.mask_prob=1.2", "objective.bestrq.mask_prob must be in [0, 1]"),
    ("objective.infonce.mask_prob=-0.1", "objective.infonce.mask_prob must be in [0, 1]"),
    ("optim.lr=0", "optim.lr must be > 0"),
    ("specaug.time_mask_max_frac=2", "specaug.time_mask_max_frac must be in [0, 1]"),
    ("train.max_stepz=3", "max_stepz"),
])
def test_impossible_config_is_one_clear_error(override, message):
    with pytest.raises(ConfigError) as err:
        compose_config([override])
    assert message in str(err.value) and "\n" not in str(err.value).strip()


def test_gamma_max_below_gamma0_is_refused():
    with pytest.raises(ConfigError, match=r"method.gamma_max must be >= method.gamma0 >= 0"):
        compose_config(["method=bljust", "method.gamma0=2.0", "method.gamma_max=1.0"])
    with pytest.raises(ConfigError, match="method.pretrain_steps must be >= 0"):
        compose_config(["method=ptft", "method.pretrain_steps=-3"])


# --- secrets -----------------------------------------------------------------------------------
def test_a_config_holding_the_wandb_key_is_refused_before_anything_is_written(monkeypatch, tmp_path):
    from bljust.train import Trainer

    secret = "k3y" * 14
    monkeypatch.setenv("WANDB_API_KEY", secret)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    cfg = compose_config(["logging.wandb=disabled", f"run_dir={tmp_path}/run", "run_name=${oc.env:WANDB_API_KEY}"])
    with pytest.raises(UserError, match="a config value holds the W&B API key"):
        Trainer(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    refuse_secrets({"logging": {"tags": ["fine"]}})  # no key inside: passes
    with pytest.raises(UserError):
        refuse_secrets({"logging": {"tags": [secret]}})
    (tmp_path / ".netrc").write_text(f"machine api.wandb.ai\n  login user\n  password {'n3trc' * 9}\n")
    (tmp_path / ".netrc").chmod(0o600)
    monkeypatch.delenv("WANDB_API_KEY")
    with pytest.raises(UserError):
        refuse_secrets({"note": "n3trc" * 9})

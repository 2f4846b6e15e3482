"""A full disk under the run folder: checkpoints, metrics.jsonl, hyps and wer.json fail cleanly.

Each test mounts a real small tmpfs (needs root, or CAP_SYS_ADMIN); where mounting is not
allowed the tests are skipped, saying so.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

from bljust.tracking.checkpoint import load_checkpoint, save_atomic
from bljust.tracking.disk import DiskWriteError, write_text_atomic
from bljust.tracking.metrics import MetricsWriter, read_metrics

MB = 10**6


@pytest.fixture
def small_fs(tmp_path):
    """small_fs(megabytes) -> the folder of a freshly mounted tmpfs of that size."""
    mounted = []

    def mount(megabytes: float) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(megabytes * MB)}", "tmpfs", str(where)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here (needs root): {r.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of `folder` up, then give back `leave` bytes (rounded to pages)."""
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def ckpt(step: int, numel: int = 250_000) -> dict:
    return {"format": 1, "step": step, "w": torch.full((numel,), float(step))}  # 1 MB of tensor


def test_a_checkpoint_that_does_not_fit_keeps_last_and_prev_and_says_why(small_fs):
    fs = small_fs(2.5)  # room for last.pt and prev.pt, not for the temp file of a third
    last = fs / "checkpoints" / "last.pt"
    save_atomic(ckpt(1), last, keep_previous="prev.pt")
    save_atomic(ckpt(2), last, keep_previous="prev.pt")
    with pytest.raises(DiskWriteError) as err:
        save_atomic(ckpt(3), last, keep_previous="prev.pt")
    message = str(err.value)
    assert re.fullmatch(rf"{fs}/checkpoints: cannot write last.pt \(no space left on device\): "
                        r"it needs 1\.0 MB, [0-9.]+ kB free", message), message
    free_kb = float(message.split(", ")[-1].split()[0])
    assert free_kb * 1000 == pytest.approx(os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize, abs=100)
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.pt", "prev.pt"]  # no temp file left
    assert load_checkpoint(last)["step"] == 2 and load_checkpoint(last.parent / "prev.pt")["step"] == 1


def test_metrics_and_text_files_fail_in_one_line_and_leave_no_torn_record(small_fs):
    fs = small_fs(1)
    metrics = MetricsWriter(fs / "metrics.jsonl")
    metrics.write({"step": 1, "loss": 1.0})
    (fs / "wer.json").write_text('{"old": 1}')
    fill(fs, leave=8192)  # two pages: a 20 kB record is cut short half-way by the full disk
    with pytest.raises(DiskWriteError, match=rf"^{fs}: cannot write metrics.jsonl \(no space left on device\): "
                                             r"it needs 20\.0 kB, "):
        metrics.write({"step": 2, "note": "x" * 19_985})
    metrics.close()
    assert read_metrics(fs / "metrics.jsonl") == [{"step": 1, "loss": 1.0}]
    assert (fs / "metrics.jsonl").read_text().endswith("}\n")  # the cut-short write was taken back
    fill(fs)
    with pytest.raises(DiskWriteError, match=rf"^{fs}: cannot write wer.json \(no space left on device\): "
                                             r"it needs 30\.0 kB, 0 bytes free"):
        write_text_atomic(fs / "wer.json", "x" * 30_000)
    assert (fs / "wer.json").read_text() == '{"old": 1}' and not (fs / ".wer.json.tmp").exists()


@pytest.mark.e2e
def test_continue_on_save_error_counts_and_retries_at_the_next_checkpoint(small_cfg, small_fs):
    from bljust.train import Trainer

    fs = small_fs(100)
    cfg = small_cfg([f"run_dir={fs}/run", "train.on_save_error=continue", "train.max_steps=4"])
    trainer = Trainer(cfg, fs / "run")
    trainer.step = 1
    trainer.save()
    assert trainer.last_saved == (fs / "run" / "checkpoints" / "last.pt", 1)
    filler = fill(fs)
    trainer.step = 2
    trainer.save()  # the disk is full: counted, training would go on
    assert trainer.save_guard.errors == 1 and trainer.last_saved[1] == 1
    assert sorted(p.name for p in (fs / "run" / "checkpoints").iterdir()) == ["last.pt"]
    filler.unlink()  # space freed: the next checkpoint goes through
    trainer.step = 3
    trainer.save()
    assert trainer.last_saved[1] == 3 and trainer.save_guard.errors == 1
    saved = load_checkpoint(fs / "run" / "checkpoints" / "last.pt")
    assert saved["step"] == 3 and saved["save_errors"] == 1
    assert load_checkpoint(fs / "run" / "checkpoints" / "prev.pt")["step"] == 1


@pytest.mark.e2e
@pytest.mark.parametrize("policy", ["stop", "continue"])
def test_a_run_on_a_filling_disk(demo_root, small_fs, policy):
    """Real runs, checkpoints of 26 MB on a 70 MB disk: the third does not fit beside last.pt and prev.pt."""
    from conftest import train_cmd

    fs = small_fs(70)
    run = fs / "run"
    r = subprocess.run(train_cmd(demo_root, run, 12, f"train.on_save_error={policy}"),
                       capture_output=True, text=True, timeout=900)
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.pt", "prev.pt"]  # no temp file, no torn file
    assert load_checkpoint(ckpts / "last.pt")["step"] == 6 and load_checkpoint(ckpts / "prev.pt")["step"] == 3
    records = [m for m in read_metrics(run / "metrics.jsonl") if "save_errors" in m]
    if policy == "stop":
        assert r.returncode == 1 and "Traceback" not in r.stderr
        line = r.stderr.strip().splitlines()[-1]
        assert re.fullmatch(rf"error: stopped at step 9: {ckpts}: cannot write last.pt \(no space left on device\): "
                            rf"it needs 2\d\.\d MB, 1\d\.\d MB free; the last good checkpoint is kept: "
                            rf"{ckpts}/last.pt \(step 6\); free space and re-run to resume, or set "
                            r"train.on_save_error=continue to train on and retry", line), line
        assert [m["step"] for m in records] == list(range(1, 10)) and records[-1]["save_errors"] == 0
    else:
        assert r.returncode == 0, r.stderr
        # failed at step 9 (last.pt), then at step 12 (best.pt, after that step's record; then last.pt)
        assert [m["save_errors"] for m in records] == [0] * 9 + [1, 1, 1]
        assert r.stdout.count("training goes on (train.on_save_error=continue)") == 3
        assert (run / "wer.json").is_file() and (run / "hyps" / "test.txt").is_file()

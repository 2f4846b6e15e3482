"""A run folder holds one run: a second live process is refused, and so is a resume with another
model or method (real processes, real checkpoints of the small demo corpus)."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from bljust.tracking.checkpoint import load_checkpoint
from bljust.tracking.run_config import RunConfigMismatch, config_changes

pytestmark = pytest.mark.e2e


def wait_for(check, seconds: float = 300.0) -> None:
    deadline = time.time() + seconds
    while not check():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def test_a_second_process_in_a_live_runs_folder_is_refused_and_a_killed_holder_frees_it(demo_root, tmp_path):
    from conftest import train_cmd

    run = tmp_path / "run"
    first = subprocess.Popen(train_cmd(demo_root, run, 500), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = run / "run.lock"
        wait_for(lambda: lock.is_file() and f'"pid": {first.pid}' in lock.read_text())
        second = subprocess.run(train_cmd(demo_root, run, 500), capture_output=True, text=True, timeout=300)
        assert first.poll() is None  # still running: the refusal came from its live lock
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert second.stderr.strip().splitlines()[-1] == (
        f"error: {run}: another run is using this folder (pid {first.pid} on {socket.gethostname()}); "
        "wait for it to end, or give this one another run_dir")
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1))  # one run's records, not two interleaved
    # SIGKILL leaves the lock file but not the lock: the next run takes the folder over
    third = subprocess.run(train_cmd(demo_root, run, 3), capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr
    assert f'"pid": {first.pid}' not in (run / "run.lock").read_text()


@pytest.fixture(scope="module")
def finished(demo_root, tmp_path_factory) -> Path:
    """A real 3-step run of the small demo corpus, checkpoint at step 3 (the tests below resume it
    in order: refused twice, then extended to 5 steps)."""
    from conftest import train_cmd

    run = tmp_path_factory.mktemp("finished") / "run"
    subprocess.run(train_cmd(demo_root, run, 3), check=True, capture_output=True, timeout=600)
    return run


def test_resuming_with_another_method_is_one_line_before_anything_is_written(demo_root, finished):
    from conftest import train_cmd

    def files() -> dict[Path, bytes]:  # run.lock aside: it names whoever holds the folder now
        return {p: p.read_bytes() for p in finished.rglob("*") if p.is_file() and p.name != "run.lock"}

    before = files()
    r = subprocess.run(train_cmd(demo_root, finished, 3, "method=just"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: {finished}: holds a run with another config ({finished}/checkpoints/last.pt, step 3): "
        "method.name: 'supervised' -> 'just'; use another run_dir for this run "
        "(only cadences, max_steps, device and logging may change on resume)")
    assert files() == before and (finished / "config.yaml") in before  # config.yaml is not overwritten


def test_resuming_with_another_model_names_every_differing_key(small_cfg, finished):
    from bljust.train import Trainer

    with pytest.raises(RunConfigMismatch) as err:
        Trainer(small_cfg([f"run_dir={finished}", "train.max_steps=3", "model=small"]), finished)
    assert re.search(r"model.d_model: 144 -> 192; model.name: 'tiny' -> 'small'; model.num_layers: 4 -> 8; ",
                     str(err.value)), str(err.value)


def test_resuming_with_more_steps_and_other_cadences_goes_on(small_cfg, finished, capsys):
    from bljust.train import Trainer

    cfg = small_cfg([f"run_dir={finished}", "train.max_steps=5", "train.log_every=2", "train.ckpt_every=3",
                     "train.eval_every=1000", "device=cpu"])
    Trainer(cfg, finished).run()
    out = capsys.readouterr().out
    assert re.search(r"resume: changed since last.pt \(allowed on resume\): device: 'auto' -> 'cpu'; "
                     r"train.log_every: 1 -> 2; train.max_steps: 3 -> 5\n", out), out
    assert f"resumed from {finished}/checkpoints/last.pt at step 3" in out
    assert load_checkpoint(finished / "checkpoints" / "last.pt")["step"] == 5


def test_keys_added_by_a_newer_bljust_are_not_changes():
    saved = {"train": {"max_steps": 3, "seed": 0}, "logging": {"tags": []}}
    now = {"train": {"max_steps": 9, "seed": 0, "on_save_error": "stop"}, "logging": {"tags": ["x"]}, "seed": 0}
    assert config_changes(saved, now) == (["logging.tags: [] -> ['x']", "train.max_steps: 3 -> 9"], [])
    assert config_changes(saved, {**now, "train": {"max_steps": 3, "seed": 1}})[1] == ["train.seed: 0 -> 1"]

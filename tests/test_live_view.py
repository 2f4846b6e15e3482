"""The demo's live view (bljust/reporting/live.py) on a real training run: its lines agree with the
metrics.jsonl and wer.json the run wrote, and it prints within its interval while the run trains."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bljust.reporting.live import LiveView, clock_text, read_progress, status_line
from tests.conftest import train_cmd

ROOT = Path(__file__).resolve().parent.parent
INTERVAL = 0.5  # seconds between status lines in the watched run
STEPS = 4


class FakeClock:
    """A clock the test moves by hand, so the view's timing does not depend on the machine's load."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TimedLines:
    """A text stream that keeps each whole line with the (fake) time it arrived."""

    def __init__(self, clock: FakeClock) -> None:
        self.lines: list[tuple[float, str]] = []
        self._part, self._clock = "", clock

    def write(self, text: str) -> None:
        self._part += text
        *whole, self._part = self._part.split("\n")
        self.lines += [(self._clock(), line) for line in whole]

    def flush(self) -> None:
        pass


POLL = 0.125  # fake seconds between the view's ticks (binary fractions: the sums are exact)
TICKS_PER_RECORD = 3


@pytest.fixture(scope="module")
def watched(demo_root, tmp_path_factory):
    """A real 4-step run (a dev evaluation at steps 2 and 4), then its metrics.jsonl replayed record
    by record into a folder a LiveView watches, its ticks driven by hand on a fake clock (as the
    view's thread would drive them every POLL seconds): (run folder, the view's lines, start and
    end times)."""
    run = tmp_path_factory.mktemp("live") / "supervised" / "seed0"
    proc = subprocess.run(train_cmd(demo_root, run, STEPS, "train.eval_every=2", "model=tiny",
                                    "eval.max_dev_utts=4"), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    replay = run.parent.parent / "replay" / "supervised" / "seed0"
    replay.mkdir(parents=True)
    clock = FakeClock()
    out = TimedLines(clock)
    view = LiveView(interval=INTERVAL, out=out, poll=POLL, clock=clock)  # not entered: no thread
    began = clock()
    view.start("supervised/seed0", replay)
    with (replay / "metrics.jsonl").open("w") as metrics:
        for line in (run / "metrics.jsonl").read_text().splitlines(keepends=True):
            metrics.write(line)
            metrics.flush()
            for _ in range(TICKS_PER_RECORD):
                clock.now += POLL
                view.tick()
    view.end("supervised/seed0", proc.returncode, str(run / "demo.log"))
    ended = clock()
    return run, out.lines, began, ended


@pytest.mark.train
def test_lines_agree_with_the_records_a_real_run_wrote(watched, tmp_path):
    run, _, _, _ = watched
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if not r.get("final")] == [1, 2, 3, 4]
    # the run halfway: its file as it stood after the step-2 record, dev evaluated once
    half = tmp_path / "half"
    half.mkdir()
    (half / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:2]))
    r1, r2 = records[:2]
    spent = r2["train_seconds"] + r2["eval_seconds"] + r2.get("monitor_seconds_total", 0.0)
    assert status_line("supervised/seed0", read_progress(half), 65.0) == (
        f"supervised/seed0       step 2/4  dev CER {r2['dev_cer']:>5.1f}  1m05s in, "
        f"~{clock_text(spent / 2 * 2)} left")
    # before any dev evaluation: no CER yet
    (half / "metrics.jsonl").write_text(json.dumps(r1) + "\n")
    spent = r1["train_seconds"] + r1.get("monitor_seconds_total", 0.0)
    assert status_line("supervised/seed0", read_progress(half), 3.0) == (
        f"supervised/seed0       step 1/4  dev CER     -  3s in, ~{clock_text(spent * 3)} left")
    # nothing written yet
    assert status_line("supervised/seed0", read_progress(tmp_path / "none"), 0.0) == (
        "supervised/seed0       step 0/?  dev CER     -  0s in, - left")
    # the finished run: the final rates are its wer.json's
    done = read_progress(run)
    scores = json.loads((run / "wer.json").read_text())
    assert done.step == done.total == STEPS
    assert done.dev_cer == records[-2]["dev_cer"]
    assert done.final == {f"{s}_{m}": scores[s][m] for s in ("dev", "test") for m in ("wer", "cer")}


@pytest.mark.train
def test_view_prints_within_its_interval_while_the_child_trains(watched):
    _, lines, began, ended = watched
    texts = [text for _, text in lines]
    # no gap longer than the interval, from the start to the end (fake time: exact, whatever the load)
    times = [began, *(t for t, _ in lines), ended]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) <= INTERVAL, gaps
    # a status line exactly every INTERVAL while the run trains (15 ticks of 0.125 s: at 0.5, 1.0,
    # 1.5 s; the final record arrives after that, and its line replaces none)
    status = [t for t, text in lines if " step " in text]
    assert status == [INTERVAL * k for k in range(1, int((ended - began) / INTERVAL) + 1)] == [0.5, 1.0, 1.5], texts
    status = [t for t in texts if " step " in t]
    steps = [int(t.split(" step ")[1].split("/")[0]) for t in status]
    assert steps == [2, 3, 4], texts  # records 2, 3, 4 were the newest at ticks 4, 8 and 12
    assert texts[0].startswith("demo [    0s] supervised/seed0       started (")
    finished = [t for t in texts if " trained 4 steps in " in t]
    assert len(finished) == 1 and "dev CER" in finished[0] and "test CER" in finished[0], texts
    assert " done in " in texts[-1] and texts.index(finished[0]) < len(texts) - 1

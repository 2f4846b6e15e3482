"""The demo's live view: while its runs train, one line per running run every `interval` seconds
(method/seed, step / total, the last dev CER, time so far and time left) and a line as each run
finishes, read from the run folders' metrics.jsonl. The runs' own output stays in their log files,
so these lines are the console's only output while runs train."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bljust.tracking.metrics import read_metrics


@dataclass(frozen=True)
class Progress:
    """What a run's metrics.jsonl says so far."""

    step: int = 0  # the last logged step; 0 before the first record
    total: int | None = None  # steps the loop runs, from the records' total_steps
    dev_cer: float | None = None  # the last dev evaluation's CER
    seconds: float = 0.0  # what the logged steps took: training, dev evaluations, monitors
    final: dict[str, float] = field(default_factory=dict)  # the final record's rates, once training ended

    def seconds_left(self) -> float | None:
        """At the rate so far; None before there is a rate or a total."""
        if self.total is None or self.step <= 0 or self.seconds <= 0:
            return None
        return self.seconds / self.step * max(self.total - self.step, 0)


def read_progress(run_dir: Path) -> Progress:
    """The progress of the run in `run_dir`, from the records written so far (a torn last line,
    as a running trainer may leave for an instant, is left out by read_metrics)."""
    path = run_dir / "metrics.jsonl"
    records = read_metrics(path) if path.is_file() else []
    if not records:
        return Progress()

    def last(key: str) -> Any:
        return next((r[key] for r in reversed(records) if r.get(key) is not None), None)

    # train_seconds excludes dev evaluations and monitors (bljust/tracking/throughput.py): added back,
    # so time left counts them too
    seconds = (last("train_seconds") or 0.0) + sum(r.get("eval_seconds") or 0.0 for r in records) \
        + (last("monitor_seconds_total") or 0.0)
    dev_cer = next((v for r in reversed(records) if not r.get("final") for k, v in r.items()
                    if k.startswith("dev") and k.endswith("_cer") and v is not None), None)
    end = records[-1]
    final = {k: v for k, v in end.items() if k.endswith(("_wer", "_cer")) and v is not None} if end.get("final") else {}
    return Progress(step=int(end.get("step", 0)), total=last("total_steps"), dev_cer=dev_cer,
                    seconds=float(seconds), final=final)


def clock_text(seconds: float | None) -> str:
    """`45s`, `3m05s`, `1h02m`; `-` when unknown."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def status_line(label: str, p: Progress, elapsed: float) -> str:
    """One running run: `bljust/seed0  step 120/400  dev CER 43.2  3m05s in, ~7m10s left`; a run
    whose training has ended is being scored."""
    if p.final:
        return f"{label:<22} trained, scoring  {clock_text(elapsed)} in"
    total = "?" if p.total is None else str(p.total)
    cer = "-" if p.dev_cer is None else f"{p.dev_cer:.1f}"
    left = p.seconds_left()
    return (f"{label:<22} step {p.step:>{len(total)}}/{total}  dev CER {cer:>5}  "
            f"{clock_text(elapsed)} in, {'~' + clock_text(left) if left is not None else '-'} left")


def finished_line(label: str, p: Progress, elapsed: float) -> str:
    """A run whose training has ended: its final rates, from its last record."""
    rates = "  ".join(f"{k.rsplit('_', 1)[0]} {k.rsplit('_', 1)[1].upper()} {v:.1f}"
                      for k, v in sorted(p.final.items(), key=lambda kv: (not kv[0].startswith("dev"), kv[0])))
    return f"{label:<22} trained {p.step} steps in {clock_text(elapsed)}: {rates}"


@dataclass
class _Tracked:
    run_dir: Path
    started: float
    said_finished: bool = False


class LiveView:
    """Prints the progress of the runs it is told about (start/end) from a thread of its own:
    every `interval` seconds a line per running run, and at once a line when one finishes
    training or ends. Lines go to `out` whole, under one lock, so threads never interleave them."""

    def __init__(self, interval: float = 20.0, out: TextIO | None = None, poll: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, prefix: str = "demo"):
        self.interval, self.poll, self.clock, self.prefix = interval, min(poll, interval), clock, prefix
        self.out = out if out is not None else sys.stdout
        self.runs: dict[str, _Tracked] = {}
        self.began = clock()
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name="live-view", daemon=True)
        self._next = self.began + interval

    def __enter__(self) -> LiveView:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def say(self, line: str) -> None:
        with self._lock:
            self.out.write(f"{self.prefix} [{clock_text(self.clock() - self.began):>6}] {line}\n")
            self.out.flush()

    def start(self, label: str, run_dir: Path) -> None:
        with self._lock:
            self.runs[label] = _Tracked(Path(run_dir), self.clock())
        self.say(f"{label:<22} started ({run_dir})")

    def end(self, label: str, rc: int, log: str) -> None:
        with self._lock:
            tracked = self.runs.pop(label, None)
        took = clock_text(self.clock() - tracked.started) if tracked else "-"
        self.say(f"{label:<22} " + (f"done in {took}" if rc == 0 else f"FAILED (exit {rc}) after {took}, see {log}"))

    def tick(self) -> None:
        """Lines for what changed since the last tick, and the status of every run when one is due."""
        now = self.clock()
        with self._lock:
            runs = list(self.runs.items())
        due = now >= self._next
        for label, tracked in runs:
            p = read_progress(tracked.run_dir)
            if p.final and not tracked.said_finished:
                tracked.said_finished = True
                self.say(finished_line(label, p, now - tracked.started))
            elif due:
                self.say(status_line(label, p, now - tracked.started))
        if due:
            self._next = now + self.interval

    def _loop(self) -> None:
        while not self._stop.wait(self.poll):
            self.tick()

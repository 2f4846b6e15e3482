"""Training time and throughput over log windows, with time spent elsewhere left out."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator


class ThroughputMeter:
    """Counts steps and training seconds per log window.

    Dev evaluation, monitor passes and checkpoint writes are not training: their time is excluded
    (`excluded()` or `exclude(seconds)`) without ending the window, so a window's steps are always
    divided by that same window's training time. `wait_seconds` is the data streams' running total
    of time spent waiting for batches.
    """

    def __init__(self, wait_seconds: Callable[[], float], train_seconds: float = 0.0,
                 clock: Callable[[], float] = time.perf_counter):
        self.wait_seconds, self.clock = wait_seconds, clock
        self.train_seconds = train_seconds  # over the whole run, up to the end of the last window
        self._open()

    def _open(self) -> None:
        self.start, self.steps, self.excluded_seconds = self.clock(), 0, 0.0
        self.wait_start = self.wait_seconds()

    def step(self) -> None:
        self.steps += 1

    def exclude(self, seconds: float) -> None:
        self.excluded_seconds += seconds

    @contextmanager
    def excluded(self) -> Iterator[None]:
        t = self.clock()
        try:
            yield
        finally:
            self.exclude(self.clock() - t)

    def _window_seconds(self) -> float:
        return self.clock() - self.start - self.excluded_seconds

    def total_seconds(self) -> float:
        """Training seconds of the whole run so far, the open window included (for checkpoints)."""
        return self.train_seconds + self._window_seconds()

    def close_window(self) -> dict[str, float]:
        """The window's rates and the run's training seconds; a new window starts."""
        seconds = max(self._window_seconds(), 1e-9)
        self.train_seconds += seconds
        out = {"train_seconds": self.train_seconds, "steps_per_second": self.steps / seconds,
               # the share of the window's training time spent waiting for batches
               "data_wait_fraction": (self.wait_seconds() - self.wait_start) / seconds}
        self._open()
        return out

"""The throughput meter: a window's steps are divided by that same window's training time."""

from __future__ import annotations

import pytest

from bljust.tracking.throughput import ThroughputMeter


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_checkpoint_time_inside_a_window_is_excluded_not_a_window_reset():
    clock, waited = Clock(), [0.0]
    meter = ThroughputMeter(lambda: waited[0], train_seconds=10.0, clock=clock)
    for step in range(1, 11):  # 10 steps of 1 s; a checkpoint write of 5 s after step 4 (not a log step)
        clock.t += 1.0
        meter.step()
        if step == 4:
            with meter.excluded():
                clock.t += 5.0
            assert meter.total_seconds() == pytest.approx(14.0)  # what the checkpoint stores
    waited[0] = 2.0
    meter.exclude(0.0)
    out = meter.close_window()
    assert out["steps_per_second"] == pytest.approx(1.0)  # 10 steps / 10 s, not 10 steps / 6 s
    assert out["data_wait_fraction"] == pytest.approx(0.2)
    assert out["train_seconds"] == pytest.approx(20.0)
    clock.t += 3.0  # a monitor pass reported by its own timer
    meter.exclude(3.0)
    clock.t += 2.0
    meter.step()
    assert meter.close_window()["steps_per_second"] == pytest.approx(0.5)

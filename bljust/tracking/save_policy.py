"""What a run does when a checkpoint cannot be written: stop (the default) or keep training.

A full disk at hour 20 should not cost the run when the user would rather free space while it
goes on: `train.on_save_error=continue` keeps training, counts the failure (`save_errors` in
metrics.jsonl) and tries again at the next checkpoint. Either way the previous good last.pt and
prev.pt stay as they were (tracking/checkpoint.py's save_atomic).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from bljust import distributed
from bljust.config import ConfigError
from bljust.errors import UserError
from bljust.tracking.disk import DiskWriteError

ON_SAVE_ERROR = ("stop", "continue")


class SaveFailed(UserError, RuntimeError):
    """A checkpoint could not be written and train.on_save_error=stop."""


class SaveGuard:
    """Runs rank 0's checkpoint writes; every rank learns the outcome, so all stop or go on together."""

    def __init__(self, policy: str, is_main: bool):
        if policy not in ON_SAVE_ERROR:
            raise ConfigError(f"train.on_save_error={policy!r}: expected stop or continue")
        self.policy, self.is_main = policy, is_main
        self.errors = 0  # failed checkpoint writes so far in this run

    def write(self, write: Callable[[], None], step: int, last_good: tuple[Path, int] | None) -> bool:
        """Call `write` on rank 0 (collective: every rank calls this); True when it succeeded."""
        failure = distributed.failure_on_main(write, self.is_main, DiskWriteError)
        if failure is None:
            return True
        self.errors += 1
        kept = f"{last_good[0]} (step {last_good[1]})" if last_good else "none written yet"
        if self.policy == "stop":
            raise SaveFailed(f"stopped at step {step}: {failure}; the last good checkpoint is kept: {kept}; free space "
                             "and re-run to resume, or set train.on_save_error=continue to train on and retry")
        if self.is_main:
            print(f"warning: step {step}: {failure}; training goes on (train.on_save_error=continue) and the next "
                  f"checkpoint tries again; {self.errors} failed so far; last good checkpoint: {kept}", flush=True)
        return False

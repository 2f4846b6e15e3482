"""Stop requests from the scheduler: a signal is noted, the loop finishes its step, saves, exits."""

from __future__ import annotations

import signal
from typing import Any

from bljust import distributed

# SLURM sends SIGTERM on preemption, submitit SIGUSR2 before a time limit (or on preemption), and
# SIGUSR1 is the usual `sbatch --signal` choice: each saves last.pt, then the launcher's own
# handler (submitit's requeue) runs.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class StopSignals:
    """While entered, STOP_SIGNALS only set a flag; on exit the previous handlers are back.

    A signal reaches DDP ranks at different steps, so `requested()` is agreed over ranks (a
    collective: every rank calls it once per step)."""

    def __init__(self):
        self._received = 0
        self.signum = 0  # the last agreed request: what the loop acted on
        self._previous: dict[int, Any] = {}

    def _note(self, signum, _frame) -> None:
        self._received = signum

    def requested(self) -> int:
        """The signal number every rank agrees was received (0: none)."""
        self.signum = int(distributed.agree_max(self._received))
        return self.signum

    def pass_on(self) -> None:
        """Run the handler that was installed before ours for the received signal: a launcher's
        (submitit requeues the job there). Call after the run's state is saved and logs closed."""
        handler = self._previous.get(self.signum)
        if callable(handler):
            handler(self.signum, None)

    def __enter__(self) -> "StopSignals":
        self._previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._note)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

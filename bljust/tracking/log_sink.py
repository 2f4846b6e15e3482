"""Where a run's records go: metrics.jsonl and W&B together, closed once on every exit."""

from __future__ import annotations

from typing import Any

from bljust.tracking.metrics import MetricsWriter
from bljust.tracking.wandb_run import WandbRun


class LogSink:
    """Rank 0 writes metrics.jsonl and logs to W&B; other ranks hold a sink that writes nothing
    (W&B disabled), so the loop needs no rank checks. Use as a context manager: whatever ends the
    run (the last step, a signal, pruning, an error), the file is closed and W&B finished once."""

    def __init__(self, metrics: MetricsWriter | None, wandb: WandbRun):
        self.metrics, self.wandb = metrics, wandb
        self._closed = False

    def write(self, record: dict[str, Any]) -> None:
        """A record with a "step" key: appended to metrics.jsonl and logged to W&B at that step."""
        if self.metrics is not None:
            self.metrics.write(record)
        self.wandb.log(record, record["step"])

    def summary(self, values: dict[str, Any]) -> None:
        self.wandb.summary(values)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.metrics is not None:
            self.metrics.close()
        self.wandb.finish()

    def __enter__(self) -> "LogSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""metrics.jsonl: one JSON object per log step, appended and flushed, truncated on resume."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from bljust.tracking.disk import append_line, write_text_atomic


def _plain(value: Any) -> Any:
    """JSON-safe scalar: tensors to floats, NaN/inf to None (JSON has no NaN)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsWriter:
    """Appends records to `path`. On resume, records past the resumed step are dropped first, so
    the file of a killed-and-resumed run matches that of an uninterrupted one.

    Each record goes to the file in one unbuffered write, so a full disk fails that write with one
    clear line (bljust.tracking.disk) and leaves no torn record; the cut-back on resume goes
    through a temp file, so it cannot lose the records it keeps.
    """

    def __init__(self, path: str | Path, resume_step: int = 0):
        self.path = Path(path)
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and _is_json(line) and json.loads(line).get("step", 0) <= resume_step]
            write_text_atomic(self.path, "".join(line + "\n" for line in kept))
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps({k: _plain(v) for k, v in record.items()}) + "\n"
        append_line(self._fd, self.path, line.encode("utf-8"))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except json.JSONDecodeError:  # a line torn by a kill mid-write
        return False


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip() and _is_json(line)]

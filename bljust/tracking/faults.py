"""Named points where the reliability tests can kill a run: BLJUST_FAULT=<point>:<n>[:<signal>]
sends SIGKILL (or the named signal, e.g. SIGTERM) to this process the n-th time <point> is reached.

An outside SIGKILL at a random moment rarely lands inside a checkpoint write (milliseconds on a
toy model); these points make the rare moments reproducible. Points: step (after a step's update,
before it is counted), ckpt_write (a temp file written, not yet renamed), ckpt_rotate (last.pt
moved to prev.pt, the new one not yet in place), eval (inside a dev evaluation), monitor (inside
a monitor pass, between embedding and clustering). Unset (always, outside tests), a call is one comparison.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_SPEC = os.environ.get("BLJUST_FAULT")
_hits: Counter = Counter()


def fault_point(name: str) -> None:
    if _SPEC is None:
        return
    parts = _SPEC.split(":")
    point, count, sig = parts[0], int(parts[1]) if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else "SIGKILL"
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] == count:
        os.kill(os.getpid(), getattr(signal, sig))

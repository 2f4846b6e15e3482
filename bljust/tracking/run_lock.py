"""One run per folder: an exclusive lock on `run.lock` in the run folder, held by rank 0.

A double launch, or a SLURM requeue while the old job still runs, would otherwise interleave two
runs' metrics and checkpoints in one folder. `fcntl.flock` is released by the kernel when the
holding process dies however it dies, so a kill never leaves a stale lock behind and a requeued
job starts once the old one is gone. The file records the holder's pid and host for the message
a second process gets; its contents are only informative, the lock itself is the flock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import IO

from bljust import distributed
from bljust.errors import UserError

LOCK_NAME = "run.lock"

# Locks this process holds, by folder: a second Trainer on the same folder in the same process
# (a test, a notebook) is the same run, not a rival one.
_held: dict[Path, IO[str]] = {}


class RunFolderBusy(UserError, RuntimeError):
    """Another live process holds the run folder's lock."""


def _holder(f: IO[str]) -> str:
    f.seek(0)
    try:
        info = json.loads(f.read() or "{}")
    except ValueError:  # being written by the holder this very moment
        info = {}
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}"


def lock_run_folder(folder: Path) -> None:
    """Take the folder's lock for this process, or raise RunFolderBusy naming the holder."""
    folder = Path(folder).absolute()
    if folder in _held:
        return
    folder.mkdir(parents=True, exist_ok=True)
    f = open(folder / LOCK_NAME, "a+", encoding="utf-8")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(f)
        f.close()
        raise RunFolderBusy(f"{folder}: another run is using this folder ({holder}); wait for it to end, "
                            "or give this one another run_dir") from None
    except OSError as err:  # e.g. Lustre mounted without -o flock: run, but say what is not guarded
        f.close()
        print(f"warning: {folder}: file locks are not supported here ({err.strerror}); "
              "a second run started in this folder would not be stopped", flush=True)
        return
    f.seek(0)
    f.truncate()
    f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
    f.flush()
    _held[folder] = f


def hold_run_folder(folder: Path, is_main: bool) -> None:
    """Rank 0 takes the lock; every rank stops with the same line when it cannot (collective)."""
    problem = distributed.failure_on_main(lambda: lock_run_folder(folder), is_main, RunFolderBusy)
    if problem is not None:
        raise RunFolderBusy(problem)

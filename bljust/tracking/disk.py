"""Writes into a run folder that can meet a full disk (or a quota, or a read-only mount).

A failed write leaves no partial file behind and stops with one line naming the folder, the
size the write needed and the space free, instead of torch's or Python's tracebacks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from bljust.errors import UserError


class DiskWriteError(UserError, OSError):
    """A file of the run could not be written; the message names the folder and the space."""


def human_size(n: int) -> str:
    """12 bytes, 4.1 kB, 12.3 MB, 1.2 GB (powers of 1000, as df -H prints)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def free_bytes(folder: Path) -> int | None:
    """Space free to this user in the file system holding `folder` (its nearest existing parent)."""
    folder = Path(folder).absolute()
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def os_error_in(err: BaseException) -> OSError | None:
    """The OSError behind `err`: itself, or one torch wrapped (a RuntimeError from its zip writer)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def write_error(path: Path, err: OSError, needed: int) -> DiskWriteError:
    """The one line for a write of `needed` bytes to `path` that failed with `err`."""
    path = Path(path)
    reason = (err.strerror or str(err) or type(err).__name__).lower()
    free = free_bytes(path.parent)
    space = f"{human_size(free)} free" if free is not None else "free space unknown"
    return DiskWriteError(f"{path.parent}: cannot write {path.name} ({reason}): it needs {human_size(needed)}, {space}")


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensor storages inside `obj` (nested dicts, lists, tuples): what a checkpoint
    of it needs on disk, give or take its small pickled remainder."""
    storages: dict[tuple[int, int], int] = {}

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            storages[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(obj)
    return sum(storages.values())


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def fsync_folder(folder: Path) -> None:
    """Make the renames inside `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` through a temp file renamed into place: a failure leaves the old file (if any)
    and no temp file, and is one DiskWriteError."""
    path = Path(path)
    data = text.encode("utf-8")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        remove_quietly(tmp)
        raise write_error(path, err, len(data)) from None


def append_line(fd: int, path: Path, data: bytes) -> None:
    """Append `data` to the open file `fd` whole or not at all: a write cut short by a full disk
    is cut back off, so the file never ends in a torn line."""
    start = os.fstat(fd).st_size
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as err:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
        raise write_error(path, err, len(data)) from None

"""Checkpoints: one format, written atomically, read with `torch.load(weights_only=True)`.

A checkpoint holds everything to resume exactly (model, optimisers, schedulers, data-stream
positions, RNG states, the W&B run id) and everything to use the model alone (resolved config,
tokenizer, CMVN stats).
"""

from __future__ import annotations

import os
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bljust.errors import UserError
from bljust.tracking.disk import fsync_folder, os_error_in, remove_quietly, tensor_bytes, write_error
from bljust.tracking.faults import fault_point

FORMAT_VERSION = 1


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be read; the message names the file."""


def save_atomic(obj: dict[str, Any], path: str | Path, keep_previous: str | None = None) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`.

    A crash at any point leaves either the old file or the new one, never a torn one.
    keep_previous: the file being replaced is first renamed to this name (e.g. prev.pt), so a
    checkpoint that proves unreadable later (a disk fault, a copy cut short) has a fallback.
    A write that fails (a full disk, a quota) removes its temp file, leaves `path` and
    `keep_previous` as they were, and raises one DiskWriteError naming the space needed and free.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            fault_point("ckpt_write")
            os.fsync(f.fileno())
    except (OSError, RuntimeError) as err:  # torch's zip writer turns the OSError into a RuntimeError
        os_err = os_error_in(err)
        remove_quietly(tmp)
        if os_err is None:
            raise
        raise write_error(path, os_err, tensor_bytes(obj)) from None
    if keep_previous and path.is_file():
        os.replace(path, path.with_name(keep_previous))
        fault_point("ckpt_rotate")  # a kill here leaves prev.pt and no last.pt: resume takes prev.pt
    os.replace(tmp, path)
    fsync_folder(path.parent)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint safely (no pickled code); one clear error if it is missing or corrupt.

    mmap: map the tensors instead of reading them (for a look at the config alone).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # torch warns of a plain pickle's protocol, in words about weights_only
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:
        raise CheckpointError(f"{path}: {describe_load_error(err, path)}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a bljust checkpoint (format {FORMAT_VERSION} expected)")
    return ckpt


_UNPICKLER_DETAIL = re.compile(r"WeightsUnpickler error:\s*(.*?)(?:\n\n|$)", re.S)
_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


def describe_load_error(err: BaseException, path: Path) -> str:
    """What is wrong with a file torch.load(weights_only=True) refused, in a few words.

    torch's own message advises loading with weights_only=False (or allow-listing the class),
    which runs whatever code the file holds: the wrong advice for a file of unknown origin, so it
    is never passed on.
    """
    text = str(err)
    detail = _UNPICKLER_DETAIL.search(text)
    if detail:
        refused = _GLOBAL.search(detail.group(1))
        if refused:
            return (f"not a bljust checkpoint: it holds a Python object of type {refused.group(1)}, which a safe "
                    "load refuses (a bljust checkpoint holds only tensors and plain values)")
        return f"corrupt or truncated checkpoint (not readable as a PyTorch file: {detail.group(1).strip()[:120]})"
    size = path.stat().st_size if path.is_file() else 0
    if isinstance(err, EOFError) or size == 0:
        return f"corrupt or truncated checkpoint (the file ends early: {size} bytes)"
    first = (text.splitlines() or [type(err).__name__])[0]
    first = first.split(". ")[0]  # torch appends generic advice after the first sentence
    if "weights_only" in first:
        first = type(err).__name__
    return f"corrupt or truncated checkpoint ({first[:200]})"


def load_latest(paths: list[Path], map_location: str | torch.device = "cpu",
                mmap: bool = False) -> tuple[dict[str, Any], Path, list[str]] | None:
    """The first of `paths` (newest first) that loads, with one message per newer file passed over.

    None when none of them exists (a fresh run). When some exist but none loads, one
    CheckpointError names each file and what is wrong with it.
    """
    problems = []
    for path in paths:
        if not Path(path).is_file():
            problems.append(f"{path}: missing")
            continue
        try:
            return load_checkpoint(path, map_location, mmap), Path(path), problems
        except CheckpointError as err:
            problems.append(str(err))
    if all(p.endswith(": missing") for p in problems):
        return None
    raise CheckpointError("no usable checkpoint to resume from: " + "; ".join(problems)
                          + " (move the checkpoints folder away to start afresh)")


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states in types weights_only loading accepts."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():  # this process's device only: a DDP rank owns one GPU
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np_state[1].numpy(), *np_state[2:]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]  # a list of every device's state in checkpoints before DDP
        torch.cuda.set_rng_state(cuda if isinstance(cuda, torch.Tensor) else cuda[torch.cuda.current_device()])

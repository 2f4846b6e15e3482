"""Checkpoints: one format, written atomically, read with `torch.load(weights_only=True)`.

A checkpoint holds everything to resume exactly (model, optimisers, schedulers, data-stream
positions, RNG states, the W&B run id) and everything to use the model alone (resolved config,
tokenizer, CMVN stats).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bljust.errors import UserError
from bljust.tracking.faults import fault_point

FORMAT_VERSION = 1


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be read; the message names the file."""


def save_atomic(obj: dict[str, Any], path: str | Path, keep_previous: str | None = None) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`.

    A crash at any point leaves either the old file or the new one, never a torn one.
    keep_previous: the file being replaced is first renamed to this name (e.g. prev.pt), so a
    checkpoint that proves unreadable later (a disk fault, a copy cut short) has a fallback.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        fault_point("ckpt_write")
        os.fsync(f.fileno())
    if keep_previous and path.is_file():
        os.replace(path, path.with_name(keep_previous))
        fault_point("ckpt_rotate")  # a kill here leaves prev.pt and no last.pt: resume takes prev.pt
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (no pickled code); one clear error if it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({str(err).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a bljust checkpoint (format {FORMAT_VERSION} expected)")
    return ckpt


def load_latest(paths: list[Path], map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], Path, list[str]] | None:
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
            return load_checkpoint(path, map_location), Path(path), problems
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

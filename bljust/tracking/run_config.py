"""A run folder belongs to one run: resuming it with another model, method or data is refused.

The checkpoint keeps the resolved config it was trained with. Re-running into the same folder
with a different one would load weights into the wrong model (a wall of missing state-dict
keys), a method's state into another method, or quietly mix two experiments in one metrics file.
Only settings that do not change what is trained may differ; they are listed in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bljust.errors import UserError
from bljust.tracking.checkpoint import load_latest

# May change on resume: how long to train (to extend a run), how often to log, evaluate, save and
# monitor, how fast to read data, the stop limits, where it runs and where it reports. None of
# them is part of the model, the data or the optimisation.
RESUMABLE = (
    "train.max_steps", "train.log_every", "train.eval_every", "train.ckpt_every", "train.num_workers",
    "train.progress", "train.max_bad_fraction", "train.max_nonfinite_steps", "train.on_save_error",
    "monitor.every_steps", "monitor.batch_duration", "eval.max_dev_utts", "eval.batch_duration", "eval.score_test",
    "device", "run_dir", "run_name", "logging.",
)
MAX_LISTED = 6  # differing keys named in the message; a changed method differs in dozens


class RunConfigMismatch(UserError, ValueError):
    """A run folder's checkpoint was trained with another config than the one given now."""


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists are values."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resumable(key: str) -> bool:
    return any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE)


def config_changes(saved: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(allowed, refused): 'key: old -> new' for each differing key.

    A key only one side has is a field added or removed by a newer bljust, not a change: a method
    switch still shows as `method.name`.
    """
    old, now = flatten(saved), flatten(new)
    allowed, refused = [], []
    for key in sorted(old.keys() & now.keys()):
        if old[key] != now[key]:
            (allowed if resumable(key) else refused).append(f"{key}: {old[key]!r} -> {now[key]!r}")
    return allowed, refused


def check_resume_config(ckpt_dir: Path, resolved: dict[str, Any], folder: Path, verbose: bool) -> None:
    """Before anything in the run folder is written: refuse a checkpoint of another run, log the
    allowed changes. Reads only the config of the checkpoint that resume will load (tensors mapped,
    not read); a folder with no usable checkpoint is left to resume's own messages."""
    try:
        found = load_latest([ckpt_dir / "last.pt", ckpt_dir / "prev.pt"], "cpu", mmap=True)
    except UserError:
        return
    if found is None or not isinstance(found[0].get("config"), dict):
        return
    ckpt, path, _ = found
    allowed, refused = config_changes(ckpt["config"], resolved)
    if refused:
        more = f" and {len(refused) - MAX_LISTED} more" if len(refused) > MAX_LISTED else ""
        raise RunConfigMismatch(
            f"{folder}: holds a run with another config ({path}, step {ckpt['step']}): "
            f"{'; '.join(refused[:MAX_LISTED])}{more}; use another run_dir for this run "
            "(only cadences, max_steps, device and logging may change on resume)")
    if allowed and verbose:
        print(f"resume: changed since {path.name} (allowed on resume): {'; '.join(allowed)}", flush=True)

"""Weights & Biases: one run per training run, resumed with the same id after a restart."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def wandb_mode(setting: str) -> str:
    """auto -> online when an API key is configured, offline otherwise."""
    if setting != "auto":
        return setting
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (Path.home() / ".netrc").exists() and \
        "api.wandb.ai" in (Path.home() / ".netrc").read_text(errors="ignore")
    return "online" if has_key else "offline"


class WandbRun:
    """Thin wrapper so the loop never imports wandb when it is disabled (the import is slow)."""

    def __init__(self, mode: str, project: str, group: str | None, name: str, job_type: str,
                 config: dict[str, Any], out_dir: Path, run_id: str | None, tags: list[str]):
        self.run = None
        self.mode = wandb_mode(mode)
        if self.mode == "disabled":
            return
        import wandb

        self.run = wandb.init(
            project=project, group=group, name=name, job_type=job_type, config=config, dir=str(out_dir),
            id=run_id, resume="allow", mode=self.mode, tags=tags, reinit="finish_previous",
        )

    @property
    def id(self) -> str | None:
        return self.run.id if self.run is not None else None

    def log(self, record: dict[str, Any], step: int) -> None:
        if self.run is not None:
            self.run.log(record, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


def api_keys() -> list[str]:
    """The W&B API keys this process can see (environment, ~/.netrc), to keep out of every file."""
    import netrc

    keys = [os.environ.get("WANDB_API_KEY", "")]
    try:
        auth = netrc.netrc().authenticators("api.wandb.ai")
        keys.append(auth[2] if auth else "")
    except (OSError, netrc.NetrcParseError):
        pass
    return [k for k in keys if len(k) >= 8]


def refuse_secrets(config: dict[str, Any]) -> None:
    """Stop before a W&B API key reaches config.yaml, W&B's config or a checkpoint.

    The key belongs in WANDB_API_KEY or ~/.netrc; a config value holding it (typed in, or pulled
    in by ${oc.env:WANDB_API_KEY}) would be written to every one of those files.
    """
    import json

    from bljust.errors import UserError

    text = json.dumps(config, default=str)
    if any(key in text for key in api_keys()):
        raise UserError("a config value holds the W&B API key: set it only as WANDB_API_KEY or in ~/.netrc")


def seed_tags(tags: list[str] | tuple[str, ...], seed: int) -> list[str]:
    """The user's tags plus `seed<N>`, so W&B can filter and group a comparison's runs by seed."""
    tags = list(tags)
    return tags if f"seed{seed}" in tags else [*tags, f"seed{seed}"]

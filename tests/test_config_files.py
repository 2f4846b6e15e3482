"""The YAML files under conf/ state only what differs from the dataclass defaults."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bljust.cli import CONF_DIR
from bljust.config import Config, ModelConfig, MonitorConfig
from bljust.methods import METHODS


def _default(node: Any, path: list[str]) -> Any:
    """The dataclass default at `path` under `node` (a dataclass type or instance); KeyError if none."""
    for key in path:
        if not is_dataclass(node):
            raise KeyError(key)
        if key not in {f.name for f in fields(node)}:
            raise KeyError(key)
        node = getattr(node() if isinstance(node, type) else node, key)
    return node


def _leaves(tree: Any, prefix: list[str]):
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k in ("defaults", "hydra"):
                continue
            yield from _leaves(v, [*prefix, str(k)])
    else:
        yield prefix, tree


def _root_for(path: Path) -> tuple[Any, list[str]]:
    group = path.parent.relative_to(CONF_DIR).parts
    text = path.read_text()
    if "@package _global_" in text:
        return Config, []
    if group[:1] == ("model",):
        return ModelConfig, []
    if group[:1] == ("monitor",):
        return MonitorConfig, []
    if group[:1] == ("method",):
        return METHODS[path.stem].config, []
    return Config, []


# conf/protocol/ holds trial files of python -m bljust.protocol, lists of overrides rather than config nodes
FILES = sorted(p for p in CONF_DIR.rglob("*.yaml") if p.parent.name not in ("launcher", "protocol") and p.name != "config.yaml")


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CONF_DIR)))
def test_yaml_sets_only_values_that_differ_from_the_defaults(path):
    root, prefix = _root_for(path)
    data = yaml.safe_load(path.read_text()) or {}
    # a file built on another (librispeech_10min on _10h, scarce/common on bench/common) restates
    # what differs from it, even where that is a dataclass default
    parents = {}
    if path.relative_to(CONF_DIR).parts[0] == "experiment":
        # an experiment composes over the entry config's default recipe, which moves some defaults
        # (train.ckpt_every, monitor.every_steps): restating a dataclass default the recipe changed
        # is needed, restating the recipe's own value is not; each method's budget (train.max_steps)
        # is stated in its file whatever the recipe's
        recipe = yaml.safe_load((CONF_DIR / "recipe" / f"{_entry_recipe()}.yaml").read_text()) or {}
        parents.update({tuple(k): v for k, v in _leaves(recipe, prefix) if k != ["train", "max_steps"]})
    for entry in data.get("defaults", []):
        if not isinstance(entry, str):
            continue
        sibling = CONF_DIR / f"{entry[1:]}.yaml" if entry.startswith("/") else path.parent / f"{entry}.yaml"
        if sibling.is_file():
            parents.update({tuple(k): v for k, v in _leaves(yaml.safe_load(sibling.read_text()), prefix)})
    repeated = []
    for keys, value in _leaves(data, prefix):
        if tuple(keys) in parents:
            if value == parents[tuple(keys)]:
                repeated.append(".".join(keys))
            continue
        if keys[:1] == ["method"]:  # an experiment's method keys: against that method's dataclass
            method = _method_of(data, path)
            node, keys = METHODS[method].config, keys[1:]
        else:
            node = root
        try:
            default = _default(node, keys)
        except KeyError:
            continue  # interpolations into other groups, or keys of a group the file overrides
        if isinstance(default, tuple):
            default = list(default)
        if value == default or (hasattr(default, "value") and value == default.value):
            repeated.append(".".join(keys))
    assert not repeated, f"{path.relative_to(CONF_DIR)} repeats dataclass defaults: {repeated}"


def _entry_recipe() -> str:
    """The recipe conf/config.yaml composes when the command line names none."""
    entries = yaml.safe_load((CONF_DIR / "config.yaml").read_text())["defaults"]
    return next(e["recipe"] for e in entries if isinstance(e, dict) and "recipe" in e)


def _method_of(data: dict, path: Path) -> str:
    for entry in data.get("defaults", []):
        if isinstance(entry, dict):
            for k, v in entry.items():
                if k.strip() == "override /method":
                    return v
    return path.stem

"""Config composition for the commands that do not own a Hydra run (prepare, tests, tools)."""

from __future__ import annotations

import sys
import re
from pathlib import Path
from typing import NoReturn

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bljust.config import ConfigError, register_configs, validate
from bljust.errors import UserError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def compose_config(overrides: list[str]) -> DictConfig:
    """The same config `python -m bljust.train` would see, without starting a Hydra run."""
    register_configs()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(describe_config_error(err)) from None
    validate(cfg)
    return cfg


_BAD_CHOICE = re.compile(r"Invalid value '(.*?)', expected one of \[(.*?)\]")


def describe_config_error(err: BaseException) -> str:
    """One line: a bad choice as `key='value': expected one of a, b` (Hydra wraps OmegaConf's
    message, which names the key only on later lines), else the error's first line."""
    cause: BaseException | None = err
    while cause is not None:
        bad = _BAD_CHOICE.search(str(cause))
        key = getattr(cause, "full_key", None)
        if bad and key:
            return f"{key}={bad.group(1)!r}: expected one of {bad.group(2)}"
        cause = cause.__cause__
    return first_line(err)


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def parse_kv(argv: list[str], allowed: set[str]) -> tuple[dict[str, str], list[str]]:
    """`key=value` arguments for the small commands; anything else is returned as positional."""
    kv, rest = {}, []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in allowed:
            kv[key] = value
        elif sep and not Path(arg).exists():
            raise UserError(f"unknown argument {key!r}: expected one of {sorted(allowed)}")
        else:
            rest.append(arg)
    return kv, rest


def wants_help(argv: list[str]) -> bool:
    return any(arg in ("-h", "--help") for arg in argv)


def print_help(doc: str, keys: dict[str, str]) -> None:
    """A small command's --help: its module docstring, then one line per key."""
    width = max(map(len, keys), default=0)
    print(doc.strip() + "\n\nkeys:")
    for key, text in keys.items():
        print(f"  {key.ljust(width)}  {text}")


def parse_command(argv: list[str], doc: str, keys: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """parse_kv for a command with --help: prints the usage and its keys and exits 0 when asked."""
    if wants_help(argv):
        print_help(doc, keys)
        sys.exit(0)
    return parse_kv(argv, set(keys))


def fail(err: BaseException) -> NoReturn:
    """Print one line to stderr and exit 1: users get the reason, not a traceback."""
    print(f"error: {first_line(err)}", file=sys.stderr)
    sys.exit(1)


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)))

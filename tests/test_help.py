"""`--help` on every command: exit 0, the usage line and the keys, nothing on stderr."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import run_cli

# command -> strings its help must show: the usage and its keys
COMMANDS = {
    "bljust.train": ["Configuration groups", "method:", "recipe:", "optim:"],
    "bljust.prepare": ["python -m bljust.prepare recipe=demo", "recipe:", "features:", "low_rate: upsample",
                       "tokenizer:"],
    "bljust.evaluate": ["python -m bljust.evaluate ckpt=", "keys:", "ckpt", "split", "data", "out", "decode",
                        "beam_size", "lm_weight", "word_score", "lexicon", "tune_on"],
    "bljust.transcribe": ["python -m bljust.transcribe ckpt=PATH", "keys:", "ckpt", "device", "decode", "lm"],
    "bljust.build_lm": ["python -m bljust.build_lm text=", "keys:", "text", "out", "order", "exclude", "smoothing"],
    "bljust.export": ["python -m bljust.export ckpt=", "keys:", "ckpt", "out", "opset"],
    "bljust.demo": ["usage:", "--experiment", "--seeds", "--methods"],
    "bljust.protocol": ["usage:", "--group", "--phase", "--jobs", "--methods", "--seeds", "--lm", "--dry-run"],
}


def help_text(monkeypatch, command: str, flag: str = "--help") -> str:
    code, out, err = run_cli(monkeypatch, command, flag)
    assert code == 0 and err == "", err
    return out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_exits_0_with_usage_and_keys(command, monkeypatch):
    out = help_text(monkeypatch, command) if command != "bljust.train" else train_help()
    for text in COMMANDS[command]:
        assert text in out, f"{command} --help: {text!r} missing from its help"


def train_help() -> str:
    """bljust.train's help from a real process: Hydra's entry point, and the start-up imports
    (torch, lhotse, the methods) printing nothing on stderr."""
    r = subprocess.run([sys.executable, "-m", "bljust.train", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return r.stdout


def test_short_flag_and_help_among_other_arguments(monkeypatch):
    assert help_text(monkeypatch, "bljust.evaluate", "-h") == help_text(monkeypatch, "bljust.evaluate")
    code, out, _ = run_cli(monkeypatch, "bljust.transcribe", "ckpt=nope.pt", "--help")
    assert code == 0 and "keys:" in out  # help wins over the missing checkpoint

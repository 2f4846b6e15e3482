"""`--help` on every command: exit 0, the usage line and the keys, nothing on stderr."""

from __future__ import annotations

import subprocess
import sys

import pytest

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


def help_text(command: str, flag: str = "--help") -> str:
    r = subprocess.run([sys.executable, "-m", command, flag], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "error" not in r.stderr.lower() and "Traceback" not in r.stderr
    return r.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_exits_0_with_usage_and_keys(command):
    out = help_text(command)
    for text in COMMANDS[command]:
        assert text in out, f"{command} --help: {text!r} missing from its help"


def test_short_flag_and_help_among_other_arguments():
    assert help_text("bljust.evaluate", "-h") == help_text("bljust.evaluate")
    r = subprocess.run([sys.executable, "-m", "bljust.transcribe", "ckpt=nope.pt", "--help"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "keys:" in r.stdout  # help wins over the missing checkpoint

"""The installed torch/torchaudio pair is the locked one, and its compiled extension loads.

torchaudio's extension links against one torch build only: a torchaudio patch release next to an
older torch fails at import with an undefined symbol. These tests fail the moment the installed
pair, pyproject's pins and requirements.lock stop agreeing, instead of nine test files failing at
collection with a linker message.
"""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def pins(text: str) -> dict[str, str]:
    """`name==version` pins of a requirements or pyproject text (markers and comments ignored)."""
    return {m.group(1).lower(): m.group(2) for m in re.finditer(r'^\s*"?([A-Za-z0-9_.-]+)==([^\s";,]+)', text, re.M)}


def base(v: str) -> str:
    """2.11.0+cu130 -> 2.11.0: the local build tag names the CUDA flavour, not the release."""
    return v.split("+")[0]


def test_torch_and_torchaudio_are_the_locked_pair():
    lock = pins((REPO / "requirements.lock").read_text())
    assert base(torch.__version__) == lock["torch"], f"torch {torch.__version__} installed, {lock['torch']} locked"
    assert base(version("torchaudio")) == lock["torchaudio"], (
        f"torchaudio {version('torchaudio')} installed, {lock['torchaudio']} locked")


def test_pyproject_pins_the_same_pair_exactly():
    lock, project = pins((REPO / "requirements.lock").read_text()), pins((REPO / "pyproject.toml").read_text())
    for name in ("torch", "torchaudio"):
        assert project.get(name) == lock[name], f"pyproject pins {name}=={project.get(name)}, the lock {lock[name]}"


def test_torchaudio_extension_loads_against_this_torch():
    from torchaudio._extension import _IS_TORCHAUDIO_EXT_AVAILABLE

    assert _IS_TORCHAUDIO_EXT_AVAILABLE
    # A compiled op runs and gets a hand-checked answer: frames that clearly say 1, blank, 2 align
    # to exactly that path, each frame scoring log 0.8.
    import torchaudio.functional as AF

    probs = torch.tensor([[[0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8]]])
    path, scores = AF.forced_align(probs.log(), torch.tensor([[1, 2]], dtype=torch.int32), blank=0)
    assert path.tolist() == [[1, 0, 2]]
    assert torch.allclose(scores, torch.full((1, 3), 0.8).log())


def test_torchaudio_is_imported_in_one_module_only():
    """So that leaving torchaudio (frozen upstream) is a one-file change. This file checks the
    installation itself and is the one exception."""
    users = sorted(str(p.relative_to(REPO)) for d in ("bljust", "tools", "tests") for p in (REPO / d).rglob("*.py")
                   if re.search(r"^\s*(import|from)\s+torchaudio", p.read_text(), re.M) and p != Path(__file__))
    assert users == ["bljust/data/features.py"], users

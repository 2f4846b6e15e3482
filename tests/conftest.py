"""Shared fixtures: one small real demo corpus (espeak-ng speech) and config composition."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from bljust.cli import compose_config

# Minutes per split: enough real speech for the loss to fall within a few dozen steps.
SMALL = {"train_minutes": 4, "unlabelled_minutes": 2, "dev_minutes": 0.5, "test_minutes": 0.5}


def pytest_collection_modifyitems(items):
    """An end-to-end test trains, so `make test-fast` (-m "not train") leaves it out too. Tests
    marked `cuda` skip where no GPU is (`make gpu-check` runs them where one is)."""
    no_gpu = pytest.mark.skip(reason="needs a CUDA GPU (make gpu-check)")
    for item in items:
        if item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.train)
        if item.get_closest_marker("cuda") and not torch.cuda.is_available():
            item.add_marker(no_gpu)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """Root under which the small demo corpus and its prepared files live (built once a session)."""
    root = tmp_path_factory.mktemp("demo")
    cfg = compose(root, [])
    from bljust.prepare import prepare

    prepare(cfg, verbose=False)
    return root


def small_overrides(root: Path) -> list[str]:
    """Overrides that point a run at the small corpus under `root`, quiet and W&B-free."""
    sizes = [f"recipe.demo.{k}={v}" for k, v in SMALL.items()]
    return [*sizes, f"recipe.corpus_dir={root}/corpus", f"recipe.data_dir={root}/prepared",
            "logging.wandb=disabled", "train.progress=false", "train.num_workers=0",
            "train.max_duration=40", "optim.warmup_steps=5", f"run_dir={root}/runs/default"]


def train_cmd(root: Path, run: Path, steps: int, *overrides: str) -> list[str]:
    """`python -m bljust.train` on the small corpus, as a real process: a record every step, a
    checkpoint every 3, no dev evaluation before the end."""
    return [sys.executable, "-m", "bljust.train", *small_overrides(root), f"train.max_steps={steps}",
            "train.log_every=1", "train.ckpt_every=3", "train.eval_every=1000", f"run_dir={run}", *overrides]


def compose(root: Path, overrides: list[str]):
    """The train config pointed at the small corpus under `root`, quiet and W&B-free."""
    return compose_config(small_overrides(root) + list(overrides))


@pytest.fixture
def small_cfg(demo_root):
    """A factory: small_cfg(overrides) -> composed config on the prepared small corpus."""
    return lambda overrides=(): compose(demo_root, list(overrides))


@pytest.fixture(scope="session")
def small_checkpoint(demo_root, tmp_path_factory) -> Path:
    """A real checkpoint of a seeded tiny model (two training steps) with a seeded random CTC head
    of large weights: its outputs are varied, each frame with a clear winner, instead of the
    all-blank start. For tests that compare decoders or runtimes on the same logits, not accuracy."""
    from bljust.tracking.checkpoint import load_checkpoint, save_atomic
    from bljust.train import Trainer

    run = tmp_path_factory.mktemp("small_ckpt")
    cfg = compose(demo_root, ["train.max_steps=2", "monitor.enabled=false", f"run_dir={run}"])
    Trainer(cfg, run).run()
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    weight = ckpt["model"]["ctc_head.weight"]
    ckpt["model"]["ctc_head.weight"] = torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)) * 0.5
    ckpt["model"]["ctc_head.bias"] = torch.zeros_like(ckpt["model"]["ctc_head.bias"])
    save_atomic(ckpt, run / "sharp.pt")
    return run / "sharp.pt"

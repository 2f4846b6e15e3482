"""Shared fixtures: one small real demo corpus (espeak-ng speech), a miniature LibriSpeech tree
built from it, and config composition."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bljust.cli import compose_config

# Minutes per split: enough real speech for the loss to fall within a few dozen steps.
SMALL = {"train_minutes": 4, "unlabelled_minutes": 2, "dev_minutes": 0.5, "test_minutes": 0.5}


def pytest_collection_modifyitems(items):
    """An end-to-end test trains, and so does a test using small_checkpoint, so `make test-fast`
    (-m "not train") leaves them out too. Tests
    marked `cuda` skip where no GPU is (`make gpu-check` runs them where one is)."""
    no_gpu = pytest.mark.skip(reason="needs a CUDA GPU (make gpu-check)")
    for item in items:
        # small_checkpoint trains two steps to make its checkpoint
        if item.get_closest_marker("e2e") or "small_checkpoint" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.train)
        if item.get_closest_marker("cuda") and not torch.cuda.is_available():
            item.add_marker(no_gpu)


def starts_training(cmd) -> bool:
    """Whether a command line trains: bljust.train with steps to take, a protocol or demo that is
    not a dry run, the fault-injection tool or a DDP worker."""
    parts = [str(p) for p in (cmd if isinstance(cmd, (list, tuple)) else [cmd])]
    if "--help" in parts or "-h" in parts:
        return False
    if any(p.endswith(("fault_inject.py", "ddp_worker.py")) for p in parts):
        return True
    if "bljust.train" in parts:
        return any(p.startswith("train.max_steps=") and p.split("=", 1)[1] not in ("0", "") for p in parts)
    return any(p in ("bljust.protocol", "bljust.demo") for p in parts) and "--dry-run" not in parts


@pytest.fixture(autouse=True)
def _no_training_unless_marked(request, monkeypatch):
    """Under -m "not train" (make test-fast) a test that trains fails, naming itself, instead of
    quietly making the fast suite slow: Trainer.run and any training command it starts are refused."""
    if "not train" not in (request.config.option.markexpr or ""):
        return
    from bljust.train import Trainer

    def refuse(*args, **kwargs):
        pytest.fail(f"{request.node.nodeid} trains but is not marked train (mark it, or make it not train)")

    def guard(real):
        def wrapped(cmd, *args, **kwargs):
            if starts_training(cmd):
                refuse()
            return real(cmd, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(Trainer, "run", refuse)
    monkeypatch.setattr(subprocess, "run", guard(subprocess.run))
    monkeypatch.setattr(subprocess, "Popen", guard(subprocess.Popen))


def run_cli(monkeypatch, module: str, *args: str) -> tuple[int, str, str]:
    """`python -m module args` run inside this process: (exit code, stdout, stderr), with each
    warning the call raises written to stderr as the interpreter would print it. What this saves is
    a new interpreter's start-up (3-4 s, most of it importing torch); test_help and test_config
    still start bljust.train as a real process, so that path stays tested."""
    import contextlib
    import importlib
    import io
    import warnings

    mod = importlib.import_module(module)
    if not hasattr(mod, "main"):  # a package run with -m: its __main__ (bljust.protocol)
        mod = importlib.import_module(f"{module}.__main__")
    monkeypatch.setattr(sys, "argv", [mod.__file__, *args])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings(record=True) as caught:
        try:
            code = mod.main(list(args)) or 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            if isinstance(done.code, str):
                print(done.code, file=sys.stderr)
    text = err.getvalue() + "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
                                    for w in caught)
    return code, out.getvalue(), text


# Under pytest-xdist (`-n 2`, as the Makefile runs the suite) each worker has one of the two
# cores: one intra-op thread, and the same for the training processes the tests start.
THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
if THREADS == 1:
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(THREADS)


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


def train_cmd(root: Path, run: Path, steps: int, *overrides: str, ckpt_every: int = 3,
              max_duration: int = 40) -> list[str]:
    """`python -m bljust.train` on the small corpus, as a real process: a record every step, a
    checkpoint every `ckpt_every`, no dev evaluation before the end."""
    base = [o for o in small_overrides(root) if not o.startswith("train.max_duration=")]
    return [sys.executable, "-m", "bljust.train", *base, f"train.max_duration={max_duration}",
            f"train.max_steps={steps}", "train.log_every=1", f"train.ckpt_every={ckpt_every}",
            "train.eval_every=1000", f"run_dir={run}", *overrides]


def compose(root: Path, overrides: list[str]):
    """The train config pointed at the small corpus under `root`, quiet and W&B-free."""
    return compose_config(small_overrides(root) + list(overrides))


@pytest.fixture
def small_cfg(demo_root):
    """A factory: small_cfg(overrides) -> composed config on the prepared small corpus."""
    return lambda overrides=(): compose(demo_root, list(overrides))


# --- a miniature LibriSpeech + librispeech_finetuning tree of real demo FLAC -----------------
FINETUNING_10H = [f"1h/{fold}/{kind}" for fold in range(6) for kind in ("clean", "other")] + ["9h/clean", "9h/other"]
LIBRISPEECH = ["train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other", "test-clean",
               "test-other"]
DEMO_SOURCE = {"1h": "train", "9h": "train", "train": "unlabelled", "dev": "dev", "test": "test"}


def _write_chapter(folder: Path, spk: int, chap: int, utts: list[tuple[Path, str]]) -> list[str]:
    d = folder / str(spk) / str(chap)
    d.mkdir(parents=True)
    ids = [f"{spk}-{chap}-{i:04d}" for i in range(len(utts))]
    for utt_id, (flac, _) in zip(ids, utts):
        shutil.copy(flac, d / f"{utt_id}.flac")
    (d / f"{spk}-{chap}.trans.txt").write_text("".join(f"{u} {t}\n" for u, (_, t) in zip(ids, utts)))
    return ids


@pytest.fixture(scope="session")
def mini_libri(tmp_path_factory, demo_root) -> tuple[Path, dict[str, list[str]]]:
    """A miniature LibriSpeech + librispeech_finetuning tree; returns (root, folder -> utterance ids).

    The tree has the real layout and names: LibriSpeech/<split>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac
    + <spk>-<chapter>.trans.txt, and librispeech_finetuning/1h/{0..5}/{clean,other} and
    9h/{clean,other} in the same per-chapter layout. Tests that damage it work on a copy.
    """
    from bljust.data.manifests import cut_text, scan_librispeech

    root = tmp_path_factory.mktemp("libri")
    pools = {split: iter([(Path(c.recording.sources[0].source), cut_text(c))
                          for c in scan_librispeech(demo_root / "corpus" / split, labelled=True)])
             for split in set(DEMO_SOURCE.values())}
    expected, spk = {}, 100
    for folder in FINETUNING_10H:
        n = 2 if folder.startswith("9h") else 1
        pool = pools[DEMO_SOURCE[folder.split("/")[0]]]
        spk += 1
        expected[folder] = _write_chapter(root / "librispeech_finetuning" / folder, spk, spk * 10,
                                          [next(pool) for _ in range(n)])
    for folder in LIBRISPEECH:
        pool = pools[DEMO_SOURCE[folder.split("-")[0]]]
        spk += 1
        expected[folder] = _write_chapter(root / "LibriSpeech" / folder, spk, spk * 10, [next(pool) for _ in range(2)])
    return root, expected


def libri_overrides(root: Path, recipe: str = "librispeech_10h") -> list[str]:
    labelled_dir = [] if recipe == "librispeech_100h" else [f"recipe.labelled_dir={root}/librispeech_finetuning"]
    return [f"recipe={recipe}", "model=tiny", f"recipe.corpus_dir={root}/LibriSpeech", *labelled_dir,
            f"recipe.data_dir={root}/prepared_{recipe}", "train.max_duration=40", "train.num_workers=0",
            "optim.warmup_steps=2", "train.log_every=1"]


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

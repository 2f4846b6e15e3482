"""Configuration: every recipe x method composes and trains two steps; bad keys fail clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bljust.cli import CONF_DIR, compose_config
from bljust.config import ConfigError, sweep_label

RECIPES = sorted(p.stem for p in (CONF_DIR / "recipe").glob("*.yaml"))
METHODS = sorted(p.stem for p in (CONF_DIR / "method").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


def test_unknown_key_names_the_key():
    with pytest.raises(ConfigError, match="train.nonexistent"):
        compose_config(["train.nonexistent=1"])
    with pytest.raises(ConfigError, match="max_stepz"):
        compose_config(["train.max_stepz=3"])


def test_impossible_values_fail_at_start_up():
    with pytest.raises(ConfigError, match="train.max_steps must be > 0"):
        compose_config(["train.max_steps=-5"])
    with pytest.raises(ConfigError, match="train.max_steps"):
        compose_config(["train.max_steps=lots"])


def test_cli_unknown_key_exits_nonzero_naming_it():
    r = subprocess.run([sys.executable, "-m", "bljust.train", "train.nonexistent=1", "logging.wandb=disabled"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "train.nonexistent" in r.stderr.splitlines()[0] and "Traceback" not in r.stderr


def test_seed_shorthand_and_readable_multirun_folders():
    cfg = compose_config(["seed=3"])
    assert cfg.train.seed == 3 and cfg.run_name == "seed3"
    assert compose_config(["train.seed=4"]).train.seed == 4
    # multirun job folder: method plus the overrides that set the job apart, paths left out
    assert sweep_label("bljust", "method.gamma_max=2,recipe.corpus_dir=/data/x,train.max_steps=50") == \
        "bljust,gamma_max=2,train.max_steps=50"
    assert sweep_label("supervised", "") == "supervised"
    long = ",".join(f"train.key{i}={i}" for i in range(40))
    assert len(sweep_label("just", long)) <= 120 and sweep_label("just", long) != sweep_label("just", long + ",x=1")


@pytest.mark.parametrize("model", MODELS)
def test_every_model_config_composes(model):
    cfg = compose_config([f"model={model}"])
    assert cfg.model.name == model and cfg.model.d_model % cfg.model.num_heads == 0


# Keys a method needs to fit in two steps (e.g. ptft: one pre-training and one fine-tuning step).
TWO_STEP_KEYS = {"ptft": ["method.pretrain_steps=1", "train.max_steps=1"],
                 "bljust": ["method.explore=1", "method.joint_steps_per_epoch=1", "train.max_steps=1"],
                 "pseudo_label": ["method.start_step=1", "method.sup_updates=0", "method.cache_size=1"]}


@pytest.mark.train
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("recipe", [r for r in RECIPES if r == "demo"])
def test_every_recipe_and_method_runs_two_steps(small_cfg, tmp_path, recipe, method):
    from bljust.train import Trainer

    cfg = small_cfg([f"method={method}", "train.max_steps=2", "train.eval_every=2", "eval.max_dev_utts=4",
                     f"run_dir={tmp_path}", *TWO_STEP_KEYS.get(method, [])])
    table = Trainer(cfg, Path(cfg.run_dir)).run()
    assert table["step"] == 2 and {"dev", "test"} <= set(table)
    assert (tmp_path / "checkpoints" / "last.pt").is_file() and (tmp_path / "metrics.jsonl").is_file()


def test_demo_bljust_sweep_config_composes():
    root = CONF_DIR.parent
    r = subprocess.run([sys.executable, "-m", "bljust.train", "--config-dir", str(root / "recipes/demo"),
                        "+sweep=bljust", "--cfg", "hydra"], capture_output=True, text=True, timeout=120, cwd=root)
    assert r.returncode == 0, r.stderr
    assert "seed: 0,1" in r.stdout
    job = subprocess.run([sys.executable, "-m", "bljust.train", "--config-dir", str(root / "recipes/demo"),
                          "+sweep=bljust", "seed=0", "--cfg", "job", "--resolve"], capture_output=True, text=True, timeout=120,
                         cwd=root)
    cfg = yaml.safe_load(job.stdout)
    # it reproduces the table's run: the same training-relevant settings as the run that was scored
    ran = yaml.safe_load((root / "tests/data/bljust_sweep_run_k.yaml").read_text())
    cfg["optim"].pop("fused")  # added after that run; its default (auto) is the unfused AdamW it used on the CPU
    for key in ("method", "model", "objective", "optim", "features", "tokenizer"):
        assert cfg[key] == ran[key], key
    for key in ("seed", "max_steps", "max_duration", "num_buckets", "log_every", "eval_every"):
        assert cfg["train"][key] == ran["train"][key], key
    assert cfg["monitor"]["every_steps"] == ran["monitor"]["every_steps"]

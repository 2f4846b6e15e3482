"""Configuration: every recipe x method composes and trains two steps; bad keys fail clearly."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import libri_overrides

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
                 "bljust": ["method.explore=1", "method.explore_unit=steps", "method.joint_steps_per_epoch=1",
                            "method.finetune=0", "train.max_steps=1"],
                 "pseudo_label": ["method.start_step=1", "method.sup_updates=0", "method.cache_size=1"]}


@pytest.fixture(scope="module")
def company_folder(demo_root, tmp_path_factory) -> Path:
    """recipe=custom data: a labelled CSV and a dev CSV with audio beside them, and a plain folder of
    untranscribed audio (demo unlabelled speech the tables do not hold)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    from export_table import export_table

    root = tmp_path_factory.mktemp("company")
    export_table(demo_root / "corpus" / "unlabelled", root / "train.csv", minutes=0.4, copy_audio=True)
    export_table(demo_root / "corpus" / "unlabelled", root / "dev.csv", minutes=0.2, skip_minutes=0.4, copy_audio=True)
    (root / "untranscribed").mkdir()
    in_tables = {p.name for p in (root / "audio").iterdir()}
    for flac in sorted((demo_root / "corpus" / "unlabelled").rglob("*.flac")):
        if flac.name not in in_tables:
            shutil.copy(flac, root / "untranscribed" / flac.name)
    return root


ADAPT_SMALL = ["recipe.target.train_minutes=1", "recipe.target.subsets_minutes=[1]", "recipe.target.labelled_minutes=1",
               "recipe.target.unlabelled_minutes=0.5", "recipe.target.dev_minutes=0.3",
               "recipe.target.test_minutes=0.3", "recipe.target.noise_minutes=0.25"]


@pytest.fixture(scope="session")
def adapt_small(tmp_path_factory) -> Path:
    if shutil.which("flite") is None:
        pytest.skip("flite and wordnet-base are installed by make setup")
    return tmp_path_factory.mktemp("adapt")


def recipe_overrides(recipe: str, request) -> list[str]:
    """Overrides that point `recipe` at small real data: the demo corpus, the miniature LibriSpeech
    tree (conftest.mini_libri, tiny model) or a company folder of CSV tables (recipe=custom)."""
    if recipe == "demo":
        return []
    if recipe.startswith("librispeech"):
        return libri_overrides(request.getfixturevalue("mini_libri")[0], recipe)
    if recipe == "adapt":  # the telephone target corpus, tiny, built once a session
        root = request.getfixturevalue("adapt_small")
        return ["recipe=adapt", *ADAPT_SMALL, f"recipe.corpus_dir={root}/corpus", f"recipe.data_dir={root}/prepared"]
    assert recipe == "custom", f"no small data for recipe {recipe}: add it here"
    root = request.getfixturevalue("company_folder")
    return ["recipe=custom", f"recipe.corpus_dir={root}", "recipe.labelled=[train.csv]", "recipe.dev=[dev.csv]",
            "recipe.unlabelled=[untranscribed]", f"recipe.data_dir={root}/prepared"]


@pytest.mark.train
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_and_method_runs_two_steps(small_cfg, tmp_path, recipe, method, request):
    from bljust.train import Trainer

    cfg = small_cfg([*recipe_overrides(recipe, request), f"method={method}", "train.max_steps=2", "train.eval_every=2",
                     "eval.max_dev_utts=4", f"run_dir={tmp_path}",
                     *TWO_STEP_KEYS.get(method, [])])
    assert cfg.recipe.name == recipe and cfg.method.name == method and cfg.model.name == "tiny"
    table = Trainer(cfg, Path(cfg.run_dir)).run()
    splits = {Path(entry).name.split(".")[0] for entry in [*cfg.recipe.dev, *cfg.recipe.test]}
    assert table["step"] == 2 and splits <= set(table) and splits
    if recipe == "demo":
        assert {"dev", "test"} <= set(table)
    assert all(table[s]["utterances"] > 0 for s in splits)
    assert (tmp_path / "checkpoints" / "last.pt").is_file() and (tmp_path / "metrics.jsonl").is_file()


EXPERIMENTS = sorted(str(p.relative_to(CONF_DIR / "experiment").with_suffix(""))
                     for p in (CONF_DIR / "experiment").rglob("*.yaml") if p.stem != "common")


# experiment files named for a row of their own rather than for their method
VARIANTS = {"adapt/none": "supervised", "adapt/source": "supervised", "adapt/supervised_aug": "supervised"}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_file_composes_with_its_method(experiment):
    group, method = experiment.split("/")[0], experiment.split("/")[-1]
    recipe = ["recipe=librispeech_10h"] if group.startswith("librispeech") else []
    source = ["init_from=source.pt"] if experiment == "adapt/none" else []  # max_steps=0 scores a given model
    cfg = compose_config([*recipe, f"+experiment={experiment}", *source])
    assert cfg.method.name == VARIANTS.get(experiment, method)


@pytest.mark.train  # two steps of a real run
def test_a_new_method_is_one_module_and_one_yaml(tmp_path):
    """Copy just.py to toy.py and just.yaml to toy.yaml, rename, and `method=toy` trains: nothing
    else in the package names the methods."""
    import re
    import shutil

    root = CONF_DIR.parent
    shutil.copytree(root / "bljust", tmp_path / "bljust", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "conf", tmp_path / "conf")
    renames = [("JustConfig", "ToyConfig"), ("Just", "Toy"), ('"just"', '"toy"'), ("just_schema", "toy_schema")]
    for src, dst in [("bljust/methods/just.py", "bljust/methods/toy.py"), ("conf/method/just.yaml", "conf/method/toy.yaml")]:
        text = (root / src).read_text()
        for a, b in renames:
            text = re.sub(rf"\b{re.escape(a)}\b" if a[0].isalpha() else re.escape(a), b, text)
        (tmp_path / dst).write_text(text)
    corpus = tmp_path / "corpus"
    r = subprocess.run([sys.executable, "-m", "bljust.train", "method=toy", "recipe.demo.train_minutes=1",
                        "recipe.demo.unlabelled_minutes=1", "recipe.demo.dev_minutes=0.3", "recipe.demo.test_minutes=0.3",
                        f"recipe.corpus_dir={corpus}", f"recipe.data_dir={tmp_path / 'prepared'}", "train.max_steps=2",
                        "train.eval_every=2", "eval.max_dev_utts=2", "train.max_duration=20", "train.num_workers=0",
                        "monitor.enabled=false", "logging.wandb=disabled", "train.progress=false",
                        "objective.bestrq.codebook_size=64", f"run_dir={tmp_path / 'run'}"],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path,
                       env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "method toy" in r.stdout
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["method"] == {"name": "toy", "alpha": 0.5}
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()

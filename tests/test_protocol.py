"""python -m bljust.protocol: equal trial counts enforced, the commands it runs, choices made on dev
only and frozen, bench trials that keep each method's compute, and the whole protocol end to end
on the smoke experiments (real runs, real processes)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bljust.cli import CONF_DIR
from bljust.protocol.__main__ import main
from bljust.protocol.choices import freeze_choices
from bljust.protocol.trials import load_trials
from bljust.tracking.metrics import read_metrics
from tests.conftest import small_overrides
from tests.test_demo_command import _c

SMOKE = CONF_DIR / "protocol" / "smoke.yaml"


def _trial_file(tmp_path: Path, trials: dict) -> Path:
    path = tmp_path / "trials.yaml"
    path.write_text(yaml.safe_dump({"trials": trials}, sort_keys=False))
    return path


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_unequal_trial_counts_are_refused_in_one_line(tmp_path, capsys):
    path = _trial_file(tmp_path, {"supervised": [["optim.lr=1e-3"], ["optim.lr=3e-3"]], "just": [["method.alpha=0.3"]]})
    err = _error(capsys, ["--group", "smoke", "--trials", str(path), "--root", str(tmp_path / "r"), "--dry-run"])
    assert f"{path}: methods have unequal trial counts (supervised 2, just 1)" in err
    assert not (tmp_path / "r").exists()


def test_lm_weights_are_tuned_on_the_dev_split_matching_each_test_split():
    from bljust.protocol.__main__ import tuning_split

    librispeech = ["dev-clean", "dev-other"]
    assert [tuning_split(t, librispeech) for t in ("test-clean", "test-other")] == librispeech
    assert tuning_split("test", ["dev"]) == "dev"
    assert tuning_split("acme_eval", ["acme_dev", "dev2"]) == "acme_dev"  # no twin: the first dev split


def test_a_missing_lm_is_refused_in_one_line_before_anything_runs(tmp_path, capsys):
    err = _error(capsys, ["--group", "smoke", "--root", str(tmp_path / "r"), "--lm", str(tmp_path / "no.arpa")])
    assert err == f"error: --lm {tmp_path / 'no.arpa'}: file not found\n"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("trial, expected", [
    (["train.seed=3"], "trials.just[1]: train.seed is set by the protocol itself"),
    (["eval.score_test=true"], "trials.just[1]: eval.score_test is set by the protocol itself"),
    (["method.alpha"], "trials.just[1]: 'method.alpha' is not a key=value override"),
    (["method.no_such_key=1"], "trials.just[1]: Could not override 'method.no_such_key'"),
])
def test_a_bad_trial_is_named_in_one_line(tmp_path, capsys, trial, expected):
    path = _trial_file(tmp_path, {"just": [["method.alpha=0.3"], trial]})
    err = _error(capsys, ["--group", "smoke", "--trials", str(path), "--root", str(tmp_path / "r"), "--dry-run"])
    assert expected in err and str(path) in err


def _commands(out: str) -> list[list[str]]:
    return [shlex.split(line) for line in out.splitlines() if not line.startswith("#")]


def test_dry_run_lists_every_tune_and_seed_command_and_runs_nothing(tmp_path, capsys):
    root = tmp_path / "r"
    assert main(["--group", "smoke", "--root", str(root), "--methods", "supervised,just", "--seeds", "0,1",
                 "--dry-run", "model=tiny"]) == 0
    out = capsys.readouterr().out
    cmds = _commands(out)
    assert not root.exists()
    tune = [c for c in cmds if "eval.score_test=false" in c]
    final = [c for c in cmds if "eval.score_test=true" in c]
    assert len(tune) == 4 and len(final) == 4 and len(cmds) == 8
    assert f"# phase test: check that the 4 final runs scored test, write {root}/report.md" in out
    trials = load_trials(SMOKE, "smoke").trials
    for method in ("supervised", "just"):
        for k, trial in enumerate(trials[method]):
            expected = [sys.executable, "-m", "bljust.train", f"+experiment=smoke/{method}", "model=tiny", *trial,
                        "train.seed=0", "eval.score_test=false", f"run_dir={root}/tune/{method}/t{k}"]
            assert expected in tune
        for seed in (0, 1):
            assert [c for c in final if c[-1] == f"run_dir={root}/final/{method}/seed{seed}"
                    and f"train.seed={seed}" in c and f"<chosen trial of tune/{method}>" in c]


def _fake_run(run: Path, dev_cer: float, test_cer: float | None = None) -> None:
    """A finished run's files as the trainer writes them: config.yaml and wer.json."""
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"eval": {"select_metric": "cer"}, "recipe": {"dev": ["dev"]},
                                                     "train": {"seed": 0}}))
    scores = {"checkpoint": "best", "step": 3, "dev": {"wer": 90.0, "cer": dev_cer, "utterances": 5}}
    if test_cer is not None:
        scores["test"] = {"wer": 90.0, "cer": test_cer, "utterances": 5}
    (run / "wer.json").write_text(json.dumps(scores))


def test_choices_are_made_on_dev_then_frozen(tmp_path, capsys):
    plan = load_trials(SMOKE, "smoke")
    root = tmp_path / "r"
    # t1 is better on dev, t0 would be on test: the choice must be t1, the first of equal ones for just
    for k, (dev, test) in enumerate([(60.0, 10.0), (40.0, 80.0)]):
        _fake_run(root / "tune" / "supervised" / f"t{k}", dev, test)
    for k in range(2):
        _fake_run(root / "tune" / "just" / f"t{k}", 50.0)
    choices = freeze_choices(plan, root, ["supervised", "just"])
    assert (choices["supervised"]["trial"], choices["just"]["trial"]) == (1, 0)
    assert choices["supervised"]["overrides"] == plan.trials["supervised"][1]
    assert choices["supervised"]["dev"] == [60.0, 40.0] and choices["supervised"]["metric"] == "cer"
    written = (root / "choices.json").read_text()
    # new tuning results do not move a frozen choice
    (root / "tune" / "supervised" / "t0" / "wer.json").write_text(json.dumps({"dev": {"wer": 1.0, "cer": 1.0}}))
    assert freeze_choices(plan, root, ["supervised", "just"])["supervised"]["trial"] == 1
    assert "choices frozen in" in capsys.readouterr().out
    assert (root / "choices.json").read_text() == written
    # the final runs use the frozen overrides
    assert main(["--group", "smoke", "--root", str(root), "--methods", "supervised", "--phase", "seeds",
                 "--seeds", "2", "--dry-run"]) == 0
    (cmd,) = _commands(capsys.readouterr().out)
    assert cmd[4:] == [*plan.trials["supervised"][1], "train.seed=2", "eval.score_test=true",
                       f"run_dir={root}/final/supervised/seed2"]


def test_seeds_before_tuning_is_refused_in_one_line(tmp_path, capsys):
    err = _error(capsys, ["--group", "smoke", "--root", str(tmp_path), "--methods", "just", "--phase", "seeds"])
    assert f"{tmp_path}/tune/just/t0: tuning run not finished (run --phase tune first)" in err
    assert not (tmp_path / "final").exists()


@pytest.mark.parametrize("group, count", [("bench", 4), ("scarce", 2)])
def test_every_trial_of_a_group_keeps_its_methods_compute(group, count):
    plan = load_trials(CONF_DIR / "protocol" / f"{group}.yaml", group)
    assert plan.count == count and set(plan.trials) == {"supervised", "just", "ptft", "bljust", "pseudo_label"}
    assert plan.trials["bljust"][0] == []  # the authors' schedule as the experiment file scales it
    for method, trials in plan.trials.items():
        budget = _c(group, method)
        assert [_c(group, method, tuple(t)) for t in trials] == [budget] * count, method
        assert len({tuple(t) for t in trials}) == count, method


@pytest.mark.e2e
def test_protocol_end_to_end_on_the_smoke_group(demo_root, tmp_path):
    root = tmp_path / "protocol"
    extra = [o for o in small_overrides(demo_root) if not o.startswith("run_dir=")] + ["train.max_steps=2",
                                                                                      "monitor.enabled=false"]
    cmd = [sys.executable, "-m", "bljust.protocol", "--group", "smoke", "--root", str(root),
           "--methods", "supervised,just", "--seeds", "0,1", "--jobs", "2", *extra]
    start = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"protocol end to end: {time.time() - start:.1f} s")
    tune = sorted(root.glob("tune/*/t*"))
    assert len(tune) == 4
    for run in tune:
        scores = json.loads((run / "wer.json").read_text())
        assert "dev" in scores and "test" not in scores, run
        assert not (run / "hyps" / "test.txt").exists()
    choices = json.loads((root / "choices.json").read_text())["methods"]
    for method, choice in choices.items():
        dev = [json.loads((root / "tune" / method / f"t{k}" / "wer.json").read_text())["dev"]["cer"] for k in range(2)]
        assert choice["dev"] == dev and choice["trial"] == min(range(2), key=lambda k: (dev[k], k))
        for seed in (0, 1):
            run = root / "final" / method / f"seed{seed}"
            assert "test" in json.loads((run / "wer.json").read_text())
            config = yaml.safe_load((run / "config.yaml").read_text())
            assert config["train"]["seed"] == seed
            for override in choice["overrides"]:  # the chosen point is what the final run trained
                key, _, value = override.partition("=")
                assert float(_get(config, key)) == float(value), (run, override)
        # seed 0 is the chosen tuning run, scored on test from its own best-on-dev checkpoint, not retrained
        chosen, seed0 = root / "tune" / method / f"t{choice['trial']}", root / "final" / method / "seed0"
        assert (seed0 / "reused_from").read_text().strip() == str(chosen)
        assert json.loads((seed0 / "wer.json").read_text())["dev"] == json.loads((chosen / "wer.json").read_text())["dev"]
        steps = [r["step"] for r in read_metrics(seed0 / "metrics.jsonl")]
        assert steps == [r["step"] for r in read_metrics(chosen / "metrics.jsonl")], "one final record, no training"
        assert f"{seed0} starts from the chosen tuning run" in done.stdout
    report = (root / "report.md").read_text()
    assert "## Tuning (dev)" in report and "| supervised |" in report and "| just |" in report
    # the same command again: nothing retrained, the choices reused
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("finished, skipped") == 8 and "choices frozen in" in again.stdout
    assert json.loads((root / "choices.json").read_text())["methods"] == choices
    # --lm: every final run also scored with beam search + the LM, its weights chosen on its own dev
    from bljust.data.demo_corpus import DemoCorpusSpec, lm_sentences
    from bljust.decoding.lm import build_arpa

    lm = build_arpa(lm_sentences(DemoCorpusSpec())[:2000], tmp_path / "lm.arpa", order=2)
    with_lm = subprocess.run([*cmd, "--phase", "test", "--lm", str(lm)], capture_output=True, text=True, timeout=300)
    assert with_lm.returncode == 0, with_lm.stdout + with_lm.stderr
    assert with_lm.stdout.count("+lm done") == 4
    for run in root.glob("final/*/seed*"):
        scores = json.loads((run / "wer.json").read_text())
        assert {"dev", "test", "dev+lm", "test+lm"} <= set(scores), run
        assert scores["test+lm"]["tuned_on"] == "dev"
        assert (scores["test+lm"]["lm_weight"], scores["test+lm"]["word_score"]) == \
            (scores["dev+lm"]["lm_weight"], scores["dev+lm"]["word_score"])
    report = (root / "report.md").read_text()
    assert "| test+lm WER |" in report and "| just | supervised | test+lm |" in report


def _get(config: dict, key: str):
    for part in key.split("."):
        config = config[part]
    return config

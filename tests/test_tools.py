"""Every script in tools/ answers --help, and the ones no other test runs do one tiny real run on
the small demo corpus (in this process: the scripts' main() read sys.argv)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from tests.conftest import small_overrides

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def run_main(monkeypatch, name: str, *args: str):
    """The tool's main() with `args` as its command line; its return value (None or an exit code)."""
    main = importlib.import_module(f"tools.{name}").main
    monkeypatch.setattr(sys, "argv", [f"tools/{name}.py", *args])
    return main(list(args)) if main.__code__.co_argcount else main()


@pytest.mark.parametrize("name", sorted(p.stem for p in TOOLS.glob("*.py")))
def test_help(name, monkeypatch, capsys):
    with pytest.raises(SystemExit) as done:
        run_main(monkeypatch, name, "--help")
    out = capsys.readouterr().out
    assert done.value.code == 0 and out.startswith("usage:") and "--help" in out, out


def corpus(demo_root: Path) -> list[str]:
    return [o for o in small_overrides(demo_root) if not o.startswith("run_dir=")]


def test_bench_data_counts_the_manifests_cuts(demo_root, monkeypatch, capsys):
    from bljust.data.manifests import load_cuts

    run_main(monkeypatch, "bench_data", "--batches", "2", *corpus(demo_root))
    out = capsys.readouterr().out
    for name in ("labelled", "unlabelled"):
        n = len(load_cuts(demo_root / "prepared" / "manifests" / f"{name}.jsonl.gz"))
        assert f"| {name} | {n} | " in out, out
    assert [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ")][-3:] == ["0", "1", "2"]


@pytest.mark.train
def test_bench_steps_profile_step_and_bench_mfu_run_one_round(demo_root, monkeypatch, capsys, tmp_path):
    small = ["model.num_layers=1", *corpus(demo_root)]
    run_main(monkeypatch, "bench_steps", "--rounds", "1", "--warmup", "0", *small)
    assert "joint / (supervised + unsupervised) = " in capsys.readouterr().out
    run_main(monkeypatch, "profile_step", "supervised", "--steps", "1", "--warmup", "0", "--out",
             str(tmp_path / "prof.txt"), *small)
    assert "Self CPU time total" in (tmp_path / "prof.txt").read_text()
    run_main(monkeypatch, "bench_mfu", "--rounds", "1", "--warmup", "0", *small)
    assert "MFU = " in capsys.readouterr().out


def test_plot_curve_writes_a_png(tmp_path, monkeypatch):
    import json

    run = tmp_path / "run"
    run.mkdir()
    records = [{"step": s, "train_seconds": 2.0 * s, "dev_cer": 90.0 - s, "dev_wer": 100.0 - s} for s in (10, 20, 30)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    run_main(monkeypatch, "plot_curve", str(run), "--out", str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_sample_efficiency_means_the_seeds_and_matches_minutes(tmp_path, monkeypatch, capsys):
    import json

    from tools.plot_sample_efficiency import matching_minutes

    def run(root: Path, method: str, seed: int, cer: float) -> None:
        (root / "final" / method / f"seed{seed}").mkdir(parents=True)
        (root / "final" / method / f"seed{seed}" / "wer.json").write_text(json.dumps({"test": {"cer": cer, "wer": 99.0}}))

    for minutes, sup, other in ((5, [60.0], [54.0]), (20, [50.0, 52.0], [48.0, 50.0])):
        for seed, (s, o) in enumerate(zip(sup, other)):
            run(tmp_path / f"l{minutes}", "supervised", seed, s)
            run(tmp_path / f"l{minutes}", "ptft", seed, o)
        run(tmp_path / f"l{minutes}", "none", 0, 80.0)
    assert run_main(monkeypatch, "plot_sample_efficiency", f"5={tmp_path / 'l5'}", f"20={tmp_path / 'l20'}",
                    "--out", str(tmp_path / "se.png")) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "se.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| supervised | 60.0 (n=1) | 51.0 ± 1.4 (n=2) | – |" in out
    # ptft at 5 min (54.0) is what supervised reaches two thirds of the way from 60 to 51, in log-minutes
    assert "| ptft | 54.0 (n=1) | 49.0 ± 1.4 (n=2) | 5→" + f"{5 * 4 ** (2 / 3):.1f} |" in out
    assert matching_minutes({5: 60.0, 20: 51.0}, 70.0) is None  # outside the measured range


@pytest.fixture(scope="module")
def demo_lm(tmp_path_factory) -> Path:
    """A small bigram LM on the demo corpus's LM text (which holds out dev and test), as other tests build it."""
    from bljust.data.demo_corpus import DemoCorpusSpec, lm_sentences
    from bljust.decoding.lm import build_arpa

    return build_arpa(lm_sentences(DemoCorpusSpec())[:2000], tmp_path_factory.mktemp("lm") / "lm.arpa", order=2)


def test_tune_lm_picks_the_best_dev_point_and_scores_test_like_evaluate(small_checkpoint, demo_lm, tmp_path,
                                                                        monkeypatch, capsys):
    import json

    import bljust.evaluate as ev
    from bljust.decoding.options import DecodeOptions

    out = tmp_path / "tune.json"
    run_main(monkeypatch, "tune_lm", str(small_checkpoint), str(demo_lm), "--lm-weights", "0.5,3",
             "--word-scores=-10,10", "--beam-size", "10", "--out", str(out))
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    grid = [(p["lm_weight"], p["word_score"]) for p in result["grid"]]
    assert grid == [(0.5, -10.0), (0.5, 10.0), (3.0, -10.0), (3.0, 10.0)]
    # the lowest dev WER, then CER, the first on a tie
    best = min(result["grid"], key=lambda p: (p["wer"], p["cer"]))
    assert result["best"] == best
    # test, with the chosen pair, scored as bljust.evaluate scores it
    _, greedy, _ = ev.evaluate(small_checkpoint, "test", out=tmp_path / "greedy", device="cpu")
    _, beam, _ = ev.evaluate(small_checkpoint, "test", out=tmp_path / "beam", device="cpu", opts=DecodeOptions(
        "beam", beam_size=10, lm=str(demo_lm), lm_weight=best["lm_weight"], word_score=best["word_score"]))
    for name, rates in (("greedy", greedy), ("beam+lm", beam)):
        row = result["test"][name]
        assert (row["wer"], row["cer"], row["utterances"]) == (rates["wer"], rates["cer"], rates["utterances"]), name
    assert result["relative_wer_reduction"] == pytest.approx(1 - beam["wer"] / greedy["wer"])
    assert f"lm_weight={best['lm_weight']:g} word_score={best['word_score']:g} beam_size=10\n" in printed
    assert sum(line.startswith("dev lm_weight=") for line in printed.splitlines()) == 4


def test_tune_lm_without_the_prepared_split_says_so_in_one_line(small_checkpoint, demo_lm, tmp_path, monkeypatch,
                                                               capsys):
    from bljust.tracking.checkpoint import load_checkpoint, save_atomic

    ckpt = load_checkpoint(small_checkpoint)
    ckpt["config"]["recipe"]["data_dir"] = str(tmp_path / "gone")
    save_atomic(ckpt, tmp_path / "moved.pt")
    with pytest.raises(SystemExit) as done:
        run_main(monkeypatch, "tune_lm", str(tmp_path / "moved.pt"), str(demo_lm))
    assert done.value.code == 1
    err = capsys.readouterr().err
    assert err == f"error: split=dev: no prepared manifest {tmp_path / 'gone' / 'manifests' / 'eval_dev.jsonl.gz'}\n"

"""Every script in tools/ answers --help, and the ones no other test runs do one tiny real run on
the small demo corpus (in this process: the scripts' main() read sys.argv)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from tests.conftest import small_overrides
from tests.test_demo_corpus import needs_espeak

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


def manifest_count(demo_root: Path, name: str) -> int:
    from bljust.data.manifests import load_cuts

    return len(load_cuts(demo_root / "prepared" / "manifests" / f"{name}.jsonl.gz"))


def test_bench_export_onnx_gives_the_eager_transcripts(small_checkpoint, demo_root, monkeypatch, capsys):
    # batches of 10 s: several batches, so the per-batch comparison is exercised
    run_main(monkeypatch, "bench_export", str(small_checkpoint), "--split", "dev", "--rounds", "1",
             "--batch-duration", "10")
    out = capsys.readouterr().out
    n = manifest_count(demo_root, "eval_dev")
    head, table = out.splitlines()[0], out.splitlines()[-1]
    assert head.startswith(f"dev: {n}/{n} greedy transcripts equal; largest logit difference "), out
    assert float(head.rsplit(" ", 1)[1]) < 1e-3, out
    assert table.startswith(f"| 1 | {n} | "), out


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


def test_bench_methods_summarise_counts_after_the_warmup():
    from tools.bench_methods import summarise

    # steps 1..5, one second each; warm-up 0.2 * 5 = 1 step: steps 2..5 counted over 4 s
    records = [{"step": s, "train_seconds": float(s), "batch_seconds": 10.0, "data_wait_fraction": 0.5,
                "steps_per_second": 2.0, "peak_rss_mb": 100.0 + s} for s in range(1, 6)]
    records.insert(2, {"step": 2, "dev_cer": 50.0})  # an evaluation record: not a step
    assert summarise(records) == {"audio_per_s": 10.0, "steps_per_s": 1.0, "wait": 0.25, "peak_rss_mb": 105.0,
                                  "steps": 4}


@pytest.mark.train
def test_bench_methods_trains_a_few_steps_and_writes_the_table(demo_root, monkeypatch, capsys, tmp_path):
    import json

    out = tmp_path / "bench.md"
    run_main(monkeypatch, "bench_methods", "--steps", "3", "--methods", "supervised", "--out", str(out),
             "model.num_layers=1", *corpus(demo_root), "train.max_duration=20")
    printed = capsys.readouterr().out
    first, rest = printed.split("\n", 1)
    assert first.startswith("supervised: ")
    r = json.loads(first.split(": ", 1)[1])
    assert r["steps"] == 2 and r["audio_per_s"] > 0 and r["peak_rss_mb"] > 0  # steps 2 and 3, after warm-up
    assert out.read_text() == rest.rstrip("\n") + "\n"
    row = out.read_text().splitlines()[2]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "supervised" and cells[2] == "1.00"
    # the printed JSON is rounded to 3 decimals, the table to 1 and 2: compare within both roundings
    assert abs(float(cells[1]) - r["audio_per_s"]) <= 0.05 + 5e-4
    assert abs(float(cells[3]) - r["steps_per_s"]) <= 0.005 + 5e-4
    assert row.endswith(" | 2 |")


def wav2vec2_frames(samples: int) -> int:
    """Output frames of the wav2vec2 CNN (kernel, stride): (10, 5), 4 x (3, 2), 2 x (2, 2), unpadded."""
    for k, s in [(10, 5)] + [(3, 2)] * 4 + [(2, 2)] * 2:
        samples = (samples - k) // s + 1
    return samples


@pytest.mark.train
def test_bench_frontend_builds_its_batch_and_frames_from_the_labelled_manifest(demo_root, monkeypatch, capsys):
    import math

    from bljust.data.audio import read_audio
    from bljust.data.manifests import load_cuts

    run_main(monkeypatch, "bench_frontend", "--rounds", "1", "--warmup", "0", "--seconds", "3", "--threads", "1",
             "--device", "cpu", "model.num_layers=1", *corpus(demo_root))
    out = capsys.readouterr().out
    lens = []  # whole utterances from the start of the labelled manifest until 3 s
    for cut in load_cuts(demo_root / "prepared" / "manifests" / "labelled.jsonl.gz"):
        if sum(lens) >= 3 * 16000:
            break
        lens.append(len(read_audio(cut.recording.sources[0].source, 16000)))
    fbank = [1 + (n - 400) // 160 for n in lens]  # 25 ms windows, 10 ms hop
    assert f"batch {len(lens)} utterances, {sum(lens) / 16000:.1f} s audio (longest {max(lens) / 16000:.1f} s)" in out
    assert (f"encoder frames, valid (padded batch): fbank {sum(math.ceil(f / 4) for f in fbank)} "
            f"({len(lens)}x{math.ceil(max(fbank) / 4)}) at 40 ms from {sum(fbank)} fbank frames; "
            f"CNN {sum(map(wav2vec2_frames, lens))} ({len(lens)}x{wav2vec2_frames(max(lens))}) at 20 ms") in out
    assert "CNN step / (fbank + CMVN + fbank step) = " in out


@needs_espeak
def test_make_demo_corpus_writes_what_it_reports_and_then_reuses_it(tmp_path, monkeypatch, capsys):
    import json

    import soundfile as sf

    out = tmp_path / "corpus"
    args = ["--out", str(out), "--seed", "3", "--train-minutes", "0.2", "--unlabelled-minutes", "0.1",
            "--dev-minutes", "0.1", "--test-minutes", "0.1", "--workers", "1"]
    assert run_main(monkeypatch, "make_demo_corpus", *args) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "corpus.json").read_text())
    assert summary["spec"]["seed"] == 3 and summary["spec"]["train_minutes"] == 0.2
    for split, minutes in (("train", 0.2), ("unlabelled", 0.1), ("dev", 0.1), ("test", 0.1)):
        info = summary["splits"][split]
        flacs = sorted((out / split).rglob("*.flac"))
        lines = [line for t in (out / split).rglob("*.trans.txt") for line in t.read_text().splitlines()]
        seconds = sum(sf.info(f).duration for f in flacs)
        assert info["utterances"] == len(flacs) == len(lines) > 0, split
        assert info["speakers"] == len({f.parent.parent.name for f in flacs}), split
        assert info["hours"] == pytest.approx(seconds / 3600, abs=5e-5) and seconds >= 0.8 * minutes * 60, split
        assert (f"demo corpus: {split}: {info['utterances']} utterances, {info['speakers']} speakers, "
                f"{info['hours']:.2f} h\n") in printed
    stamp = (out / "corpus.json").stat().st_mtime_ns
    assert run_main(monkeypatch, "make_demo_corpus", *args) == 0  # the same spec: reused, not rewritten
    assert capsys.readouterr().out == f"demo corpus: {out} is already complete (use --force to regenerate)\n"
    assert (out / "corpus.json").stat().st_mtime_ns == stamp


def test_score_last_scores_dev_and_test_of_each_run(small_checkpoint, demo_root, tmp_path):
    import json
    import os
    import subprocess

    import bljust.evaluate as ev

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").symlink_to(small_checkpoint)
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(TOOLS / "score_last.sh"), str(run)], cwd=TOOLS.parent, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    scores = json.loads((run / "eval_last" / "wer.json").read_text())
    assert set(scores) == {"dev", "test"}
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    for line, split in zip(lines, ("dev", "test")):
        s = scores[split]
        assert s["utterances"] == manifest_count(demo_root, f"eval_{split}")
        assert line.startswith(f"{run} {split}: WER {s['wer']:.2f} %  CER {s['cer']:.2f} %  "), line
    _, rates, _ = ev.evaluate(small_checkpoint, "test", out=tmp_path / "direct", device="cpu")
    assert (scores["test"]["wer"], scores["test"]["cer"]) == (rates["wer"], rates["cer"])
    # a run without a final checkpoint: the evaluate error, and a failing exit status
    (tmp_path / "unfinished").mkdir()
    done = subprocess.run(["bash", str(TOOLS / "score_last.sh"), str(tmp_path / "unfinished")], cwd=TOOLS.parent,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.startswith("error: ") and "last.pt" in done.stderr, done.stderr


@pytest.mark.train
def test_bench_peer_times_ours_and_torchaudios_conformer_at_equal_size(demo_root, monkeypatch, capsys):
    """One round of the tiny model against torchaudio's Conformer on a small real batch: a row for
    each, consistent with each other; the peer matches our parameter count within 1 % (only the
    encoder differs, and torchaudio's Conformer at our config's numbers has the same weights)."""
    from bljust.cli import compose_config
    from bljust.models.asr import AsrModel, count_parameters
    from tools.bench_peer import build_peer

    run_main(monkeypatch, "bench_peer", "--models", "tiny", "--rounds", "1", "--warmup", "0",
             *corpus(demo_root), "train.max_duration=8")
    out = capsys.readouterr().out
    rows = {cells[2]: cells for line in out.splitlines() if line.startswith("| tiny |")
            for cells in [[c.strip() for c in line.split("|")]]}
    assert set(rows) == {"ours", "torchaudio"}, out
    ms = {k: float(r[4].split()[0]) for k, r in rows.items()}
    assert float(rows["ours"][8].strip("*")) == pytest.approx(ms["ours"] / ms["torchaudio"], rel=0.02), out
    gflop = {k: float(r[6]) for k, r in rows.items()}
    assert gflop["torchaudio"] == pytest.approx(gflop["ours"], rel=0.1), out  # same GEMMs, same batch
    for name in ("tiny", "small"):
        cfg = compose_config([f"model={name}"]).model
        ours = AsrModel(cfg, vocab_size=40)
        n_ours, n_peer = count_parameters(ours), count_parameters(build_peer(ours, cfg))
        assert 1 / 1.01 <= n_peer / n_ours <= 1.01, (name, n_ours, n_peer)
        if name == "tiny":
            assert float(rows["torchaudio"][3]) == pytest.approx(n_peer / 1e6, abs=0.01), out

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

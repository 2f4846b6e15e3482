"""Label-free monitors: the maths against hand-checked values and scikit-learn, the probe set's
determinism, the trainer wiring, pruning, and the early-prediction analysis."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

from bljust.monitors.clustering import (assignment_entropy, calinski_harabasz, cross_seed_ami, davies_bouldin,
                                        kmeans_labels, silhouette)
from bljust.monitors.probe import select_probe_cuts, subsample_indices
from bljust.monitors.pruning import finished_values, is_worse_than_median, value_at_fraction
from bljust.monitors.rank import numerical_rank, rankme, singular_values
from bljust.monitors.suite import measure


def with_singular_values(s: list[float], n: int = 50, d: int = 8, seed: int = 0) -> torch.Tensor:
    """An (n, d) matrix U diag(s) V^T with random orthonormal U, V: its singular values are s."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(n, d, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return u @ torch.diag(torch.tensor(s, dtype=torch.float64)) @ v.T


def test_rankme_of_known_singular_values():
    s = [4.0, 2.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    p = [x / 8.0 + 1e-7 for x in s]  # Garrido et al.: sigma / ||sigma||_1 + eps
    expected = math.exp(-sum(q * math.log(q) for q in p))
    assert rankme(singular_values(with_singular_values(s))) == pytest.approx(expected, rel=1e-6)
    # d equal singular values: effective rank d; one non-zero: effective rank 1
    assert rankme(singular_values(with_singular_values([3.0] * 8))) == pytest.approx(8.0, rel=1e-5)
    assert rankme(singular_values(with_singular_values([5.0] + [0.0] * 7))) == pytest.approx(1.0, rel=1e-4)  # eps adds ~1e-5


def test_numerical_rank_of_rank_deficient_matrix():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(40, 3, generator=g) @ torch.randn(3, 12, generator=g)  # rank 3
    sv = singular_values(a)
    assert numerical_rank(sv, 1e-6) == 3 == np.linalg.matrix_rank(a.numpy().astype(np.float64), tol=1e-6 * float(sv[0]))
    assert numerical_rank(singular_values(with_singular_values([1, 1, 1e-2, 1e-5, 0, 0, 0, 0])), 1e-3) == 3


@pytest.fixture
def toy():
    """Three Gaussian blobs in 5-D labelled into 30 clusters, one of them a singleton."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=g, dtype=torch.float64)
    x[:150] += 4.0
    x[150:250] -= 4.0
    labels = torch.randint(0, 29, (400,), generator=g)
    labels[:150] = labels[:150] % 3  # the first blob mostly in clusters 0-2
    labels[7] = 40  # a singleton (silhouette 0 by convention)
    return x, labels


def test_cluster_quality_equals_scikit_learn(toy):
    x, labels = toy
    xn, ln = x.numpy(), labels.numpy()
    assert silhouette(x, labels) == pytest.approx(silhouette_score(xn, ln), rel=1e-6)
    assert davies_bouldin(x, labels) == pytest.approx(davies_bouldin_score(xn, ln), rel=1e-6)
    assert calinski_harabasz(x, labels) == pytest.approx(calinski_harabasz_score(xn, ln), rel=1e-6)


def test_ami_and_entropy():
    a = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert cross_seed_ami(a, a) == pytest.approx(1.0)
    assert cross_seed_ami(a, (a + 1) % 4) == pytest.approx(1.0)  # the same partition, other names
    assert assignment_entropy(a, 4) == pytest.approx(math.log(4))
    assert assignment_entropy(torch.zeros(8, dtype=torch.long), 4) == 0.0


def test_measure_glue_on_separated_blobs():
    """Well-separated blobs: both k-means seeds find them (AMI 1) and the silhouette on the fixed
    subsample is scikit-learn's silhouette of those frames under the first seed's labels."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0], [-10.0, 0, 0]])
    x = (centres.repeat_interleave(100, 0) + 0.3 * torch.randn(400, 3, generator=g)).float()
    values = measure(x, num_clusters=4, kmeans_seeds=[0, 1], silhouette_frames=120, rank_rtol=1e-3, seed=3)
    assert values["ami"] == pytest.approx(1.0)
    assert values["entropy"] == pytest.approx(math.log(4), rel=1e-3)
    sub = subsample_indices(400, 120, 3)
    labels = kmeans_labels(x, 4, 0)
    assert values["silhouette"] == pytest.approx(silhouette_score(x.numpy()[sub], labels.numpy()[sub]), rel=1e-5)
    assert values["rank"] == 3 and 1.0 < values["rankme"] <= 3.0


def test_probe_subsampling_is_deterministic(demo_root):
    from bljust.data.manifests import load_cuts

    cuts = load_cuts(demo_root / "prepared" / "manifests" / "unlabelled.jsonl.gz")
    a = [c.id for c in select_probe_cuts(cuts, 0.01, seed=0)]
    shuffled = cuts.shuffle(rng=__import__("random").Random(5))
    assert [c.id for c in select_probe_cuts(shuffled, 0.01, seed=0)] == a  # manifest order does not matter
    assert [c.id for c in select_probe_cuts(cuts, 0.01, seed=1)] != a
    assert sum(c.duration for c in select_probe_cuts(cuts, 0.01, seed=0)) < 36 + max(c.duration for c in cuts)
    idx = subsample_indices(1000, 50, 7)
    assert torch.equal(idx, subsample_indices(1000, 50, 7)) and len(set(idx.tolist())) == 50
    assert torch.equal(idx, idx.sort().values) and torch.equal(subsample_indices(30, 50, 7), torch.arange(30))


def test_embed_frames_eval_mode_no_grad_and_layer():
    from bljust.config import ModelConfig
    from bljust.models.asr import AsrModel
    from bljust.monitors.embed import embed_frames
    from bljust.monitors.probe import ProbeSet

    model = AsrModel(ModelConfig(d_model=32, num_heads=2, num_layers=3, subsampling_channels=8), 10).train()
    feats = torch.randn(2, 37, 80)  # shapes only: nothing here claims the model learns
    probe = ProbeSet([(feats, torch.tensor([37, 21]))], 2, 0.58)
    last = embed_frames(model, probe, 0, torch.device("cpu"))
    assert last.shape == (10 + 6, 32) and not last.requires_grad and model.training
    assert torch.equal(last, embed_frames(model, probe, 0, torch.device("cpu")))  # no dropout while probing
    first = embed_frames(model, probe, 1, torch.device("cpu"))
    assert first.shape == last.shape and not torch.allclose(first, last)


def test_pruning_decision():
    assert is_worse_than_median(1.0, [2.0, 3.0, 4.0], higher_is_better=True, min_finished=2)
    assert not is_worse_than_median(3.0, [2.0, 3.0, 4.0], higher_is_better=True, min_finished=2)  # ties survive
    assert is_worse_than_median(5.0, [2.0, 3.0, 4.0], higher_is_better=False, min_finished=2)
    assert not is_worse_than_median(1.0, [2.0], higher_is_better=True, min_finished=2)  # too few finished
    records = [{"step": 10, "m": 1.0}, {"step": 20, "loss": 3.0}, {"step": 20, "m": 2.0}, {"step": 40, "m": 4.0}]
    assert value_at_fraction(records, "m", 0.2, 100) == 2.0 and value_at_fraction(records, "m", 0.5, 100) is None


def write_run(folder: Path, rows: list[dict], wer: float | None = None) -> Path:
    folder.mkdir(parents=True)
    total = max(r["step"] for r in rows)
    lines = rows + ([{"step": total, "final": True, "test_wer": wer}] if wer is not None else [])
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if wer is not None:
        (folder / "wer.json").write_text(json.dumps({"checkpoint": "best", "step": total,
                                                     "test": {"wer": wer, "cer": wer / 2}}))
    return folder


def test_finished_values_skip_unfinished_runs(tmp_path):
    write_run(tmp_path / "a", [{"step": 10, "monitor/rankme": 5.0}, {"step": 50, "monitor/rankme": 6.0}], 80.0)
    write_run(tmp_path / "b", [{"step": 20, "monitor/rankme": 9.0}, {"step": 100, "monitor/rankme": 9.0}], 70.0)
    write_run(tmp_path / "pruned", [{"step": 10, "monitor/rankme": 1.0}])
    assert finished_values(tmp_path, "monitor/rankme", 0.2) == [5.0, 9.0]
    assert finished_values(tmp_path, "monitor/rankme", 0.2, exclude=tmp_path / "a") == [9.0]


def test_early_prediction_on_synthetic_runs(tmp_path, capsys):
    """5 runs: rankme at 20 % ranks them exactly (higher -> lower WER); the loss at 20 % is shuffled."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("early_prediction", Path(__file__).parent.parent / "tools" / "early_prediction.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    main = tool.main

    wers = [60.0, 70.0, 80.0, 90.0, 100.0]
    losses = [3.0, 1.0, 4.0, 2.0, 5.0]
    for i, (wer, loss) in enumerate(zip(wers, losses)):
        write_run(tmp_path / f"r{i}", [{"step": 10, "loss_sup": 9.0, "monitor/rankme": float(i)},
                                       {"step": 20, "loss_sup": loss, "monitor/rankme": 10.0 - i},
                                       {"step": 100, "loss_sup": 0.5, "monitor/rankme": 1.0}], wer)
    write_run(tmp_path / "unfinished", [{"step": 20, "loss_sup": 1.0, "monitor/rankme": 1.0}])
    assert main([str(tmp_path), "--fractions", "0.2", "--out", str(tmp_path / "out" / "ep")]) == 0
    table = (tmp_path / "out" / "ep.md").read_text()
    rows = {cells[0]: cells[1:] for line in table.splitlines() if line.startswith("| ")
            for cells in [[c.strip() for c in line.strip("| ").split("|")]]}
    assert rows["monitor/rankme"] == ["5", "-1.00", "[-1.00, -1.00]", "-1.00"]  # every resample ranks exactly
    # by hand: rank differences (2, -1, 1, -2, 0) -> rho = 1 - 6*10/(5*24) = 0.5; 7 of 10 pairs concordant -> tau 0.4
    n, rho, interval, tau = rows["loss_sup"]
    assert (n, rho, tau) == ("5", "+0.50", "+0.40")
    lo, hi = (float(v) for v in interval.strip("[]").split(","))
    assert lo < 0 < 0.5 < hi, interval  # 5 runs: a rho of 0.5 is not told apart from none
    # the interval is the 2.5/97.5 % percentiles of rho over the seeded resamples, recomputed here
    # with rho as the Pearson correlation of ranks (scipy's rankdata), not scipy's spearmanr
    from scipy.stats import rankdata

    x, y, rng, rhos = np.array(losses), np.array(wers), np.random.default_rng(0), []
    for _ in range(2000):
        idx = rng.integers(0, 5, 5)
        if len(set(x[idx])) > 1 and len(set(y[idx])) > 1:
            rhos.append(np.corrcoef(rankdata(x[idx]), rankdata(y[idx]))[0, 1])
    assert interval == "[{:+.2f}, {:+.2f}]".format(*np.percentile(rhos, [2.5, 97.5]))
    assert main([str(tmp_path), "--fractions", "0.2", "--out", str(tmp_path / "out" / "again")]) == 0
    assert (tmp_path / "out" / "again.md").read_text() == table  # the bootstrap is seeded
    assert (tmp_path / "out" / "ep.png").stat().st_size > 1000
    assert "skipping" in capsys.readouterr().out


MONITOR_RUN = ["method=supervised", "train.max_steps=4", "train.log_every=4", "train.eval_every=4",
               "eval.max_dev_utts=4", "monitor.every_steps=2", "monitor.probe_hours=0.01", "monitor.num_clusters=8"]


@pytest.mark.train
def test_trainer_logs_monitors_and_their_cost(small_cfg, tmp_path):
    from bljust.tracking.checkpoint import load_checkpoint
    from bljust.tracking.metrics import read_metrics
    from bljust.train import Trainer

    cfg = small_cfg([*MONITOR_RUN, "train.ckpt_every=2", f"run_dir={tmp_path}"])
    Trainer(cfg, tmp_path).run()
    records = {r["step"]: r for r in read_metrics(tmp_path / "metrics.jsonl") if not r.get("final") and "epoch_end" not in r}
    assert "loss_sup" not in records[2] and "loss_sup" in records[4]  # monitor-only record, then merged
    for step in (2, 4):
        assert records[step]["monitor/frames"] > 0  # the RankMe value itself is recomputed below
        assert all(math.isfinite(v) for k, v in records[step].items() if k.startswith("monitor"))
    assert records[4]["monitor_seconds_total"] == pytest.approx(records[2]["monitor_seconds"] + records[4]["monitor_seconds"])
    # The logged values are those of the weights at that step: recomputed from the checkpoints
    # (prev.pt holds step 2, last.pt step 4) on the probe set the monitor picks, RankMe by
    # Garrido et al.'s formula on numpy's singular values.
    recomputed = {}
    for name in ("prev.pt", "last.pt"):
        ckpt = load_checkpoint(tmp_path / "checkpoints" / name)
        recomputed[ckpt["step"]] = _rankme_of_checkpoint(ckpt, cfg)
    assert sorted(recomputed) == [2, 4]
    for step in (2, 4):
        assert records[step]["monitor/rankme"] == pytest.approx(recomputed[step], rel=1e-6, abs=0), step
    assert abs(recomputed[2] - recomputed[4]) > 1e-3  # the two steps differ, so each match is its own step's


def _rankme_of_checkpoint(ckpt: dict, cfg) -> float:
    """RankMe of a checkpoint's encoder on the run's probe set, with numpy's SVD and the paper's
    p_k = sigma_k / ||sigma||_1 + 1e-7, exp of the entropy of p."""
    from bljust.data.dataset import AsrDataset
    from bljust.data.manifests import load_cuts
    from bljust.evaluate import load_model
    from bljust.monitors.embed import embed_frames
    from bljust.monitors.probe import load_probe

    model, _, cmvn, _ = load_model(ckpt, torch.device("cpu"))
    m, f = cfg.monitor, cfg.features
    manifest = Path(cfg.recipe.data_dir) / "manifests" / "unlabelled.jsonl.gz"
    dataset = AsrDataset(cmvn, None, f.sample_rate, f.num_mel_bins, f.max_utt_seconds)
    probe = load_probe(select_probe_cuts(load_cuts(manifest), m.probe_hours, m.seed), dataset, m.batch_duration)
    x = embed_frames(model, probe, m.layer, torch.device("cpu"))
    x = x[subsample_indices(x.shape[0], m.max_frames, m.seed)].double().numpy()
    sv = np.linalg.svd(x, compute_uv=False)
    p = sv / sv.sum() + 1e-7
    return float(np.exp(-(p * np.log(p)).sum()))


@pytest.mark.train
def test_pruning_stops_a_run_worse_than_the_finished_median(small_cfg, tmp_path):
    from bljust.train import Trainer

    sweep = tmp_path / "sweep"
    for name in ("done1", "done2"):  # finished runs with an unbeatable rankme at 50 % of training
        write_run(sweep / name, [{"step": 2, "monitor/rankme": 1e6}, {"step": 4, "monitor/rankme": 1e6}], 50.0)
    run = sweep / "me"
    cfg = small_cfg([*MONITOR_RUN, "monitor.prune.enabled=true", "monitor.prune.fractions=[0.5]", f"run_dir={run}"])
    assert Trainer(cfg, run).run() == {}
    marker = json.loads((run / "PRUNED.json").read_text())
    assert marker["step"] == 2 and marker["finished_runs"] == 2 and marker["median"] == 1e6
    assert (run / "checkpoints" / "last.pt").is_file() and not (run / "wer.json").exists()
    assert Trainer(cfg, run).run() == {}  # a pruned run is not resumed
    assert not (run / "wer.json").exists()


def test_bad_monitor_settings_fail_clearly():
    from bljust.cli import compose_config
    from bljust.config import ConfigError

    with pytest.raises(ConfigError, match="monitor.every_steps"):
        compose_config(["monitor.every_steps=0"])
    with pytest.raises(ConfigError, match="monitor.prune.fractions"):
        compose_config(["monitor.prune.fractions=[1.5]"])

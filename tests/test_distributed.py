"""Data-parallel training on CPU (gloo): torchrun ranks agree with each other and with one process
taking the same global batch; rank sharding gives equal batch counts; a stop signal saves and
hands over to the launcher; the submitit launcher configs make the SLURM job we mean."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lhotse import CutSet
from lhotse.testing.dummies import dummy_cut

from bljust.data.dataset import BatchStream
from bljust.data.manifests import load_cuts
from bljust.tracking.checkpoint import load_checkpoint
from bljust.tracking.metrics import read_metrics

REPO = Path(__file__).resolve().parents[1]
FAST = ["model.d_model=64", "model.num_heads=2", "model.num_layers=2", "model.subsampling_channels=16",
        "eval.max_dev_utts=4", "train.eval_every=1000", "train.ckpt_every=1000"]

# No dropout, no SpecAugment, every frame masked with zero noise: the losses are a function of the
# weights and the batches alone, so two ranks and one process must compute the same numbers.
DETERMINISTIC = FAST + ["model.dropout=0", "specaug.enabled=false", "objective.bestrq.mask_prob=1.0",
                        "objective.bestrq.noise_std=0", "objective.bestrq.codebook_size=64", "train.max_duration=40",
                        "train.log_every=1", "optim.warmup_steps=2"]
RUNS = {  # 5 labelled batches a rank an epoch at 40 s: supervised crosses an epoch end
    "supervised": ["method=supervised", "train.max_steps=6"],
    "bljust": ["method=bljust", "train.max_steps=2", "method.explore=1", "method.explore_unit=steps",
               "method.joint_steps_per_epoch=2", "method.finetune=1", "method.finetune_unit=steps", "method.ramp_unit=steps", "method.ramp_length=1"],
}


@pytest.mark.filterwarnings("ignore::UserWarning")  # lhotse on an eager, tiny CutSet
def test_ranks_with_unequal_data_get_equal_batch_counts():
    """Utterances of very different lengths and counts that do not divide by the ranks: every rank
    still gets the same number of batches an epoch (no rank waits at a collective for a batch that
    never comes) and together they see every utterance."""
    cuts = CutSet.from_cuts(dummy_cut(i, duration=d) for i, d in enumerate([1, 13, 2, 29, 3, 7, 17, 1.5, 11, 23, 5]))
    for world in (2, 3, 4):
        for max_duration in (10, 31):
            streams = [BatchStream(cuts, None, max_duration, seed=0, num_buckets=2, world_size=world, rank=r)
                       for r in range(world)]
            batches = [list(s._sampler()) for s in streams]
            assert len({len(b) for b in batches}) == 1, (world, max_duration, [len(b) for b in batches])
            seen = {c.id.split("_dup")[0] for rank in batches for batch in rank for c in batch}
            assert seen == {c.id for c in cuts}
            seconds = [sum(c.duration for batch in rank for c in batch) for rank in batches]
            assert max(seconds) > min(seconds)  # the data really is unequal


def _reduce_partial_grads(rank: int, store: str, out: str) -> None:
    """Spawned rank: p0 has a gradient on both ranks, p1 only on rank 0, p2 on neither."""
    import torch.distributed as dist

    from bljust.distributed import all_reduce_grads

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    params = [torch.nn.Parameter(torch.zeros(3)) for _ in range(3)]
    params[0].grad = torch.full((3,), 2.0 + 4 * rank)
    if rank == 0:
        params[1].grad = torch.full((3,), 6.0)
    all_reduce_grads(params, bucket_elems=4)  # small buckets: p0 and p1 travel separately
    torch.save([None if p.grad is None else p.grad.tolist() for p in params], f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_gradients_average_over_ranks_even_where_a_rank_has_none(tmp_path):
    """A head that one rank's batch did not reach: zeros stand in for its gradient there, so both
    ranks exchange the same buckets (no hang) and average to the same numbers."""
    torch.multiprocessing.spawn(_reduce_partial_grads, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    for rank in (0, 1):
        assert torch.load(tmp_path / f"rank{rank}.pt") == [[4.0] * 3, [3.0] * 3, None]


@pytest.fixture(scope="module")
def torchrun_runs(demo_root, tmp_path_factory) -> Path:
    """Both RUNS trained by `torchrun --nproc_per_node=2` on CPU (gloo)."""
    out = tmp_path_factory.mktemp("torchrun")
    runs = json.dumps([{"name": name, "overrides": DETERMINISTIC + o} for name, o in RUNS.items()])
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(REPO / "tests" / "ddp_worker.py"), str(demo_root), str(out), runs],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.mark.e2e
@pytest.mark.parametrize("name", RUNS)
def test_torchrun_ranks_finish_together_with_identical_weights(torchrun_runs, name):
    r0, r1 = (torch.load(torchrun_runs / name / f"rank{r}.pt") for r in (0, 1))
    assert r0["step"] == r1["step"] > 0
    position = lambda r: {k: (v["epoch"], v["batch_in_epoch"]) for k, v in r["streams"].items()}
    assert position(r0) == position(r1)  # same epoch and position: they finished epochs together
    assert r0["params"].keys() == r1["params"].keys()
    for k in r0["params"]:
        assert torch.equal(r0["params"][k], r1["params"][k]), k
    # one run folder, written once (by rank 0): one record per step, then the final one (the
    # end-of-epoch skip summaries are records of their own)
    records = [r for r in read_metrics(torchrun_runs / name / "metrics.jsonl") if "epoch_end" not in r]
    assert [r["step"] for r in records] == [*range(1, r0["step"] + 1), r0["step"]] and records[-1]["final"]
    assert (torchrun_runs / name / "wer.json").is_file()


@pytest.mark.train
def test_supervised_epoch_end_is_crossed(torchrun_runs):
    assert torch.load(torchrun_runs / "supervised" / "rank0.pt")["streams"]["labelled"]["epoch"] == 1


class Interleaved:
    """The batches rank 0 and rank 1 draw, alternately: one process sees the same global batch."""

    def __init__(self, make):
        self.streams, self.i = [make(r) for r in (0, 1)], 0

    def __next__(self):
        self.i += 1
        return next(self.streams[(self.i - 1) % 2])

    def __getattr__(self, name):  # position, skip counts, epoch summaries: rank 0's stand for both
        return getattr(self.streams[0], name)


@pytest.mark.e2e
@pytest.mark.parametrize("name", RUNS)
def test_torchrun_matches_one_process_with_the_same_global_batch(torchrun_runs, small_cfg, tmp_path, name):
    """One process accumulating the two ranks' batches (train.accum_grad=2) takes the same steps:
    same losses, same effective batch (seconds of audio per update), same weights.

    Tolerances: the two sum the same numbers in another order. Adam's first steps move each weight
    by about lr whatever the gradient's size, so a near-zero gradient whose sign flips on rounding
    moves a weight by up to ~lr; a missing or wrong all-reduce would move almost every weight by
    ~lr, so the mean difference is held to a thousandth of lr (measured: ~1e-5 lr)."""
    from bljust.train import Trainer

    cfg = small_cfg(DETERMINISTIC + RUNS[name] + ["train.accum_grad=2", f"run_dir={tmp_path}"])
    ref = Trainer(cfg, tmp_path)
    t = cfg.train

    def streams(path, dataset, seed):
        return Interleaved(lambda r: BatchStream(load_cuts(path), dataset, t.max_duration, seed, t.num_buckets,
                                                 world_size=2, rank=r))

    ref.ctx.labelled = streams(ref.data.labelled, ref.labelled_ds, t.seed)
    ref._unlabelled = streams(ref.data.unlabelled, ref.unlabelled_ds, t.seed + 1)
    ref.run()
    ddp = {r["step"]: r for r in read_metrics(torchrun_runs / name / "metrics.jsonl") if not r.get("final") and "epoch_end" not in r}
    one = {r["step"]: r for r in read_metrics(tmp_path / "metrics.jsonl") if not r.get("final") and "epoch_end" not in r}
    assert ddp.keys() == one.keys()
    for step in ddp:
        for key in ("loss_sup", "loss_unsup", "batch_seconds"):
            if key in one[step]:
                # float sums in another order (all-reduce vs accumulation), amplified a little by Adam
                assert ddp[step][key] == pytest.approx(one[step][key], rel=1e-4), (step, key)
    ddp_weights = torch.load(torchrun_runs / name / "rank0.pt")["params"]
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    mine = {**{f"model.{k}": v for k, v in ckpt["model"].items()},
            **{f"{m}.{k}": v for m, state in ckpt["method"]["modules"].items() for k, v in state.items()}}
    assert mine.keys() == ddp_weights.keys()
    diffs = torch.cat([(ddp_weights[k] - v).abs().flatten() for k, v in mine.items()])
    lr = 1e-3  # the smallest peak learning rate of either run (bljust's groups; supervised 2e-3)
    assert diffs.mean() < 1e-3 * lr and diffs.max() < 0.5 * lr, (diffs.mean() / lr, diffs.max() / lr)


@pytest.mark.train
def test_stop_signal_saves_last_pt_then_hands_over_to_the_launcher(small_cfg, tmp_path):
    """SIGUSR2 (submitit's time-limit / preemption signal) mid-run: the step finishes, last.pt is
    saved, then the handler that was there before (submitit's requeue) runs; a re-run resumes."""
    from bljust.train import Trainer

    keys = FAST + ["train.max_steps=4", "train.log_every=1", "train.max_duration=20", f"run_dir={tmp_path}"]
    tr = Trainer(small_cfg(keys), tmp_path)
    real_step, handed_over = tr.method.step, []

    def signalled_at_1(step):
        if step == 1:
            os.kill(os.getpid(), signal.SIGUSR2)
        return real_step(step)

    tr.method.step = signalled_at_1
    before = signal.signal(signal.SIGUSR2, lambda signum, frame: handed_over.append(signum))
    try:
        assert tr.run() == {}
    finally:
        signal.signal(signal.SIGUSR2, before)
    assert handed_over == [signal.SIGUSR2]
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 2
    assert Trainer(small_cfg(keys), tmp_path).run()["step"] == 4


def compose_with_hydra(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from bljust.cli import CONF_DIR
    from bljust.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # the launcher's ${hydra.job.name} resolves against it
    return cfg


def test_slurm_launcher_config_makes_a_multi_node_requeueable_job(monkeypatch, tmp_path):
    """hydra/launcher=slurm composes, instantiates as the submitit plugin would, and the sbatch
    script submitit writes asks for one task per GPU on every node and USR2 before the limit."""
    import submitit
    from hydra.utils import instantiate
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    cfg = compose_with_hydra(["hydra/launcher=slurm", "hydra.launcher.nodes=2", "hydra.launcher.gpus_per_node=4",
                              "hydra.launcher.partition=gpu", "method=bljust", "train.seed=3"])
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher" and hasattr(launcher, "checkpoint")  # requeue-able
    params = dict(launcher.params)
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # no srun here
    executor = submitit.AutoExecutor(folder=tmp_path, cluster="slurm",
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    params.pop("submitit_folder")
    base = set(OmegaConf.structured(BaseQueueConf).keys())  # the plugin's own renaming
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    sbatch = executor._executor._make_submission_file_text("python -u -m submitit.core._submit", "uid")
    for line in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--signal=USR2@300",
                 "--partition=gpu", "--time=1440"):
        assert f"#SBATCH {line}\n" in sbatch, line
    assert executor._executor.max_num_timeout == 20


def test_local_launcher_config_composes():
    cfg = compose_with_hydra(["hydra/launcher=local", "hydra.launcher.tasks_per_node=2"])
    assert cfg.hydra.launcher._target_.endswith("LocalLauncher") and cfg.hydra.launcher.tasks_per_node == 2


@pytest.mark.e2e
def test_local_submitit_launcher_trains_two_ranks_into_one_run_folder(demo_root, tmp_path):
    """`-m hydra/launcher=local` with two tasks: submitit starts both, they form one process group
    from submitit's job environment, and the run lands in one sweep folder, written once."""
    from conftest import small_overrides

    proc = subprocess.run(
        [sys.executable, "-m", "bljust.train", "-m", "hydra/launcher=local", "hydra.launcher.tasks_per_node=2",
         f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.sweep.subdir=job",  # not a label of 20 overrides
         *small_overrides(demo_root), *FAST, "train.max_steps=2",
         "train.max_duration=20", "train.log_every=1"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=600)
    logs = {p.name: p.read_text() for p in (tmp_path / "sweep" / ".submitit").glob("*/*_log.*")}
    assert proc.returncode == 0, proc.stderr[-2000:] + "\n".join(logs.values())[-3000:]
    [run] = [m.parent for m in (tmp_path / "sweep").glob("**/metrics.jsonl")]  # one folder for both ranks
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl") if not r.get("final") and "epoch_end" not in r] == [1, 2]
    assert json.loads((run / "wer.json").read_text())["step"] == 2
    assert any("device cpu x 2" in text for text in logs.values())

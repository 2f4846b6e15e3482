"""Train a recogniser: python -m bljust.train recipe=<recipe> method=<method> [key=value ...]

The loop reads top to bottom: prepare data, build model and method, resume if a checkpoint is
there, step / log / evaluate / save, then score every dev and test split. The method object
decides what one step does.
"""

from __future__ import annotations

import json
import random
import resource
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from lhotse import CutSet
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from bljust import distributed
from bljust.config import register_configs, validate
from bljust.data.augment import CutAugment
from bljust.data.dataset import AsrDataset, BatchStream
from bljust.data.features import Cmvn
from bljust.data.manifests import cut_text, load_cuts
from bljust.data.skips import check_bad_fraction
from bljust.data.specaug import SpecAugment
from bljust.data.tokenizer import Tokenizer
from bljust.errors import UserError
from bljust.evaluate import prepared_counts, score, transcribe_cuts, write_hyps
from bljust.methods import StepOutput, TrainContext, build_method
from bljust.models.asr import AsrModel, count_parameters
from bljust.monitors import Monitor
from bljust.monitors.pruning import MARKER as PRUNED_MARKER
from bljust.prepare import PreparedData, prepare
from bljust.tracking.checkpoint import (FORMAT_VERSION, load_checkpoint, load_latest, rng_state, save_atomic,
                                        set_rng_state)
from bljust.tracking.disk import write_text_atomic
from bljust.tracking.faults import fault_point
from bljust.tracking.log_sink import LogSink
from bljust.tracking.metrics import MetricsWriter
from bljust.tracking.stop_signals import StopSignals
from bljust.tracking.throughput import ThroughputMeter
from bljust.tracking.run_config import check_resume_config
from bljust.tracking.run_lock import hold_run_folder
from bljust.tracking.save_policy import SaveGuard
from bljust.tracking.warm_start import warm_start
from bljust.tracking.wandb_run import WandbRun, refuse_secrets, seed_tags

# The running bad-data check waits for this many utterances of an epoch, so a few bad files
# early in the shuffle do not stop a run; the end-of-epoch check always applies.
BAD_FRACTION_MIN_SEEN = 500


def memory_record(device: torch.device) -> dict[str, float]:
    """Peak memory so far: the process's resident set (CPU), and on CUDA the allocator's peak."""
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # KiB on Linux
    if device.type == "cuda":
        out["max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


class TrainingDiverged(UserError, RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


def pick_device(setting: str) -> torch.device:
    if setting == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is visible")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Owns the side effects of a run: data, checkpoints, logs. `run()` is the loop."""

    def __init__(self, cfg: DictConfig, out_dir: Path):
        validate(cfg)
        self.device = pick_device(cfg.device)
        self.dist = distributed.init_from_env(self.device.type == "cuda")
        if self.device.type == "cuda" and self.dist.world_size > 1:
            self.device = torch.device("cuda", torch.cuda.current_device())
        out_dir = Path(distributed.broadcast_object(str(out_dir)))  # one run folder, rank 0's
        self.cfg, self.out_dir = cfg, out_dir
        self.resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[assignment]
        refuse_secrets(self.resolved)
        self.ckpt_dir = out_dir / "checkpoints"
        self.save_guard = SaveGuard(cfg.train.on_save_error, self.dist.is_main)
        hold_run_folder(out_dir, self.dist.is_main)  # one run per folder (tracking/run_lock.py)
        check_resume_config(self.ckpt_dir, self.resolved, out_dir, self.dist.is_main)
        seed_everything(cfg.train.seed)

        self.data: PreparedData = self._prepare()
        self.tokenizer = Tokenizer.load(self.data.tokenizer)
        self.cmvn = Cmvn.load(self.data.cmvn)
        warm = None
        if cfg.init_from:  # its CMVN, and its tokenizer when that spells our labels (tracking/warm_start.py)
            warm = warm_start(cfg.init_from, cfg.model, (cut_text(c) for c in load_cuts(self.data.labelled)))
            self.cmvn = warm.cmvn
            self.tokenizer = warm.tokenizer if warm.keep_head else self.tokenizer
        self.model = AsrModel(cfg.model, self.tokenizer.vocab_size).to(self.device)
        if warm is not None:
            warm.load_into(self.model)
        if cfg.train.compile:  # in place: parameter names and checkpoints stay those of the eager model
            self.model.encoder.compile(dynamic=cfg.train.compile_dynamic)

        f = cfg.features
        self.labelled_ds = AsrDataset(self.cmvn, self.tokenizer, f.sample_rate, f.num_mel_bins, f.max_utt_seconds,
                                      augment=CutAugment.from_config(cfg.augment, f.sample_rate))
        self.unlabelled_ds = AsrDataset(self.cmvn, None, f.sample_rate, f.num_mel_bins, f.max_utt_seconds)
        self.labelled = self._stream(load_cuts(self.data.labelled), self.labelled_ds, cfg.train.seed)
        self._unlabelled: BatchStream | None = None
        self.ctx = TrainContext(cfg, self.model, self.device, self.labelled, self.unlabelled_stream,
                                SpecAugment(cfg.specaug), out_dir=out_dir)
        self.method = build_method(self.ctx)
        self.monitor = Monitor(cfg.monitor, self.data.unlabelled or self.data.labelled, self.unlabelled_ds,
                               self.device, cfg.model.num_layers, out_dir)
        if self.dist.world_size > 1:
            distributed.broadcast_state([self.model, *self.method.modules.values()])
            totals = distributed.gather_objects(self.method.total_steps())
            assert len(set(totals)) == 1, f"ranks disagree on the number of steps: {totals}"
            # Each rank its own dropout, SpecAugment and masking draws (the weights are rank 0's).
            seed_everything(cfg.train.seed + 7919 * self.dist.rank)
        self.step, self.best_dev_error, self.train_seconds, self.wandb_id = 0, float("inf"), 0.0, None
        self.compute_c = 0.0  # C spent so far (bljust/methods/base.py says how a pass is counted)
        self.meter: ThroughputMeter | None = None
        self.last_saved: tuple[Path, int] | None = None
        self.dev_cuts = {s: load_cuts(self.data.eval_splits[s]) for s in self.data.dev_splits}
        if cfg.eval.max_dev_utts:
            self.dev_cuts = {s: c.subset(first=cfg.eval.max_dev_utts) for s, c in self.dev_cuts.items()}

    def _prepare(self) -> PreparedData:
        """prepare() on rank 0 first; the others wait, then find everything built."""
        if not self.dist.is_main:
            distributed.barrier()
        data = prepare(self.cfg, verbose=self.dist.is_main)
        if self.dist.is_main:
            distributed.barrier()
        return data

    def _stream(self, cuts, dataset: AsrDataset, seed: int) -> BatchStream:
        # Every rank samples the same seeded bucketed batches and keeps every world_size-th, so all
        # ranks get the same number of batches an epoch (lhotse splits the last ones if need be).
        t = self.cfg.train
        return BatchStream(cuts, dataset, t.max_duration, seed, t.num_buckets, t.num_workers,
                           world_size=self.dist.world_size, rank=self.dist.rank,
                           pin_memory=self.device.type == "cuda")

    def unlabelled_stream(self) -> BatchStream:
        if self._unlabelled is None:
            if self.data.unlabelled is None:
                raise UserError(f"method={self.cfg.method.name} needs unlabelled data: recipe.unlabelled is empty")
            self._unlabelled = self._stream(load_cuts(self.data.unlabelled), self.unlabelled_ds, self.cfg.train.seed + 1)
        return self._unlabelled

    # --- checkpoints -------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        streams = {"labelled": self.labelled.state_dict()}
        if self._unlabelled is not None:
            streams["unlabelled"] = self._unlabelled.state_dict()
        rng = rng_state()
        return {
            "format": FORMAT_VERSION, "step": self.step, "model": self.model.state_dict(),
            "method": self.method.state_dict(), "streams": streams, "rng": rng,
            "rng_ranks": distributed.gather_objects(rng), "world_size": self.dist.world_size,
            "config": self.resolved, "tokenizer": self.tokenizer.to_tensor(), "cmvn": self.cmvn.state_dict(),
            "best_dev_error": self.best_dev_error, "wandb_id": self.wandb_id, "compute_c": self.compute_c,
            "train_seconds": self.meter.total_seconds() if self.meter else self.train_seconds,
            "monitor_seconds": self.monitor.seconds_total, "save_errors": self.save_guard.errors,
        }

    def save(self, name: str = "last.pt") -> None:
        """Write a checkpoint; last.pt keeps its predecessor as prev.pt. Collective (every rank
        sends its RNG state); rank 0 writes.

        last.pt is not overwritten while steps are being skipped for non-finite values, so a run
        that stops on them leaves its last good state on disk.
        """
        if name == "last.pt" and self.method.nonfinite_streak:
            return
        ckpt = self.checkpoint()
        keep = "prev.pt" if name == "last.pt" else None
        if not self.save_guard.write(lambda: save_atomic(ckpt, self.ckpt_dir / name, keep), self.step, self.last_saved):
            return  # train.on_save_error=continue: counted, the next checkpoint tries again
        if name == "last.pt":
            self.last_saved = (self.ckpt_dir / name, self.step)

    def resume(self) -> Path | None:
        """Load last.pt, or prev.pt when last.pt is missing or unreadable; the path used, or None."""
        found = load_latest([self.ckpt_dir / "last.pt", self.ckpt_dir / "prev.pt"], self.device)
        if found is None:
            return None
        ckpt, path, problems = found
        for problem in problems:
            print(f"warning: {problem}; falling back to {path} (step {ckpt['step']})")
        self.model.load_state_dict(ckpt["model"])
        self.method.load_state_dict(ckpt["method"])
        self.labelled.load_state_dict(ckpt["streams"]["labelled"])
        if "unlabelled" in ckpt["streams"]:
            self.unlabelled_stream().load_state_dict(ckpt["streams"]["unlabelled"])
        saved_world = ckpt.get("world_size", 1)
        if saved_world == self.dist.world_size:
            set_rng_state(ckpt.get("rng_ranks", [ckpt["rng"]])[self.dist.rank])
        else:  # still a valid run, but not the batches an uninterrupted run would have seen
            if self.dist.is_main:
                print(f"note: {path} was saved by {saved_world} ranks, resuming on {self.dist.world_size}")
            set_rng_state(ckpt["rng"])
            seed_everything(self.cfg.train.seed + 7919 * self.dist.rank + ckpt["step"])
        self.step, self.best_dev_error = ckpt["step"], ckpt["best_dev_error"]
        self.train_seconds, self.wandb_id = ckpt["train_seconds"], ckpt["wandb_id"]
        self.compute_c = ckpt.get("compute_c", 0.0)
        self.monitor.seconds_total = ckpt.get("monitor_seconds", 0.0)
        self.save_guard.errors = ckpt.get("save_errors", 0)
        self.last_saved = (path, ckpt["step"])
        return path

    def data_wait_seconds(self) -> float:
        return self.labelled.wait_seconds + (self._unlabelled.wait_seconds if self._unlabelled else 0.0)

    def after_step(self, log: LogSink, sync: bool = True) -> None:
        """Checks after every step: epoch-end skip summaries, the bad-data limit, and (when `sync`:
        reading it waits for the device) the non-finite streak."""
        t = self.cfg.train
        for name, stream in {"labelled": self.labelled, "unlabelled": self._unlabelled}.items():
            if stream is None:
                continue
            for epoch, used, skips in stream.finished_epochs:
                self.say(f"{name} data, epoch {epoch} done at step {self.step}: used {used} utterances, {skips.summary()}")
                if self.dist.is_main:
                    log.write({"step": self.step, "epoch_end": name, "epoch": epoch, "used": used,
                               "skipped": skips.total, "skip_reasons": skips.as_dict()})
                check_bad_fraction(f"{name} data, epoch {epoch}", skips, used, t.max_bad_fraction)
            stream.finished_epochs.clear()
            check_bad_fraction(f"{name} data, epoch {stream.epoch} so far", stream.epoch_skips,
                               stream.epoch_used, t.max_bad_fraction, BAD_FRACTION_MIN_SEEN)
        streak = self.method.nonfinite_streak if sync else 0
        if streak >= t.max_nonfinite_steps:
            raise TrainingDiverged(
                f"stopped at step {self.step}: {streak} consecutive steps had a non-finite loss or gradient "
                f"(train.max_nonfinite_steps={t.max_nonfinite_steps}); last good checkpoint: "
                f"{self.resume_point() if self.last_saved else 'none written yet'}")

    # --- evaluation --------------------------------------------------------------------------
    def transcribe(self, cuts: CutSet) -> list[tuple[str, str | None, str]]:
        """Each rank transcribes a contiguous share; every rank gets all results in manifest order."""
        r, w = self.dist.rank, self.dist.world_size
        if w > 1:
            cuts = list(cuts)
            cuts = CutSet.from_cuts(cuts[r * len(cuts) // w: (r + 1) * len(cuts) // w])
        mine = transcribe_cuts(self.model, cuts, self.labelled_ds, self.tokenizer, self.device,
                               self.cfg.eval.batch_duration)
        return [x for part in distributed.gather_objects(mine) for x in part]

    def evaluate_dev(self) -> dict[str, float]:
        out = {}
        fault_point("eval")
        for split, cuts in self.dev_cuts.items():
            rates = score(self.transcribe(cuts))
            out[f"{split}_wer"], out[f"{split}_cer"] = rates["wer"], rates["cer"]
        return out

    def final_evaluation(self) -> dict[str, Any]:
        """Score every dev/test split (dev only with eval.score_test=false) with the best-on-dev
        checkpoint (the last one if none)."""
        distributed.barrier()  # rank 0 has finished writing best.pt
        best = self.ckpt_dir / "best.pt"
        which = "best" if best.is_file() else "last"
        if best.is_file():
            self.model.load_state_dict(load_checkpoint(best, self.device)["model"])
        table: dict[str, Any] = {"checkpoint": which, "step": self.step}
        hyp_dir = self.out_dir / "hyps"
        for split, path in self.data.eval_splits.items():
            if not (self.cfg.eval.score_test or split in self.data.dev_splits):
                continue
            results = self.transcribe(load_cuts(path))
            if self.dist.is_main:
                hyp_dir.mkdir(exist_ok=True)
                write_hyps(results, hyp_dir / f"{split}.txt")
            table[split] = {**score(results), **prepared_counts(self.data.data_dir, split)}  # what it does not cover
        if self.dist.is_main:
            write_text_atomic(self.out_dir / "wer.json", json.dumps(table, indent=1))
        return table

    # --- the loop ----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """The loop. Under DDP every rank runs it in lockstep; only rank 0 writes files and logs."""
        done = self.start()
        if done is not None:
            return done
        t, total = self.cfg.train, self.method.total_steps()
        self.meter = ThroughputMeter(self.data_wait_seconds, self.train_seconds)
        bar = tqdm(total=total, initial=self.step, disable=not (t.progress and self.dist.is_main), dynamic_ncols=True)
        self.model.train()
        with self.log_sink() as log, StopSignals() as stop:
            # The monitor runs on every rank on the same weights and probe set, so its prune
            # decision agrees across ranks, as the stop request does.
            while self.step < total and self.monitor.prune_message is None and not stop.requested():
                out = self.method.train_step(self.step)
                fault_point("step")
                self.step += 1
                self.compute_c += out.compute_c
                self.meter.step()
                bar.update(1)
                monitored = self.monitor.maybe_run(self.model, self.step, total)
                self.meter.exclude(monitored.get("monitor_seconds", 0.0))  # monitor time is not training time
                log_now = self.step % t.log_every == 0 or self.step == total
                eval_now = self.step % t.eval_every == 0 or self.step == total
                if log_now or eval_now:
                    record = {**self.train_record(out), **monitored}
                    if eval_now:
                        with self.meter.excluded():
                            record.update(self.evaluate_and_keep_best())
                    log.write(record)
                    bar.set_postfix({k: f"{record[k]:.3g}" for k in record if k.startswith(("loss", "dev"))})
                elif monitored:
                    log.write({"step": self.step, **monitored})
                # on CUDA the streak is read at log steps only: skipped updates cost nothing meanwhile
                self.after_step(log, sync=self.device.type != "cuda" or log_now)
                if self.step % t.ckpt_every == 0 or self.step == total:
                    with self.meter.excluded():
                        self.save()
            bar.close()
            if total == 0 and self.step == 0:  # train.max_steps=0: the init_from model as it is, saved as
                self.save()                    # this run's checkpoints so it is scored and decoded like any run
                self.save("best.pt")
            if stop.signum or self.monitor.prune_message is not None:
                self.save()
                self.say(self.monitor.prune_message or f"stopped by signal {stop.signum} at step {self.step}; "
                         f"resume point {self.resume_point()}: re-run to resume")
                table = {}
            else:
                table = self.finish(log)
        distributed.barrier()
        stop.pass_on()  # a launcher's handler, after everything is saved: submitit requeues the job here
        return table

    def say(self, message: str) -> None:
        if self.dist.is_main:
            print(message, flush=True)

    def start(self) -> dict[str, Any] | None:
        """Write config.yaml, resume if there is a checkpoint; a result if the run has nothing
        left to do (finished: its wer.json; pruned: {}), else None."""
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.out_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(self.resolved)))
        resumed = self.resume()
        if resumed:
            self.say(f"resumed from {resumed} at step {self.step}")
        wer_path = self.out_dir / "wer.json"
        if self.step >= self.method.total_steps() and wer_path.is_file():
            self.say(f"run already finished at step {self.step}: {wer_path}")
            return json.loads(wer_path.read_text())
        if (self.out_dir / PRUNED_MARKER).is_file():
            self.say(f"run was pruned, not resumed: {self.out_dir / PRUNED_MARKER}")
            return {}
        t = self.cfg.train
        self.say(f"run: {self.out_dir} | model {count_parameters(self.model) / 1e6:.2f} M params | "
                 f"method {self.cfg.method.name} | device {self.device} x {self.dist.world_size} | "
                 f"accum_grad {t.accum_grad}")
        return None

    def log_sink(self) -> LogSink:
        cfg, main = self.cfg, self.dist.is_main
        metrics = MetricsWriter(self.out_dir / "metrics.jsonl", resume_step=self.step) if main else None
        wandb = WandbRun(cfg.logging.wandb if main else "disabled", cfg.recipe.wandb_project, cfg.logging.group,
                         cfg.run_name, cfg.method.name, self.resolved, self.out_dir, self.wandb_id,
                         seed_tags(cfg.logging.tags, cfg.train.seed))
        self.wandb_id = wandb.id if main else self.wandb_id
        return LogSink(metrics, wandb)

    def train_record(self, out: StepOutput) -> dict[str, Any]:
        """A log step's record: the step's output (means over ranks; batch_seconds, the audio in
        the update over all ranks, summed), throughput, compute, memory and counters."""
        skipped = self.labelled.skips.total + (self._unlabelled.skips.total if self._unlabelled else 0)
        extra = self.method.diagnostics(self.step)  # outside the compute count
        shared = distributed.reduce_record(
            {**out.values, **out.grad_norms, **extra, "batch_seconds": out.batch_seconds, "skipped_utterances": skipped},
            sum_keys=("batch_seconds", "skipped_utterances"))
        return {"step": self.step, "total_steps": self.method.total_steps(), "epoch": self.labelled.epoch,
                **self.meter.close_window(), "compute_c": self.compute_c, **memory_record(self.device),
                "supervised_updates": self.method.supervised_updates,
                "skipped_utterances": int(shared.pop("skipped_utterances")),
                "nonfinite_skips": self.method.nonfinite_skips,
                "save_errors": self.save_guard.errors, **shared}

    def evaluate_and_keep_best(self) -> dict[str, float]:
        """Dev scores; best.pt is rewritten when the selection metric improves."""
        start = time.perf_counter()
        record = self.evaluate_dev()
        record["eval_seconds"] = time.perf_counter() - start
        dev_error = record[f"{self.data.dev_splits[0]}_{self.cfg.eval.select_metric}"]
        if dev_error < self.best_dev_error:
            self.best_dev_error = dev_error
            self.save("best.pt")
        return record

    def resume_point(self) -> str:
        return f"{self.last_saved[0]} (step {self.last_saved[1]})" if self.last_saved else "no checkpoint"

    def finish(self, log: LogSink) -> dict[str, Any]:
        """Score every dev/test split, log the summary and print it."""
        table = self.final_evaluation()
        summary = {f"{s}_{k}": v[k] for s, v in table.items() if isinstance(v, dict) for k in ("wer", "cer")}
        if self.dist.is_main:
            log.write({"step": self.step, "final": True, "compute_c": self.compute_c, **summary})
            log.summary(summary)
        self.say("final: " + "  ".join(f"{s} WER {v['wer']:.2f} % CER {v['cer']:.2f} %"
                                       for s, v in table.items() if isinstance(v, dict)))
        return table


def output_dir(cfg: DictConfig) -> Path:
    """The run folder Hydra made (hydra.run.dir = run_dir), or run_dir outside a Hydra run."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return Path(cfg.run_dir)


register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from bljust.cli import fail

    try:
        Trainer(cfg, output_dir(cfg)).run()
    except UserError as err:
        fail(err)
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main()

"""The monitor pass the training loop calls: probe set built once, values every monitor.every_steps,
its own wall time measured, and the optional pruning check."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bljust.config import ConfigError
from bljust.data.dataset import AsrDataset
from bljust.data.manifests import load_cuts
from bljust.errors import UserError
from bljust.models.asr import AsrModel
from bljust.monitors.embed import embed_frames
from bljust.monitors.probe import ProbeSet, load_probe, select_probe_cuts, subsample_indices
from bljust.monitors.pruning import finished_values, is_worse_than_median, write_marker
from bljust.monitors.suite import HIGHER_IS_BETTER, measure
from bljust.tracking.faults import fault_point

PREFIX = "monitor/"


class Monitor:
    """Owned by the trainer. `maybe_run` returns {} on most steps, and on monitor steps the values
    as metrics keys (monitor/<name>, monitor_seconds, monitor_seconds_total)."""

    def __init__(self, cfg: Any, manifest: Path, dataset: AsrDataset, device: torch.device,
                 num_layers: int, run_dir: Path):
        if cfg.layer > num_layers:
            raise ConfigError(f"monitor.layer={cfg.layer} but the encoder has {num_layers} blocks")
        if cfg.prune.metric not in HIGHER_IS_BETTER:
            raise ConfigError(f"monitor.prune.metric={cfg.prune.metric!r} is not one of {sorted(HIGHER_IS_BETTER)}")
        self.cfg, self.manifest, self.dataset, self.device, self.run_dir = cfg, manifest, dataset, device, run_dir
        self.probe: ProbeSet | None = None
        self.seconds_total = 0.0  # restored from the checkpoint on resume
        self.prune_message: str | None = None

    def due(self, step: int, total: int) -> bool:
        return bool(self.cfg.enabled) and step % self.cfg.every_steps == 0

    def maybe_run(self, model: AsrModel, step: int, total: int) -> dict[str, float]:
        if not self.due(step, total):
            return {}
        start = time.perf_counter()
        if self.probe is None:  # built on first use: runs that never monitor never read the audio
            cuts = select_probe_cuts(load_cuts(self.manifest), self.cfg.probe_hours, self.cfg.seed)
            self.probe = load_probe(cuts, self.dataset, self.cfg.batch_duration)
            if self.probe.utterances == 0:
                raise UserError(f"monitor: no usable probe audio in {self.manifest} (monitor.enabled=false skips monitors)")
            print(f"monitor: probe set of {self.probe.utterances} utterances, {self.probe.seconds / 3600:.2f} h "
                  f"from {self.manifest}")
        x = embed_frames(model, self.probe, self.cfg.layer, self.device)
        fault_point("monitor")  # reliability tests kill runs here, mid-pass
        x = x[subsample_indices(x.shape[0], self.cfg.max_frames, self.cfg.seed)]
        values = measure(x, self.cfg.num_clusters, list(self.cfg.kmeans_seeds), self.cfg.silhouette_frames,
                         self.cfg.rank_rtol, self.cfg.seed, self.cfg.kmeans_batch_size)
        record = {PREFIX + k: v for k, v in values.items()}
        record[PREFIX + "frames"] = float(x.shape[0])
        self._check_prune(step, total, values)
        seconds = time.perf_counter() - start
        self.seconds_total += seconds
        return {**record, "monitor_seconds": seconds, "monitor_seconds_total": self.seconds_total}

    def _check_prune(self, step: int, total: int, values: dict[str, float]) -> None:
        """At the first monitor pass at or after each fraction (stateless, so resume-safe)."""
        p = self.cfg.prune
        if not p.enabled:
            return
        root = Path(p.sweep_root) if p.sweep_root else self.run_dir.parent
        for fraction in p.fractions:
            if not step - self.cfg.every_steps < fraction * total <= step:
                continue
            others = finished_values(root, PREFIX + p.metric, fraction, exclude=self.run_dir)
            value = values[p.metric]
            if is_worse_than_median(value, others, HIGHER_IS_BETTER[p.metric], p.min_finished):
                info = {"step": step, "total_steps": total, "fraction": fraction, "metric": p.metric,
                        "value": value, "finished_runs": len(others), "median": statistics.median(others)}
                marker = write_marker(self.run_dir, info)
                better = "higher" if HIGHER_IS_BETTER[p.metric] else "lower"
                self.prune_message = (
                    f"pruned at step {step}/{total} ({fraction:.0%} of training): monitor {p.metric} = {value:.4g} "
                    f"is worse than the median {info['median']:.4g} of {len(others)} finished runs under {root} "
                    f"({better} is better); marker {marker}")
                return

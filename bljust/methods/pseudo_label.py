"""`method=pseudo_label`: slimIPL (on-the-fly self-labelling with a dynamic cache) or offline
labelling by a teacher checkpoint.

slimIPL (Likhomanenko et al. 2021), as in the authors' recipe (flashlight/wav2letter
recipes/slimIPL, type fixed-pre-cache):
  steps [0, start_step): CTC on labelled batches (the warm-up); with `start_min_nonempty` > 0
  the warm-up goes on past start_step until the model's own labels of an unlabelled batch are
  non-empty for that fraction of it (checked every `start_check_every` steps), so labelling never
  starts from a model still on CTC's blank plateau;
  at the start: dropout set to `pl_dropout` (when given);
  then cycles of `sup_updates` labelled updates and `pl_updates` pseudo-labelled ones. A
  pseudo-labelled slot first fills the cache (label one unlabelled batch, no update) until it
  holds `cache_size` batches; after that it trains on a batch drawn from the cache and, with
  probability `replace_prob`, refills that slot with a batch labelled by the current model.
Labels are greedy CTC (no LM) from the model in eval mode under no_grad; SpecAugment applies to
pseudo-labelled batches as to labelled ones (the labelling pass sees clean features).

Offline: the teacher labels the unlabelled set once (RUN/pseudo_labels.jsonl.gz, reused on
resume); confident labels join the labelled cuts and every step is CTC on that mixture.

In both modes labels that are empty, too long for their CTC alignment, or below
`confidence_threshold` are dropped and counted. Where the unlabelled folders carry transcripts
(the demo corpus, LibriSpeech), the kept labels' WER/CER is logged for analysis only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Optional

import torch
from lhotse import CutSet
from lhotse.utils import fastcopy

from bljust import distributed
from bljust.data.dataset import AsrDataset, Batch, BatchStream, eval_batches
from bljust.data.manifests import load_cuts, read_transcripts
from bljust.config import MethodConfig
from bljust.errors import UserError
from bljust.methods.base import FWD, FWD_BWD, Method, StepOutput, TrainContext, supervised_loss
from bljust.methods.pl_cache import CacheEntry, PseudoLabelCache
from bljust.objectives.pseudo_labels import DropCounts, filter_labels, label_batch
from bljust.optim import make_adamw, make_scheduler
from bljust.scoring import error_rates


class Mode(StrEnum):
    slimipl = "slimipl"
    offline = "offline"


class Confidence(StrEnum):
    max_posterior = "max_posterior"  # mean over frames of the best token's posterior
    logprob = "logprob"  # mean over frames of the best token's log-probability


@dataclass
class PseudoLabelConfig(MethodConfig):
    """Pseudo-labelling. mode=slimipl (Likhomanenko et al. 2021): `start_step` supervised steps,
    then cycles of `sup_updates` supervised and `pl_updates` pseudo-labelled updates, the labels
    made on the fly by the model itself (greedy CTC, eval mode) and kept in a dynamic cache.
    mode=offline: `teacher` labels the unlabelled set once; the confident labels join the
    labelled data and the model trains on both from its initialisation. train.max_steps counts
    every update, supervised or pseudo-labelled. Demo-sized defaults; (10 h) marks the slimIPL
    LibriSpeech 10 h recipe's value, see docs/methods.md.
    """

    name: str = "pseudo_label"
    mode: Mode = Mode.slimipl
    start_step: int = 500  # supervised-only warm-up (10 h: 20000)
    # ours: past start_step, wait until this fraction of a labelled batch's pseudo-labels is non-empty
    start_min_nonempty: float = 0.0
    start_check_every: int = 25  # steps between those checks (each a forward pass over one batch)
    sup_updates: int = 1  # (10 h: 1)
    pl_updates: int = 2  # (10 h: 10)
    cache_size: int = 40  # pseudo-labelled batches in the cache (10 h: 1000)
    replace_prob: float = 0.2  # chance a used cache entry is replaced by a new batch (10 h: 0.1)
    pl_dropout: Optional[float] = None  # dropout from the start on; None keeps model.dropout (10 h: 0.1 after 0.5)
    teacher: Optional[str] = None  # offline: checkpoint whose greedy labels are used
    confidence: Confidence = Confidence.max_posterior  # both averaged over frames
    confidence_threshold: float = 0.0  # keep labels with confidence >= this; 0 with max_posterior keeps all
    label_batch_duration: float = 300.0  # offline labelling pass: seconds of audio per batch

    def check(self, cfg) -> list[tuple[bool, str]]:
        return [
            (cfg.train.accum_grad == 1,
             "train.accum_grad > 1 is not supported with method=pseudo_label (its cache-filling steps take no update)"),
            (self.mode != Mode.offline or bool(self.teacher), "method.teacher=PATH is required with method.mode=offline"),
            (self.start_step >= 0 and self.sup_updates >= 0 and self.pl_updates >= 1,
             "method.start_step and method.sup_updates must be >= 0 and method.pl_updates >= 1"),
            (0.0 <= self.start_min_nonempty <= 1.0 and self.start_check_every >= 1,
             "method.start_min_nonempty must be in [0, 1] and method.start_check_every >= 1"),
            (self.cache_size >= 1, "method.cache_size must be >= 1"),
            (0.0 <= self.replace_prob <= 1.0, "method.replace_prob must be in [0, 1]"),
            (self.pl_dropout is None or 0.0 <= self.pl_dropout < 1.0, "method.pl_dropout must be in [0, 1) or null"),
            (self.label_batch_duration > 0, "method.label_batch_duration must be > 0 seconds"),
        ]


@dataclass
class LabelWindow:
    """Labelling statistics since the last log step (metrics only, not checkpointed)."""

    steps: int = 0
    passes: int = 0  # labelling passes (batches labelled)
    labelled: int = 0
    kept: int = 0
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (hidden reference, kept label)


class PseudoLabel(Method):
    name = "pseudo_label"
    config = PseudoLabelConfig

    def __init__(self, ctx: TrainContext):
        super().__init__(ctx)
        cfg, m = ctx.cfg, self.cfg
        self.params = [p for p in ctx.model.parameters() if p.requires_grad]
        self.optimizers["main"] = make_adamw(self.params, cfg.optim)
        self.schedulers["main"] = make_scheduler(self.optimizers["main"], cfg.optim, cfg.train.max_steps)
        self.tokenizer = ctx.labelled.dataset.tokenizer
        self.cache = PseudoLabelCache(m.cache_size, m.replace_prob, seed=cfg.train.seed * 1_000_003 + 17)
        self.drops = DropCounts()
        self.pl_update_count = 0
        self.window = LabelWindow()
        self.check_compute = 0.0  # the start checks' labelling passes, charged to the next step
        self.last_nonempty = float("nan")
        self.offline_stats: dict[str, float] = {}
        self._references: dict[str, str] | None = None
        self._cut_index: dict[str, Any] | None = None
        self._dropout_set = False
        self.pl_start: int | None = None  # the step pseudo-labelling started at (state: resume is exact)
        self.stream = self._offline_stream() if m.mode == Mode.offline else None

    # --- the step ------------------------------------------------------------------------------
    def step(self, step: int) -> StepOutput:
        m = self.cfg
        self.window.steps += 1
        if self.stream is not None:
            out = self._supervised(self.stream)
        elif self.pl_start is None and not self._ready(step):
            out = self._supervised(self.ctx.labelled)
        else:
            self._start_pseudo_labelling(step)
            if (step - self.pl_start) % (m.sup_updates + m.pl_updates) < m.sup_updates:
                out = self._supervised(self.ctx.labelled)
            elif distributed.agree_max(0.0 if self.cache.full() else 1.0):  # any rank still filling:
                out = self._fill()  # all fill, so no rank steps (all-reduces) while another does not
            else:
                out = self._pl_update()
        if (step + 1) % self.ctx.cfg.train.log_every == 0 or step + 1 == self.total_steps():
            out.values.update(self._log_stats())
        return out

    def _ready(self, step: int) -> bool:
        """Whether the warm-up is over at `step`: past start_step and, when asked, the model's own
        labels of one unlabelled batch are non-empty often enough (every rank agrees)."""
        m = self.cfg
        if step < m.start_step:
            return False
        if m.start_min_nonempty <= 0:
            return True
        if (step - m.start_step) % m.start_check_every:
            return False
        host = next(self.ctx.unlabelled())
        batch = host.to(self.ctx.device)
        tokens, _, _ = label_batch(self.ctx.model, batch.feats, batch.feat_lens, m.confidence, self.ctx.autocast)
        self.check_compute += FWD
        nonempty = sum(bool(self.tokenizer.decode(t).strip()) for t in tokens) / max(len(tokens), 1)
        self.last_nonempty = -distributed.agree_max(-nonempty)  # the least ready rank decides
        return self.last_nonempty >= m.start_min_nonempty

    def _start_pseudo_labelling(self, step: int) -> None:
        """Note the start step; set the pseudo-labelling dropout (again after a resume: dropout
        rates are not state)."""
        if self.pl_start is None:
            self.pl_start = step
        p = self.cfg.pl_dropout
        if p is not None and not self._dropout_set:
            self.ctx.model.encoder.set_dropout(p)
        self._dropout_set = True

    def _taken_check_compute(self) -> float:
        c, self.check_compute = self.check_compute, 0.0
        return c

    def _supervised(self, stream: BatchStream) -> StepOutput:
        host = next(stream)
        loss = supervised_loss(self.ctx, host.to(self.ctx.device))
        norm = self.update(loss, {"main": self.params})["main"]
        self.supervised_updates += 1
        return StepOutput(FWD_BWD + self._taken_check_compute(), host.seconds, {"grad_norm": norm},
                          {"loss_sup": loss.detach(), "lr": self.schedulers["main"].get_last_lr()[0]})

    def _fill(self) -> StepOutput:
        """A pseudo-labelled slot while the cache is filling: label one batch, no update."""
        host = next(self.ctx.unlabelled())
        entry = self._label(host)
        if entry is not None and not self.cache.full():  # full here, waiting for another rank
            self.cache.add(entry)
        self.schedulers["main"].step()  # the learning rate stays a function of the loop step
        return StepOutput(FWD, host.seconds, {}, {"pl_cache_size": float(len(self.cache)), "pl_filling": 1.0,
                                                   "lr": self.schedulers["main"].get_last_lr()[0]})

    def _pl_update(self) -> StepOutput:
        index = self.cache.draw()
        batch = self._cached_batch(self.cache.entries[index])
        loss = supervised_loss(self.ctx, batch.to(self.ctx.device))
        norm = self.update(loss, {"main": self.params})["main"]
        self.pl_update_count += 1
        compute = FWD_BWD
        if self.cache.should_replace():
            entry = self._label(next(self.ctx.unlabelled()))
            compute += FWD
            if entry is not None:  # a batch with no usable label leaves the old entry in place
                self.cache.replace(index, entry)
        return StepOutput(compute, batch.seconds, {"grad_norm": norm},
                          {"loss_pl": loss.detach(), "lr": self.schedulers["main"].get_last_lr()[0],
                           "pl_cache_size": float(len(self.cache))})

    # --- labelling -----------------------------------------------------------------------------
    def _label(self, host: Batch) -> CacheEntry | None:
        """Label an unlabelled batch with the current model; the kept labels, or None."""
        if len(host) == 0:
            return None
        m = self.cfg
        batch = host.to(self.ctx.device)
        tokens, confidence, frames = label_batch(self.ctx.model, batch.feats, batch.feat_lens, m.confidence,
                                                 self.ctx.autocast)
        kept = filter_labels(tokens, frames, confidence, m.confidence_threshold)
        ids = [u for u, k in zip(host.ids, kept.keep) if k]
        labels = [t for t, k in zip(tokens, kept.keep) if k]
        self._account(kept.drops, len(tokens), ids, labels)
        return CacheEntry.from_lists(ids, labels) if ids else None

    def _account(self, drops: DropCounts, labelled: int, ids: list[str], labels: list[list[int]]) -> None:
        self.drops.add(drops)
        self.window.passes += 1
        self.window.labelled += labelled
        self.window.kept += len(ids)
        refs = self.references()
        self.window.pairs += [(refs[u], self.tokenizer.decode(t)) for u, t in zip(ids, labels) if u in refs]

    def references(self) -> dict[str, str]:
        """Hidden transcripts of the unlabelled folders (empty when they have none): logging only."""
        if self._references is None:
            recipe = self.ctx.cfg.recipe
            self._references = {}
            for folder in recipe.unlabelled:
                self._references.update(read_transcripts(Path(recipe.corpus_dir) / folder))
        return self._references

    def _cached_batch(self, entry: CacheEntry) -> Batch:
        """A cache entry as a labelled batch: features re-read from the unlabelled manifest."""
        if self._cut_index is None:
            self._cut_index = {c.id: c for c in self.ctx.unlabelled().cuts}
        dataset: AsrDataset = self.ctx.unlabelled().dataset
        b = dataset[CutSet.from_cuts(self._cut_index[u] for u in entry.ids)]
        labels = entry.labels()
        padded = CacheEntry.from_lists(b.ids, [labels[u].tolist() for u in b.ids])
        return Batch(b.feats, b.feat_lens, padded.tokens, padded.token_lens, b.ids, [None] * len(b), b.skips)

    def _log_stats(self) -> dict[str, float]:
        w, out = self.window, dict(self.offline_stats)
        if self.stream is None:
            total = self.supervised_updates + self.pl_update_count
            out.update({"pl_updates": float(self.pl_update_count),
                        "pl_fraction": self.pl_update_count / max(total, 1),
                        "pl_relabel_rate": w.passes / max(w.steps, 1),
                        "pl_cache_size": float(len(self.cache)),
                        "pl_dropped_empty": float(self.drops.empty),
                        "pl_dropped_too_long": float(self.drops.too_long),
                        "pl_dropped_low_confidence": float(self.drops.low_confidence)})
            out["pl_started"] = float(self.pl_start is not None)
            if self.cfg.start_min_nonempty > 0 and self.pl_start is None:
                out["pl_start_nonempty"] = self.last_nonempty
            if w.labelled:
                out["pl_kept_fraction"] = w.kept / w.labelled
            if w.pairs:
                rates = error_rates([r for r, _ in w.pairs], [h for _, h in w.pairs])
                out["pl_wer"], out["pl_cer"] = rates["wer"], rates["cer"]
        self.window = LabelWindow()
        return out

    # --- offline mode --------------------------------------------------------------------------
    def _offline_stream(self) -> BatchStream:
        """Labelled + teacher-labelled cuts as one stream; the labels are made once per run folder."""
        m, labelled = self.cfg, self.ctx.labelled
        out_dir = Path(self.ctx.out_dir or self.ctx.cfg.run_dir)
        manifest, summary = out_dir / "pseudo_labels.jsonl.gz", out_dir / "pseudo_labels.json"
        settings = {"teacher": str(Path(m.teacher).resolve()), "confidence": m.confidence,
                    "confidence_threshold": m.confidence_threshold}
        stats = json.loads(summary.read_text()) if summary.is_file() and manifest.is_file() else {}
        if stats.get("settings") == settings:
            pseudo = load_cuts(manifest)
        else:
            pseudo, stats = self._label_offline()
            stats["settings"] = settings
            out_dir.mkdir(parents=True, exist_ok=True)
            pseudo.to_file(manifest)
            summary.write_text(json.dumps(stats, indent=1))
        self.offline_stats = {k: float(v) for k, v in stats.items() if isinstance(v, (int, float))}
        combined = CutSet.from_cuts([*labelled.cuts, *pseudo])
        return BatchStream(combined, labelled.dataset, labelled.max_duration, labelled.seed, labelled.num_buckets,
                           labelled.num_workers, pin_memory=labelled.pin_memory)

    def _label_offline(self) -> tuple[CutSet, dict[str, Any]]:
        from bljust.evaluate import load_model
        from bljust.tracking.checkpoint import load_checkpoint

        cfg, m, device = self.ctx.cfg, self.cfg, self.ctx.device
        teacher, tokenizer, cmvn, _ = load_model(load_checkpoint(m.teacher, device), device)
        if tokenizer.model_proto != self.tokenizer.model_proto:
            raise UserError(f"method.teacher={m.teacher}: its tokenizer differs from this recipe's "
                            "(train the teacher on the same recipe)")
        f = cfg.features
        dataset = AsrDataset(cmvn, None, f.sample_rate, f.num_mel_bins, f.max_utt_seconds)  # the teacher's CMVN
        unlabelled = self.ctx.unlabelled().cuts
        index = {c.id: c for c in unlabelled}
        kept_cuts, labelled = [], 0
        print(f"pseudo_label: labelling {len(index)} unlabelled utterances with {m.teacher}", flush=True)
        for batch in eval_batches(unlabelled, dataset, m.label_batch_duration):
            if len(batch) == 0:
                continue
            tokens, confidence, frames = label_batch(teacher, batch.feats.to(device), batch.feat_lens.to(device),
                                                     m.confidence, self.ctx.autocast)
            kept = filter_labels(tokens, frames, confidence, m.confidence_threshold)
            ids, labels = [], []
            for u, t, c, k in zip(batch.ids, tokens, confidence.tolist(), kept.keep):
                text = tokenizer.decode(t).strip() if k else ""
                if k and not text:  # only blanks and word separators: nothing to train on
                    kept.drops.empty += 1
                elif k:
                    cut = index[u]
                    sup = fastcopy(cut.supervisions[0], text=text, custom={"pl_confidence": c})
                    kept_cuts.append(fastcopy(cut, supervisions=[sup]))
                    ids.append(u)
                    labels.append(t)
            labelled += len(tokens)
            self._account(kept.drops, len(tokens), ids, labels)
        if not kept_cuts:
            raise UserError(f"method.teacher={m.teacher}: no pseudo-label survived the filter "
                            f"(method.confidence_threshold={m.confidence_threshold}; {self.drops})")
        stats: dict[str, Any] = {"pl_labelled": labelled, "pl_kept": len(kept_cuts),
                                 "pl_kept_fraction": len(kept_cuts) / max(labelled, 1),
                                 "pl_dropped_empty": self.drops.empty, "pl_dropped_too_long": self.drops.too_long,
                                 "pl_dropped_low_confidence": self.drops.low_confidence}
        if self.window.pairs:
            rates = error_rates([r for r, _ in self.window.pairs], [h for _, h in self.window.pairs])
            stats["pl_wer"], stats["pl_cer"] = rates["wer"], rates["cer"]
        print("pseudo_label: " + ", ".join(f"{k} {v:.4g}" for k, v in stats.items()), flush=True)
        self.window = LabelWindow()
        return CutSet.from_cuts(kept_cuts), stats

    # --- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {**super().state_dict(), "cache": self.cache.state_dict(), "pl_update_count": self.pl_update_count,
                 "pl_start": self.pl_start,
                 "drops": [self.drops.empty, self.drops.too_long, self.drops.low_confidence]}
        if self.stream is not None:
            state["stream"] = self.stream.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.cache.load_state_dict(state["cache"])
        self.pl_update_count = int(state["pl_update_count"])
        self.pl_start = state.get("pl_start")
        self.drops = DropCounts(*state["drops"])
        if self.stream is not None:
            self.stream.load_state_dict(state["stream"])

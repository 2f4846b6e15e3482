"""Batches from manifests: duration-bucketed sampling, features in DataLoader workers, resumable streams."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import torch
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler
from torch.utils.data import DataLoader

from bljust.data.audio import BadAudio, read_audio
from bljust.data.augment import CutAugment
from bljust.data.features import Cmvn, fbank
from bljust.data.manifests import cut_text
from bljust.data.skips import BadDataError, SkipLog
from bljust.data.tokenizer import Tokenizer


@dataclass
class Batch:
    """A padded batch. Unlabelled batches have empty `tokens`/`token_lens` and texts of None."""

    feats: torch.Tensor  # (B, T, D) CMVN-normalised fbank, zero-padded
    feat_lens: torch.Tensor  # (B,) int64
    tokens: torch.Tensor  # (B, L) int64, padded with 0 (blank), or (B, 0)
    token_lens: torch.Tensor  # (B,) int64
    ids: list[str]
    texts: list[str | None]
    skips: SkipLog = field(default_factory=SkipLog)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def seconds(self) -> float:
        """Seconds of audio in the batch (10 ms frames)."""
        return float(self.feat_lens.sum()) * 0.01

    def to(self, device: torch.device | str) -> "Batch":
        nb = torch.device(device).type == "cuda"
        return Batch(
            self.feats.to(device, non_blocking=nb), self.feat_lens.to(device, non_blocking=nb),
            self.tokens.to(device, non_blocking=nb), self.token_lens.to(device, non_blocking=nb),
            self.ids, self.texts, self.skips,
        )

    def pin_memory(self) -> "Batch":
        return Batch(self.feats.pin_memory(), self.feat_lens.pin_memory(), self.tokens.pin_memory(),
                     self.token_lens.pin_memory(), self.ids, self.texts, self.skips)


def pad_batch(feats: list[torch.Tensor], tokens: list[list[int]] | None) -> tuple[torch.Tensor, ...]:
    """Zero-pad a list of (T_i, D) features and optional token lists."""
    lens = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
    x = torch.zeros(len(feats), int(lens.max()) if len(feats) else 0, feats[0].shape[1] if feats else 80)
    for i, f in enumerate(feats):
        x[i, : f.shape[0]] = f
    if tokens is None:
        return x, lens, torch.zeros(len(feats), 0, dtype=torch.long), torch.zeros(len(feats), dtype=torch.long)
    tlens = torch.tensor([len(t) for t in tokens], dtype=torch.long)
    y = torch.zeros(len(tokens), int(tlens.max()) if tokens else 0, dtype=torch.long)
    for i, t in enumerate(tokens):
        y[i, : len(t)] = torch.tensor(t, dtype=torch.long)
    return x, lens, y, tlens


class AsrDataset(torch.utils.data.Dataset):
    """Turns a CutSet (one sampler batch) into a Batch; runs in DataLoader workers.

    A cut whose audio is unusable or whose text cannot be encoded is dropped from the batch and
    recorded in `batch.skips`; the training loop adds these up.
    """

    def __init__(self, cmvn: Cmvn, tokenizer: Tokenizer | None, sample_rate: int = 16000,
                 num_mel_bins: int = 80, max_seconds: float = 30.0, scoring: bool = False,
                 low_rate: str = "upsample", augment: CutAugment | None = None):
        self.cmvn = cmvn
        self.tokenizer = tokenizer  # None: unlabelled batches, text never read
        # scoring (with tokenizer=None): read every reference, encodable or not; dropping utterances
        # with rare characters from a test set would flatter the WER
        self.scoring = scoring
        self.sample_rate = sample_rate
        self.num_mel_bins = num_mel_bins
        self.max_seconds = max_seconds
        self.low_rate = low_rate  # features.low_rate; prepare already dropped refused files from the manifests
        self.augment = augment  # lhotse cut transforms (data/augment.py), supervised batches only

    def __getitem__(self, cuts: CutSet) -> Batch:
        skips = SkipLog()
        kept: list[tuple[str, str | None, torch.Tensor]] = []  # (id, text, wave) of the usable cuts
        for cut in cuts:
            text = cut_text(cut) if self.tokenizer is not None or self.scoring else None
            if self.tokenizer is not None:
                if not text:
                    skips.add("empty_transcript", cut.id)
                    continue
                if self.tokenizer.unknown_fraction(text) > 0:
                    skips.add("unknown_characters", cut.id)
                    continue
            try:
                wave = read_audio(cut.recording.sources[0].source, self.sample_rate, self.max_seconds, self.low_rate,
                                  cut.channel)
            except BadAudio as err:
                skips.add(err.reason, str(err))
                continue
            kept.append((cut.id, text, wave))
        if self.augment is not None and kept:
            waves = self.augment([(i, w) for i, _, w in kept])
            kept = [(i, text, w) for (i, text, _), w in zip(kept, waves)]
        feats, tokens, ids, texts = [], [], [], []
        for cut_id, text, wave in kept:
            f = fbank(wave, self.num_mel_bins, self.sample_rate)
            if f.shape[0] < 8:  # under ~80 ms gives no 40 ms encoder frame worth training on
                skips.add("too_short_audio", cut_id)
                continue
            feats.append(self.cmvn(f))
            ids.append(cut_id)
            texts.append(text)
            if self.tokenizer is not None:
                tokens.append(self.tokenizer.encode(text))
        x, lens, y, tlens = pad_batch(feats, tokens if self.tokenizer is not None else None)
        return Batch(x, lens, y, tlens, ids, texts, skips)


class _SkipFirst(torch.utils.data.Sampler):
    """Iterates a sampler's epoch from batch `skip` on: exact resume without reading skipped audio."""

    def __init__(self, sampler: DynamicBucketingSampler, skip: int):
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        for i, cuts in enumerate(self.sampler):
            if i >= self.skip:
                yield cuts


class BatchStream:
    """An endless, resumable stream of batches over epochs of a duration-bucketed sampler.

    Position is (epoch, batches consumed in the epoch); the sampler's shuffle is seeded by
    (seed, epoch), so restoring the position replays exactly the batches an uninterrupted run
    would have seen.
    """

    def __init__(self, cuts: CutSet, dataset: AsrDataset, max_duration: float, seed: int,
                 num_buckets: int = 10, num_workers: int = 0, shuffle: bool = True,
                 world_size: int = 1, rank: int = 0, pin_memory: bool = False):
        self.cuts, self.dataset = cuts, dataset
        self.max_duration, self.seed, self.num_buckets = max_duration, seed, num_buckets
        self.num_workers, self.shuffle, self.pin_memory = num_workers, shuffle, pin_memory
        self.world_size, self.rank = world_size, rank
        self.epoch, self.batch_in_epoch = 0, 0
        self.skips = SkipLog()  # the whole run
        self.epoch_skips, self.epoch_used = SkipLog(), 0  # the epoch so far
        # (epoch, utterances used, skips) of finished epochs the trainer has not reported yet
        self.finished_epochs: list[tuple[int, int, SkipLog]] = []
        self._it: Iterator[Batch] | None = None
        self.wait_seconds = 0.0  # time the consumer spent blocked on the loader (its workers behind)

    def _sampler(self) -> DynamicBucketingSampler:
        sampler = DynamicBucketingSampler(
            # lhotse refuses more buckets than cuts; a small company set may have fewer than 10
            self.cuts, max_duration=self.max_duration, num_buckets=min(self.num_buckets, len(self.cuts)),
            shuffle=self.shuffle, seed=self.seed, drop_last=False,
            world_size=self.world_size, rank=self.rank,
        )
        sampler.set_epoch(self.epoch)
        return sampler

    def _start(self) -> None:
        # Its own generator: a DataLoader iterator otherwise draws its worker seed from the global
        # RNG, and a resumed run (which starts an iterator mid-epoch) would shift every later
        # random draw (dropout, SpecAugment, masking) against an uninterrupted run.
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        loader = DataLoader(
            self.dataset, sampler=_SkipFirst(self._sampler(), self.batch_in_epoch), batch_size=None,
            num_workers=self.num_workers, pin_memory=self.pin_memory, generator=generator,
            persistent_workers=False, prefetch_factor=4 if self.num_workers else None,
        )
        self._it = iter(loader)

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> Batch:
        """The next batch with at least one usable utterance (a batch of only bad files is passed
        over, its skips counted)."""
        boundaries = 0
        while True:
            waited = time.perf_counter()
            if self._it is None:
                self._start()  # an epoch's workers start here: part of the wait
            try:
                batch = next(self._it)
            except StopIteration:
                self._it = None
                if self.epoch_used == 0 and self.batch_in_epoch > 0 and boundaries == 1:
                    raise BadDataError(f"no usable utterance in a whole epoch ({self.epoch_skips.summary()})")
                self.finished_epochs.append((self.epoch, self.epoch_used, self.epoch_skips))
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                self.epoch_skips, self.epoch_used = SkipLog(), 0
                boundaries += 1
                if boundaries > 2:
                    raise RuntimeError("the sampler yielded no batch for a whole epoch: is the manifest empty?")
                continue
            finally:
                self.wait_seconds += time.perf_counter() - waited
            self.batch_in_epoch += 1
            self.skips.update(batch.skips)
            self.epoch_skips.update(batch.skips)
            self.epoch_used += len(batch)
            if len(batch):
                return batch

    def batches_per_epoch(self) -> int:
        """Batches in the current epoch, counted from the sampler alone (no audio is read)."""
        return sum(1 for _ in self._sampler())

    def state_dict(self) -> dict:
        # Skip counts travel with the position, so a resumed run reports the same totals.
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "skips": self.skips.state_dict(),
                "epoch_skips": self.epoch_skips.state_dict(), "epoch_used": self.epoch_used}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.batch_in_epoch = int(state["epoch"]), int(state["batch_in_epoch"])
        self.skips, self.epoch_skips = SkipLog.from_state(state.get("skips")), SkipLog.from_state(state.get("epoch_skips"))
        self.epoch_used = int(state.get("epoch_used", 0))
        self.finished_epochs = []
        self._it = None


def scoring_view(dataset: AsrDataset) -> AsrDataset:
    """The same feature pipeline, keeping every utterance's reference and encoding none."""
    return AsrDataset(dataset.cmvn, None, dataset.sample_rate, dataset.num_mel_bins, dataset.max_seconds, scoring=True,
                      low_rate=dataset.low_rate)


def eval_batches(cuts: CutSet, dataset: AsrDataset, max_duration: float, num_workers: int = 0) -> DataLoader:
    """One ordered pass over a CutSet for evaluation (no shuffling, every utterance once)."""
    from lhotse.dataset import SimpleCutSampler

    sampler = SimpleCutSampler(cuts, max_duration=max_duration, shuffle=False)
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers)

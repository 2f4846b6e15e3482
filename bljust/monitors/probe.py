"""The probe set: a fixed, seeded subsample of (unlabelled) utterances whose embeddings the monitors read.

Chosen once per run from a manifest, so every monitor pass sees exactly the same audio and the
values are comparable across steps and across runs that share the manifest and seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from lhotse import CutSet

from bljust.data.dataset import AsrDataset


def select_probe_cuts(cuts: CutSet, hours: float, seed: int) -> CutSet:
    """Utterances in a seeded random order, taken until `hours` of audio.

    Sorted by id before shuffling, so the choice depends on the manifest's content, not its order.
    """
    items = sorted(cuts, key=lambda c: c.id)
    random.Random(seed).shuffle(items)
    chosen, seconds = [], 0.0
    for cut in items:
        if seconds >= hours * 3600:
            break
        chosen.append(cut)
        seconds += cut.duration
    return CutSet.from_cuts(chosen)


def subsample_indices(n: int, k: int, seed: int) -> torch.Tensor:
    """A fixed, sorted subset of k of range(n) (all of them when n <= k)."""
    if n <= k:
        return torch.arange(n)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator)[:k].sort().values


@dataclass
class ProbeSet:
    """The probe audio as padded feature batches, kept in memory for the whole run."""

    batches: list[tuple[torch.Tensor, torch.Tensor]]  # (B, T, F) CMVN fbank, (B,) frame counts
    utterances: int
    seconds: float


def load_probe(cuts: CutSet, dataset: AsrDataset, batch_duration: float) -> ProbeSet:
    """Features of every probe utterance, packed shortest first into batches of <= batch_duration s.

    Unusable audio is skipped by the dataset (as in training) and simply not probed.
    """
    ordered = sorted(cuts, key=lambda c: (c.duration, c.id))
    groups: list[list] = [[]]
    for cut in ordered:
        if groups[-1] and sum(c.duration for c in groups[-1]) + cut.duration > batch_duration:
            groups.append([])
        groups[-1].append(cut)
    batches, utterances, seconds = [], 0, 0.0
    for group in groups:
        if not group:
            continue
        batch = dataset[CutSet.from_cuts(group)]
        if len(batch) == 0:
            continue
        batches.append((batch.feats, batch.feat_lens))
        utterances += len(batch)
        seconds += batch.seconds
    return ProbeSet(batches, utterances, seconds)

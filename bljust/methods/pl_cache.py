"""slimIPL's dynamic cache of pseudo-labelled batches.

The cache holds up to `capacity` batches, each with the labels the model gave it when it entered.
A pseudo-labelled update trains on a batch drawn uniformly from the cache; afterwards, with
probability `replace_prob`, that slot is handed a freshly labelled batch. So a label is used
about 1 / replace_prob times, and was made by a model at most a few hundred updates old: the
cache smooths the feedback loop of a model training on its own output.

An entry keeps utterance ids and token ids, not features: features are re-read from the manifest
when the entry is used, so the cache (and a checkpoint holding it) stays small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from bljust.errors import UserError


@dataclass
class CacheEntry:
    """One pseudo-labelled batch: utterance ids and their labels."""

    ids: list[str]
    tokens: torch.Tensor  # (B, L) int64, padded with 0 (blank)
    token_lens: torch.Tensor  # (B,) int64

    @classmethod
    def from_lists(cls, ids: list[str], labels: list[list[int]]) -> "CacheEntry":
        assert ids and len(ids) == len(labels)
        lens = torch.tensor([len(t) for t in labels], dtype=torch.long)
        tokens = torch.zeros(len(labels), int(lens.max()), dtype=torch.long)
        for i, t in enumerate(labels):
            tokens[i, : len(t)] = torch.tensor(t, dtype=torch.long)
        return cls(list(ids), tokens, lens)

    def labels(self) -> dict[str, torch.Tensor]:
        """Utterance id -> its (L_i,) token ids."""
        return {u: self.tokens[i, : self.token_lens[i]] for i, u in enumerate(self.ids)}


class PseudoLabelCache:
    """Fixed-capacity cache with random draws and probabilistic replacement (seeded, resumable)."""

    def __init__(self, capacity: int, replace_prob: float, seed: int):
        assert capacity >= 1 and 0.0 <= replace_prob <= 1.0
        self.capacity, self.replace_prob = capacity, replace_prob
        self.entries: list[CacheEntry] = []
        self.generator = torch.Generator().manual_seed(seed)
        self.replacements = 0

    def __len__(self) -> int:
        return len(self.entries)

    def full(self) -> bool:
        return len(self.entries) >= self.capacity

    def add(self, entry: CacheEntry) -> None:
        """Fill an empty slot (only while the cache is not full)."""
        assert not self.full(), "the cache is full: entries are only replaced from now on"
        self.entries.append(entry)

    def draw(self) -> int:
        """Index of a uniformly drawn entry."""
        assert self.entries, "draw from an empty cache"
        return int(torch.randint(len(self.entries), (1,), generator=self.generator))

    def should_replace(self) -> bool:
        """One Bernoulli(replace_prob) draw: whether the entry just used makes room for a new one."""
        return bool(torch.rand((), generator=self.generator) < self.replace_prob)

    def replace(self, index: int, entry: CacheEntry) -> None:
        self.entries[index] = entry
        self.replacements += 1

    def state_dict(self) -> dict[str, Any]:
        """Only tensors, lists of strings and ints: loads with torch.load(weights_only=True)."""
        return {
            "ids": [e.ids for e in self.entries],
            "tokens": [e.tokens for e in self.entries],
            "token_lens": [e.token_lens for e in self.entries],
            "generator": self.generator.get_state(),
            "replacements": self.replacements,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.entries = [CacheEntry(list(i), t, n) for i, t, n in zip(state["ids"], state["tokens"], state["token_lens"])]
        if len(self.entries) > self.capacity:
            raise UserError(f"method.cache_size={self.capacity} is smaller than the resumed cache "
                            f"({len(self.entries)} batches): resume with the size the run started with")
        self.generator.set_state(state["generator"])
        self.replacements = int(state["replacements"])

"""Waveform augmentation of supervised batches through lhotse's cut transforms.

Speed perturbation (Kaldi's 0.9/1.0/1.1), additive noise from recordings the user names, and
reverberation with lhotse's synthetic room impulse responses: the transforms icefall and NeMo use,
applied to each batch in the data workers before the fbank, so SpecAugment still comes after.
The audio is the one our reader decoded and resampled to the model's rate (data/audio.py: every
codec and rate it accepts), handed to lhotse as in-memory recordings, so lhotse never opens a file
and telephone speech mixes with noise recorded at any rate. The draws come from a generator seeded
by the batch's cut ids: a batch is augmented the same way in a resumed run, whatever the workers.
"""

from __future__ import annotations

import io
import random
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from lhotse import CutSet, Recording
from lhotse.dataset.cut_transforms import CutMix, PerturbSpeed, ReverbWithImpulseResponse

from bljust.data.audio import BadAudio, read_audio
from bljust.data.manifests import AUDIO_SUFFIXES, load_cuts
from bljust.errors import UserError


class AugmentError(UserError, ValueError):
    """Noise for augmentation that cannot be used; the message names the entry."""


def memory_cut(cut_id: str, wave: torch.Tensor, sample_rate: int):
    """A lhotse cut over samples held in memory (32-bit float WAV bytes: lossless)."""
    buf = io.BytesIO()
    sf.write(buf, wave.numpy(), sample_rate, format="WAV", subtype="FLOAT")
    return Recording.from_bytes(buf.getvalue(), recording_id=cut_id).to_cut()


def noise_cuts(entries: list[str], sample_rate: int) -> CutSet:
    """Every recording in the noise folders or manifests, read once, as in-memory cuts at `sample_rate`."""
    paths: list[Path] = []
    for entry in entries:
        path = Path(entry)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise AugmentError(f"augment.noise: {path}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in it")
            paths += found
        elif path.is_file():
            paths += [Path(c.recording.sources[0].source) for c in load_cuts(path)]
        else:
            raise AugmentError(f"augment.noise: {path}: no such folder or manifest")
    cuts = []
    for p in paths:
        try:
            cuts.append(memory_cut(f"noise-{len(cuts)}-{p.stem}", read_audio(p, sample_rate), sample_rate))
        except BadAudio as err:
            raise AugmentError(f"augment.noise: {err}") from None
    return CutSet.from_cuts(cuts)


class CutAugment:
    """The configured transforms in a fixed order (speed, noise, reverberation); each cut drawn apart."""

    def __init__(self, speed_factors: list[float], speed_prob: float, noise: CutSet | None, noise_prob: float,
                 noise_snr_db: tuple[float, float], reverb_prob: float, sample_rate: int, seed: int = 0):
        self.speed_factors, self.speed_prob = list(speed_factors), speed_prob
        self.noise, self.noise_prob, self.noise_snr_db = noise, noise_prob, tuple(noise_snr_db)
        self.reverb_prob, self.sample_rate, self.seed = reverb_prob, sample_rate, seed

    @classmethod
    def from_config(cls, cfg: Any, sample_rate: int) -> "CutAugment | None":
        """None when every probability is 0 (the default: no augmentation)."""
        if not (cfg.speed_prob or cfg.noise_prob or cfg.reverb_prob):
            return None
        noise = noise_cuts(list(cfg.noise), sample_rate) if cfg.noise_prob else None
        return cls(list(cfg.speed_factors), cfg.speed_prob, noise, cfg.noise_prob, tuple(cfg.noise_snr_db),
                   cfg.reverb_prob, sample_rate, cfg.seed)

    def transform(self, cuts: CutSet) -> CutSet:
        """lhotse's transforms over a batch of cuts, the draws seeded by their ids."""
        rng = random.Random(self.seed * 1_000_003 + zlib.crc32(",".join(c.id for c in cuts).encode()))
        if self.speed_prob:
            cuts = PerturbSpeed(self.speed_factors, self.speed_prob, randgen=rng, preserve_id=True)(cuts)
        if self.noise_prob and self.noise is not None:
            cuts = CutMix(self.noise, self.noise_snr_db, self.noise_prob, pad_to_longest=False, preserve_id=True,
                          seed=rng)(cuts)
        if self.reverb_prob:
            cuts = ReverbWithImpulseResponse(None, self.reverb_prob, randgen=rng, preserve_id=True)(cuts)
        return cuts

    def __call__(self, waves: list[tuple[str, torch.Tensor]]) -> list[torch.Tensor]:
        """(id, samples at the model's rate) of a batch -> its augmented samples, in order."""
        cuts = self.transform(CutSet.from_cuts(memory_cut(i, w, self.sample_rate) for i, w in waves))
        return [torch.from_numpy(np.ascontiguousarray(c.load_audio()[0], dtype=np.float32)) for c in cuts]

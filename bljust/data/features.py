"""Log-mel filterbank features, resampling, SpecAugment's masks and global mean/variance
normalisation (CMVN); also torchaudio's Conformer, the peer tools/bench_peer.py times ours against.

This is the only module that imports torchaudio: it is frozen upstream (2.11 is its last line),
so moving to another signal-processing library is a change to this file alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as AF
import torchaudio.transforms as T

FRAME_SHIFT_S = 0.010  # 10 ms hop: the encoder's x4 subsampling makes 40 ms frames


def fbank(wave: torch.Tensor, num_mel_bins: int = 80, sample_rate: int = 16000) -> torch.Tensor:
    """Kaldi-compatible log-mel filterbank of a 1-D waveform: (T, num_mel_bins), 25 ms / 10 ms.

    Waveforms shorter than one 25 ms window give zero frames.
    """
    if wave.numel() < int(0.025 * sample_rate):
        return torch.zeros(0, num_mel_bins)
    # kaldi.fbank expects 16-bit scale; dither 0 keeps features deterministic.
    return kaldi.fbank(
        wave.unsqueeze(0) * 32768.0,
        num_mel_bins=num_mel_bins,
        sample_frequency=sample_rate,
        frame_length=25.0,
        frame_shift=FRAME_SHIFT_S * 1000,
        dither=0.0,
        energy_floor=0.0,
    )


def resample(wave: torch.Tensor, rate_in: int, rate_out: int) -> torch.Tensor:
    """A waveform (..., samples) at `rate_in` Hz resampled to `rate_out` Hz (windowed sinc)."""
    return wave if rate_in == rate_out else AF.resample(wave, rate_in, rate_out)


def frequency_mask(max_width: int) -> torch.nn.Module:
    """SpecAugment frequency mask on (B, D, T) features, drawn per utterance; masked bins are 0."""
    return T.FrequencyMasking(max_width, iid_masks=True)


def time_mask(max_width: int, max_fraction: float) -> torch.nn.Module:
    """SpecAugment time mask on (B, D, T) features, at most `max_fraction` of each utterance."""
    return T.TimeMasking(max_width, iid_masks=True, p=max_fraction)


def num_frames(num_samples: int, sample_rate: int = 16000) -> int:
    """Number of fbank frames for a waveform length (Kaldi snip_edges=True)."""
    window, shift = int(0.025 * sample_rate), int(FRAME_SHIFT_S * sample_rate)
    return 0 if num_samples < window else 1 + (num_samples - window) // shift


def torchaudio_conformer(input_dim: int, num_heads: int, ffn_dim: int, num_layers: int,
                         depthwise_conv_kernel_size: int, dropout: float) -> torch.nn.Module:
    """torchaudio.models.Conformer with these settings (BatchNorm in the conv module, attention
    before convolution: torchaudio's defaults), for tools/bench_peer.py. It is built here, not in
    the tool, because this module is the only one that imports torchaudio; imported on first call,
    so feature extraction does not load torchaudio.models."""
    from torchaudio.models import Conformer

    return Conformer(input_dim=input_dim, num_heads=num_heads, ffn_dim=ffn_dim, num_layers=num_layers,
                     depthwise_conv_kernel_size=depthwise_conv_kernel_size, dropout=dropout)


@dataclass
class Cmvn:
    """Global per-dimension mean and standard deviation, computed once by `prepare`."""

    mean: torch.Tensor  # (D,)
    std: torch.Tensor  # (D,)

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        """Normalise (..., D) features."""
        return (feats - self.mean) / self.std

    @classmethod
    def from_features(cls, chunks: list[torch.Tensor], floor: float = 1e-5) -> "Cmvn":
        """Statistics over all frames of a list of (T_i, D) feature matrices (float64 sums)."""
        total = sum(c.shape[0] for c in chunks)
        if total == 0:
            raise ValueError("cannot compute CMVN statistics from zero frames")
        s = sum(c.double().sum(0) for c in chunks)
        sq = sum((c.double() ** 2).sum(0) for c in chunks)
        mean = s / total
        var = (sq / total - mean**2).clamp_min(floor**2)
        return cls(mean.float(), var.sqrt().float())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> "Cmvn":
        return cls(state["mean"].float(), state["std"].float())

    def save(self, path: Path) -> None:
        torch.save(self.state_dict(), path)

    @classmethod
    def load(cls, path: Path) -> "Cmvn":
        return cls.from_state_dict(torch.load(path, weights_only=True))

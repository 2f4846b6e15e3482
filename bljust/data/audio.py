"""Reading audio files: soundfile in, mono float32 at the model's sample rate out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from bljust.config import ConfigError, LowRate
from bljust.data.features import resample

# features.low_rate (what happens to audio recorded below features.sample_rate), as plain strings:
# a checkpoint's features travel as a dict, so transcribe passes the value unvalidated
LOW_RATE_CHOICES = tuple(m.value for m in LowRate)


class BadAudio(ValueError):
    """An audio file that cannot be used; the message names the file and the reason.

    `reason` is the short key the skip counts use (missing_audio, unreadable_audio, ...).
    """

    def __init__(self, message: str, reason: str = "bad_audio"):
        super().__init__(message)
        self.reason = reason


def lowest_rate(sample_rate: int, low_rate: str) -> int:
    """The lowest sample rate accepted under `features.low_rate`: any (0) when low rates are upsampled."""
    if low_rate not in LOW_RATE_CHOICES:
        raise ConfigError(f"features.low_rate={low_rate!r}: expected one of {', '.join(LOW_RATE_CHOICES)}")
    return sample_rate if low_rate == LowRate.refuse else 0


def check_header(path: Path, frames: int, rate: int, channels: int, min_rate: int,
                  max_seconds: float | None, channel: int | list[int] | None = None) -> None:
    """The checks that need only the header, done before any sample is decoded; `min_rate` is
    the lowest sample rate accepted (0: any, see `lowest_rate`); `channel` one (or a list of
    channels) that must exist."""
    if isinstance(channel, list):
        channel = max(channel)
    if channel is not None and channel >= channels:
        raise BadAudio(f"{path}: has {channels} channel{'s' if channels > 1 else ''}, channel {channel} "
                       "asked (channels count from 0)", "missing_channel")
    if rate < min_rate:
        raise BadAudio(f"{path}: sample rate {rate} Hz is below the model's {min_rate} Hz "
                       "(features.low_rate=refuse; upsample to accept it)", "low_sample_rate")
    if frames == 0:
        raise BadAudio(f"{path}: zero-length audio", "empty_audio")
    if max_seconds is not None and frames / rate > max_seconds:
        raise BadAudio(f"{path}: {frames / rate:.1f} s is longer than the {max_seconds:.0f} s limit", "too_long_audio")


def select_channel(data: np.ndarray, channel: int | list[int] | None) -> np.ndarray:
    """(frames, channels) samples -> one contiguous channel: `channel`, the mean of a list of
    them, or the mean of all (None)."""
    if isinstance(channel, int):
        return np.ascontiguousarray(data[:, channel])
    return np.ascontiguousarray((data if channel is None else data[:, channel]).mean(axis=1, dtype=np.float32))


def read_audio(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = None,
               low_rate: str = "upsample", channel: int | list[int] | None = None) -> torch.Tensor:
    """Read a file as a 1-D float32 tensor at `sample_rate`, resampling if needed.

    `channel`: the channel to read (0 = first), a list of channels to average, or None to average
    all of them (the downmix; a mono file is read as it is). Manifests carry the choice per
    utterance (a lhotse cut's `channel`), made from features.channels when they were built, so
    the reader itself never guesses. Audio recorded below
    `sample_rate` (8 kHz telephone audio, most of a call centre's data) is upsampled: its mel
    bins above the recording's Nyquist frequency stay empty, but the speech band is intact.
    low_rate="refuse" skips such files instead, for corpora where a low rate means a wrong file.
    Raises BadAudio for missing, unreadable, truncated, refused low-rate, empty or over-long files
    and for a channel the file does not have.
    """
    path = Path(path)
    if not path.is_file():
        raise BadAudio(f"{path}: file not found", "missing_audio")
    try:
        with sf.SoundFile(str(path)) as f:
            check_header(path, f.frames, f.samplerate, f.channels, lowest_rate(sample_rate, low_rate), max_seconds,
                         channel)
            expected, rate = f.frames, f.samplerate
            # frames given: libsndfile cannot seek in some codecs (GSM 06.10 WAV) and then refuses "read all"
            data = f.read(frames=expected, dtype="float32", always_2d=True)
    except BadAudio:
        raise
    except Exception as err:  # soundfile raises several types for corrupt/non-audio data
        raise BadAudio(f"{path}: not readable audio ({str(err).splitlines()[0]})", "unreadable_audio") from None
    if data.shape[0] < expected:  # the header promises more: a copy cut short
        raise BadAudio(f"{path}: truncated ({data.shape[0]} of {expected} samples)", "truncated_audio")
    if not np.isfinite(data).all():
        raise BadAudio(f"{path}: audio holds NaN or inf samples", "nonfinite_audio")
    wave = torch.from_numpy(select_channel(data, channel))
    return resample(wave, rate, sample_rate)

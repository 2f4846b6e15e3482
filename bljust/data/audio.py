"""Reading audio files: soundfile in, mono float32 at the model's sample rate out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from bljust.data.features import resample


class BadAudio(ValueError):
    """An audio file that cannot be used; the message names the file and the reason.

    `reason` is the short key the skip counts use (missing_audio, unreadable_audio, ...).
    """

    def __init__(self, message: str, reason: str = "bad_audio"):
        super().__init__(message)
        self.reason = reason


def check_header(path: Path, frames: int, rate: int, channels: int, sample_rate: int,
                  max_seconds: float | None) -> None:
    """The checks that need only the header, done before any sample is decoded."""
    if channels != 1:
        raise BadAudio(f"{path}: expected mono audio, got {channels} channels", "multichannel_audio")
    if rate < sample_rate:
        raise BadAudio(f"{path}: sample rate {rate} Hz is below the model's {sample_rate} Hz", "low_sample_rate")
    if frames == 0:
        raise BadAudio(f"{path}: zero-length audio", "empty_audio")
    if max_seconds is not None and frames / rate > max_seconds:
        raise BadAudio(f"{path}: {frames / rate:.1f} s is longer than the {max_seconds:.0f} s limit", "too_long_audio")


def read_audio(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = None) -> torch.Tensor:
    """Read a file as a 1-D float32 tensor at `sample_rate`, resampling down if needed.

    Multi-channel audio is refused rather than silently mixed down: a stereo file in a speech
    corpus usually means a wrong file, and a downmix would hide it. So is audio recorded below
    `sample_rate`: upsampling leaves the upper band empty, features the model never saw in
    training (8 kHz telephone audio in a 16 kHz corpus is a data error, not a format detail).
    Raises BadAudio for missing, unreadable, truncated, multi-channel, low-rate, empty or
    over-long files.
    """
    path = Path(path)
    if not path.is_file():
        raise BadAudio(f"{path}: file not found", "missing_audio")
    try:
        with sf.SoundFile(str(path)) as f:
            check_header(path, f.frames, f.samplerate, f.channels, sample_rate, max_seconds)
            expected, rate = f.frames, f.samplerate
            data = f.read(dtype="float32", always_2d=True)
    except BadAudio:
        raise
    except Exception as err:  # soundfile raises several types for corrupt/non-audio data
        raise BadAudio(f"{path}: not readable audio ({str(err).splitlines()[0]})", "unreadable_audio") from None
    if data.shape[0] < expected:  # the header promises more: a copy cut short
        raise BadAudio(f"{path}: truncated ({data.shape[0]} of {expected} samples)", "truncated_audio")
    if not np.isfinite(data).all():
        raise BadAudio(f"{path}: audio holds NaN or inf samples", "nonfinite_audio")
    wave = torch.from_numpy(np.ascontiguousarray(data[:, 0]))
    return resample(wave, rate, sample_rate)

"""Reading audio files: soundfile in, mono float32 at the model's sample rate out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF


class BadAudio(ValueError):
    """An audio file that cannot be used; the message names the file and the reason."""


def read_audio(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = None) -> torch.Tensor:
    """Read a file as a 1-D float32 tensor at `sample_rate`, resampling if needed.

    Multi-channel audio is refused rather than silently mixed down: a stereo file in a speech
    corpus usually means a wrong file, and a downmix would hide it.
    Raises BadAudio for missing, unreadable, multi-channel, empty or over-long files.
    """
    path = Path(path)
    if not path.is_file():
        raise BadAudio(f"{path}: file not found")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for corrupt/non-audio data
        raise BadAudio(f"{path}: not readable audio ({str(err).splitlines()[0]})") from None
    if data.shape[1] != 1:
        raise BadAudio(f"{path}: expected mono audio, got {data.shape[1]} channels")
    if data.shape[0] == 0:
        raise BadAudio(f"{path}: zero-length audio")
    if max_seconds is not None and data.shape[0] / rate > max_seconds:
        raise BadAudio(f"{path}: {data.shape[0] / rate:.1f} s is longer than the {max_seconds:.0f} s limit")
    if not np.isfinite(data).all():
        raise BadAudio(f"{path}: audio holds NaN or inf samples")
    wave = torch.from_numpy(np.ascontiguousarray(data[:, 0]))
    if rate != sample_rate:
        wave = AF.resample(wave, rate, sample_rate)
    return wave

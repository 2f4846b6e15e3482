"""Audio reading, filterbank features, CMVN and SpecAugment."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from bljust.config import SpecAugmentConfig
from bljust.data.audio import BadAudio, read_audio
from bljust.data.features import Cmvn, fbank, num_frames
from bljust.data.specaug import SpecAugment


def tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_fbank_shape_and_frame_rate():
    wave = torch.from_numpy(tone(1.0, 16000))
    f = fbank(wave)
    # 25 ms window, 10 ms hop, snip edges: 1 + (16000 - 400) // 160 = 98 frames
    assert f.shape == (98, 80) == (num_frames(16000), 80)
    assert torch.isfinite(f).all()
    assert fbank(torch.zeros(100)).shape == (0, 80)


@pytest.mark.parametrize("rate", [22050, 44100])
def test_read_audio_resamples_to_16k(tmp_path, rate):
    path = tmp_path / "a.flac"
    sf.write(path, tone(1.5, rate), rate)
    wave = read_audio(path)
    assert wave.dtype == torch.float32 and wave.ndim == 1
    assert abs(wave.numel() - 24000) <= 2
    # the 440 Hz tone survives resampling: its spectral peak is at 440 Hz
    spectrum = torch.fft.rfft(wave).abs()
    assert abs(int(spectrum.argmax()) * 16000 / wave.numel() - 440) < 2


def test_read_audio_refuses_a_lower_rate_only_when_told(tmp_path):
    """features.low_rate=refuse keeps the old behaviour; the default upsampling is in test_telephone_audio.py."""
    sf.write(tmp_path / "a.flac", tone(1.5, 8000), 8000)
    with pytest.raises(BadAudio, match="sample rate 8000 Hz is below the model's 16000 Hz"):
        read_audio(tmp_path / "a.flac", low_rate="refuse")
    assert abs(read_audio(tmp_path / "a.flac").numel() - 24000) <= 2


def test_read_audio_refuses_missing_and_non_audio(tmp_path):
    with pytest.raises(BadAudio, match="not found"):
        read_audio(tmp_path / "nope.flac")
    (tmp_path / "x.flac").write_text("not audio")
    with pytest.raises(BadAudio, match="not readable audio"):
        read_audio(tmp_path / "x.flac")


def test_cmvn_matches_numpy_and_normalises():
    g = torch.Generator().manual_seed(0)
    chunks = [torch.randn(n, 80, generator=g) * 3 + 5 for n in (50, 120, 7)]
    cmvn = Cmvn.from_features(chunks)
    allf = torch.cat(chunks).numpy().astype(np.float64)
    np.testing.assert_allclose(cmvn.mean.numpy(), allf.mean(0), rtol=1e-5)
    np.testing.assert_allclose(cmvn.std.numpy(), allf.std(0), rtol=1e-4)
    normed = cmvn(torch.cat(chunks))
    assert normed.mean(0).abs().max() < 1e-4 and (normed.std(0, unbiased=False) - 1).abs().max() < 1e-4


def test_specaugment_masks_in_training_only():
    aug = SpecAugment(SpecAugmentConfig(freq_masks=2, freq_mask_width=20, time_masks=2, time_mask_width=20,
                                        time_mask_max_frac=0.2))
    x = torch.randn(4, 200, 80) + 10  # no natural zeros
    torch.manual_seed(1)
    y = aug.train()(x)
    assert y.shape == x.shape and (y == 0).any() and ((y == 0) | (y == x)).all()
    assert torch.equal(aug.eval()(x), x)
    assert torch.equal(SpecAugment(SpecAugmentConfig(enabled=False)).train()(x), x)

"""A wav2vec2-style waveform front end, the baseline our fbank + x4 subsampling is measured against.

Fast-HuBERT (Yang et al. 2023) attributes most of its speed-up to feeding filterbanks at 40 ms
instead of running wav2vec2/HuBERT's CNN on the raw waveform at 20 ms. `waveform_encoder` builds
the same Conformer blocks behind that CNN so tools/bench_frontend.py can compare the two. It is
not wired into training: the data pipeline delivers fbank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bljust.config import ModelConfig
from bljust.models.conformer import ConformerEncoder

# wav2vec2 base / HuBERT base feature extractor: (channels, kernel, stride) per conv layer.
# Receptive field 400 samples (25 ms), hop 320 samples (20 ms) at 16 kHz.
WAV2VEC2_CONV = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2


def conv_output_lengths(lens: torch.Tensor, layers: tuple[tuple[int, int, int], ...] = WAV2VEC2_CONV) -> torch.Tensor:
    """Valid output frames of unpadded convolutions for (B,) input lengths: per layer floor((L-k)/s)+1.

    Inputs shorter than the receptive field give 0 frames.
    """
    for _, k, s in layers:
        lens = torch.div(lens - k, s, rounding_mode="floor") + 1
    return lens.clamp_min(0)


class WaveformFeatureExtractor(nn.Module):
    """(B, samples) 16 kHz waveform, (B,) sample counts -> (B, frames, d_model) 20 ms frames, (B,) frame counts.

    wav2vec2 base's conv stack: bias-free convolutions with GELU, group norm (one group per
    channel) after the first, then layer norm and a linear projection to the encoder width.
    """

    def __init__(self, d_model: int, layers: tuple[tuple[int, int, int], ...] = WAV2VEC2_CONV):
        super().__init__()
        self.layers = layers
        convs, in_ch = [], 1
        for ch, k, s in layers:
            convs.append(nn.Conv1d(in_ch, ch, k, stride=s, bias=False))
            in_ch = ch
        self.convs = nn.ModuleList(convs)
        self.first_norm = nn.GroupNorm(layers[0][0], layers[0][0])
        self.norm = nn.LayerNorm(in_ch)
        self.proj = nn.Linear(in_ch, d_model)

    def _first_norm(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Group norm over each utterance's valid frames only.

        wav2vec2 normalises over the whole padded length, so its output depends on how much padding
        the batch gave an utterance; per-utterance statistics keep valid frames padding-invariant
        (every later layer is a valid convolution or per-frame, so they stay that way).
        """
        out = torch.zeros_like(x)
        for i, n in enumerate(lens.tolist()):
            if n > 0:
                out[i, :, :n] = F.group_norm(x[i : i + 1, :, :n], self.first_norm.num_groups,
                                             self.first_norm.weight, self.first_norm.bias, self.first_norm.eps)[0]
        return out

    def forward(self, wave: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = wave.unsqueeze(1)  # (B, 1, samples)
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i == 0:
                x = self._first_norm(x, conv_output_lengths(lens, self.layers[:1]))
            x = F.gelu(x)
        x = self.proj(self.norm(x.transpose(1, 2)))  # (B, frames, d_model)
        return x, conv_output_lengths(lens, self.layers)


def waveform_encoder(cfg: ModelConfig) -> ConformerEncoder:
    """The encoder of `cfg` (same Conformer blocks) fed by the waveform CNN instead of fbank + x4 subsampling.

    forward(wave (B, samples), sample counts (B,)) -> ((B, frames, d_model), (B,)) at 20 ms.
    """
    return ConformerEncoder(cfg, frontend=WaveformFeatureExtractor(cfg.d_model))

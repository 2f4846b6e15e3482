"""The wav2vec2-style waveform front end used by tools/bench_frontend.py: length arithmetic, padding, gradients."""

from __future__ import annotations

import torch

from bljust.config import ModelConfig
from bljust.models.conformer import ConformerEncoder
from bljust.models.frontends import WaveformFeatureExtractor, conv_output_lengths, waveform_encoder


def closed_form_frames(samples: int) -> int:
    """wav2vec2's stack as one window: 400-sample receptive field, 320-sample (20 ms) hop."""
    return 0 if samples < 400 else (samples - 400) // 320 + 1


def test_frame_count_matches_the_formula_for_random_lengths():
    lens = torch.cat([torch.randint(0, 50_000, (200,)), torch.tensor([0, 399, 400, 719, 720, 16_000])])
    assert conv_output_lengths(lens).tolist() == [closed_form_frames(n) for n in lens.tolist()]
    fe = WaveformFeatureExtractor(d_model=16).eval()
    with torch.no_grad():
        for n in torch.randint(400, 6_000, (4,)).tolist() + [400, 719, 720]:
            y, out_lens = fe(torch.randn(1, n), torch.tensor([n]))
            assert y.shape == (1, closed_form_frames(n), 16) and out_lens.tolist() == [closed_form_frames(n)]


def test_padding_does_not_change_valid_frames_in_eval_mode():
    enc = waveform_encoder(ModelConfig()).eval()
    lens = torch.tensor([4_000, 1_500, 2_777])
    waves = [torch.randn(n) * 0.1 for n in lens.tolist()]
    batch = torch.zeros(3, int(lens.max()))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
    with torch.no_grad():
        y, out_lens = enc(batch, lens)
        assert y.shape[1] == closed_form_frames(4_000) and out_lens.tolist() == [closed_form_frames(n) for n in lens.tolist()]
        for i, w in enumerate(waves):
            alone, n = enc(w[None], lens[i : i + 1])
            assert alone.shape[1] == n.item() == out_lens[i].item()
            torch.testing.assert_close(y[i, : out_lens[i]], alone[0], atol=2e-5, rtol=1e-4)


def test_same_conformer_blocks_and_gradient_reaches_every_parameter():
    cfg = ModelConfig(num_layers=2)
    enc = waveform_encoder(cfg)
    fbank_enc = ConformerEncoder(cfg)
    # Everything after the front end is the fbank encoder's code and shapes.
    assert [k for k in enc.state_dict() if not k.startswith("subsample.")] == \
        [k for k in fbank_enc.state_dict() if not k.startswith("subsample.")]
    lens = torch.tensor([2_000, 1_300])
    y, out_lens = enc(torch.randn(2, 2_000) * 0.1, lens)
    mask = torch.arange(y.shape[1])[None, :] < out_lens[:, None]
    (y * mask[..., None]).pow(2).mean().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name

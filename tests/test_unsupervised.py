"""BEST-RQ quantiser, span masking, masked-frame loss and InfoNCE against independent references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bljust.config import BestRQConfig, InfoNCEConfig
from bljust.objectives.bestrq import BestRQ, RandomProjectionQuantizer, code_perplexity, utterance_normalize
from bljust.objectives.infonce import InfoNCE, info_nce
from bljust.objectives.masking import mask_features, span_mask, stack_frames

CFG = BestRQConfig(codebook_size=64, num_codebooks=2, codebook_dim=16, seed=7)


def test_quantizer_is_frozen_and_saved():
    q = RandomProjectionQuantizer(80, CFG)
    assert list(q.parameters()) == []  # nothing an optimiser could update
    assert {"projection", "codebooks"} <= set(q.state_dict())
    obj = BestRQ(80, 32, CFG)
    before = {k: v.clone() for k, v in obj.quantizer.state_dict().items()}
    encoder = _LinearEncoder()
    opt = torch.optim.AdamW(list(obj.parameters()) + list(encoder.parameters()), lr=0.1)
    feats = torch.randn(2, 40, 80)
    for _ in range(3):
        loss, _ = obj(encoder, feats, torch.tensor([40, 33]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(torch.equal(before[k], v) for k, v in obj.quantizer.state_dict().items())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in obj.quantizer.buffers())


def test_codebooks_are_unit_norm_and_targets_deterministic():
    a, b = RandomProjectionQuantizer(80, CFG), RandomProjectionQuantizer(80, CFG)
    assert torch.allclose(a.codebooks.norm(dim=-1), torch.ones(2, 64))
    feats = torch.randn(3, 50, 80)
    assert torch.equal(a(feats), b(feats))  # same seed, same targets (resume, other ranks)
    assert a(feats).shape == (3, 13, 2)  # ceil(50 / 4) frames, one code per codebook
    other = RandomProjectionQuantizer(80, BestRQConfig(codebook_size=64, num_codebooks=2, seed=8))
    assert not torch.equal(a(feats), other(feats))


def test_normalisation_is_over_the_feature_axis():
    # Brute force: per frame and codebook, project, L2-normalise that 16-dim vector, take the
    # codeword at the smallest Euclidean distance. Normalising over time or batch (a bug seen in a
    # public implementation) would change the answer.
    q = RandomProjectionQuantizer(80, CFG)
    feats = torch.randn(2, 12, 80) * torch.linspace(0.1, 5, 12)[None, :, None]  # frame scales differ
    stacked = stack_frames(feats)
    expected = torch.empty(2, 3, 2, dtype=torch.long)
    for b in range(2):
        for t in range(3):
            for n in range(2):
                z = stacked[b, t] @ q.projection[n]
                z = z / z.norm()
                expected[b, t, n] = torch.cdist(z[None], q.codebooks[n])[0].argmin()
    assert torch.equal(q(feats), expected)
    # scaling one frame must not change its code (per-frame normalisation), nor other frames' codes
    scaled = feats.clone()
    scaled[:, :4] *= 10
    assert torch.equal(q(scaled), q(feats))


def test_utterance_target_norm_ignores_padding_and_speaker_offsets():
    cfg = BestRQConfig(codebook_size=64, num_codebooks=2, seed=7, target_norm="utterance")
    q = RandomProjectionQuantizer(80, cfg)
    feats = torch.randn(2, 40, 80)
    lens = torch.tensor([40, 24])
    normed = utterance_normalize(feats, lens)
    ref = feats[1, :24]
    assert torch.allclose(normed[1, :24], (ref - ref.mean(0)) / (ref.var(0, unbiased=False) + 1e-5).sqrt(), atol=1e-5)
    # a per-utterance offset and gain on every feature (a "speaker" or channel) leaves the codes alone
    shifted = feats * 3.0 + torch.randn(1, 1, 80)
    assert torch.equal(q(shifted, lens)[1, :6], q(feats, lens)[1, :6])
    # padding content does not leak into the valid frames' codes
    padded = feats.clone()
    padded[1, 24:] = 100.0
    assert torch.equal(q(padded, lens)[1, :6], q(feats, lens)[1, :6])


@pytest.mark.parametrize("prob,span", [(0.01, 10), (0.05, 5), (0.2, 2)])
def test_masking_hits_the_configured_fraction(prob, span):
    g = torch.Generator().manual_seed(0)
    lens = torch.full((400,), 500)
    mask = span_mask(lens, 500, prob, span, g)
    expected = 1 - (1 - prob) ** span  # a frame is masked unless none of the `span` starts before it fired
    assert mask.float().mean().item() == pytest.approx(expected, rel=0.05)


def test_masking_respects_lengths_and_replaces_with_noise():
    g = torch.Generator().manual_seed(0)
    feats = torch.full((2, 80, 80), 7.0)
    lens = torch.tensor([80, 40])
    masked, mask = mask_features(feats, lens, prob=0.3, span_ms=120, noise_std=0.1, generator=g)
    assert mask.shape == (2, 20) and not mask[1, 10:].any()
    frame_mask = mask.repeat_interleave(4, dim=1)
    assert torch.equal(masked[~frame_mask], feats[~frame_mask])
    noise = masked[frame_mask]
    assert noise.abs().max() < 1.0 and noise.std().item() == pytest.approx(0.1, rel=0.2)


class _LinearEncoder(torch.nn.Module):
    """Stands in for the Conformer: stacks 4 frames and projects (same 40 ms frame rate)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(320, 32)

    def forward(self, feats, lens):
        return self.lin(stack_frames(feats)), (lens + 3) // 4


def test_loss_ignores_unmasked_frames():
    obj = BestRQ(80, 32, BestRQConfig(codebook_size=64, mask_prob=0.1, mask_span_ms=120, seed=1))
    feats, lens = torch.randn(2, 80, 80), torch.tensor([80, 60])
    base = _LinearEncoder()
    torch.manual_seed(3)
    loss_a, stats = obj(base, feats, lens)
    torch.manual_seed(3)  # same mask draw
    _, mask = mask_features(feats, lens, 0.1, 120, 0.1)

    class Perturbed(torch.nn.Module):
        def forward(self, f, l):
            h, out = base(f, l)
            return h + (~mask)[..., None] * 100.0, out  # change every unmasked frame's output

    torch.manual_seed(3)
    loss_b, _ = obj(Perturbed(), feats, lens)
    assert mask.any() and (~mask).any()
    assert loss_a.item() == pytest.approx(loss_b.item(), abs=1e-6)
    assert 0 < stats["mask_fraction"] < 1


def test_code_perplexity_bounds():
    assert code_perplexity(torch.zeros(100, 1, dtype=torch.long), 8).item() == pytest.approx(1.0)
    assert code_perplexity(torch.arange(8).repeat(10)[:, None], 8).item() == pytest.approx(8.0)


def test_info_nce_equals_brute_force_loop():
    g = torch.Generator().manual_seed(0)
    q, k, temp = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g), 0.3
    total = 0.0
    for i in range(5):
        sims = [F.cosine_similarity(q[i], k[j], dim=0).item() / temp for j in range(5)]
        total += -(sims[i] - math.log(sum(math.exp(s) for s in sims)))
    assert info_nce(q, k, temp).item() == pytest.approx(total / 5, rel=1e-5)


def test_infonce_objective_trains_through_the_encoder():
    obj = InfoNCE(80, 32, InfoNCEConfig(proj_dim=16, mask_prob=0.2, mask_span_ms=80))
    enc = _LinearEncoder()
    loss, stats = obj(enc, torch.randn(3, 64, 80), torch.tensor([64, 64, 50]))
    loss.backward()
    assert torch.isfinite(loss) and enc.lin.weight.grad.abs().sum() > 0 and stats["mask_fraction"] > 0

"""BEST-RQ masked prediction (Chiu et al. 2022): targets from a frozen random-projection quantiser.

Targets come from the *normalised input features*: 4 consecutive 10 ms frames are stacked so that
each target lines up with one 40 ms encoder frame, projected by a frozen Xavier matrix, L2-normalised
over the feature axis, and matched to the nearest entry of a frozen, L2-normalised, standard-normal
codebook. The quantiser has no trainable parameters; it is seeded and kept in the checkpoint as
buffers, so it is identical across resume and DDP ranks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bljust.config import BestRQConfig
from bljust.models.conformer import padding_mask
from bljust.objectives.masking import STACK, mask_features, stack_frames


class RandomProjectionQuantizer(nn.Module):
    """Frozen projection + codebooks; maps stacked features to code indices, one per codebook."""

    def __init__(self, input_dim: int, cfg: BestRQConfig):
        super().__init__()
        if cfg.target_norm not in ("global", "utterance"):
            raise ValueError(f"objective.bestrq.target_norm must be global or utterance, not {cfg.target_norm!r}")
        self.target_norm = cfg.target_norm
        g = torch.Generator().manual_seed(cfg.seed)
        proj = torch.empty(cfg.num_codebooks, input_dim * STACK, cfg.codebook_dim)
        for i in range(cfg.num_codebooks):
            bound = (6.0 / (proj.shape[1] + proj.shape[2])) ** 0.5  # Xavier-uniform
            proj[i].uniform_(-bound, bound, generator=g)
        codebooks = torch.randn(cfg.num_codebooks, cfg.codebook_size, cfg.codebook_dim, generator=g)
        # Buffers, not parameters: no optimiser can touch them and they travel in state_dict.
        self.register_buffer("projection", proj)
        self.register_buffer("codebooks", F.normalize(codebooks, dim=-1))

    @torch.no_grad()
    def forward(self, feats: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, D) normalised fbank -> (B, ceil(T/4), num_codebooks) int64 codes."""
        feats = feats.float()
        if self.target_norm == "utterance":
            feats = utterance_normalize(feats, lens)
        x = stack_frames(feats)  # (B, T', 4D)
        z = torch.einsum("btf,nfc->btnc", x, self.projection)  # (B, T', N, C)
        z = F.normalize(z, dim=-1)  # over the projected feature axis, per frame and codebook
        # For unit vectors the nearest codeword by L2 distance is the one with the largest dot product.
        return torch.einsum("btnc,nkc->btnk", z, self.codebooks).argmax(-1)


def utterance_normalize(feats: torch.Tensor, lens: torch.Tensor | None) -> torch.Tensor:
    """Zero mean, unit variance per utterance and feature over its valid frames (padding ignored)."""
    if lens is None:
        lens = torch.full((feats.shape[0],), feats.shape[1], device=feats.device)
    valid = (torch.arange(feats.shape[1], device=feats.device)[None] < lens[:, None]).unsqueeze(-1)
    n = valid.sum(1, keepdim=True).clamp_min(1)
    mean = (feats * valid).sum(1, keepdim=True) / n
    var = (((feats - mean) * valid) ** 2).sum(1, keepdim=True) / n
    return (feats - mean) / (var + 1e-5).sqrt() * valid


def code_perplexity(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """exp(entropy) of the code histogram, averaged over codebooks: 1 = collapse, K = uniform use."""
    n = codes.shape[-1]
    flat = codes.reshape(-1, n)
    ppl = []
    for i in range(n):
        p = torch.bincount(flat[:, i], minlength=codebook_size).float()
        p = p / p.sum().clamp_min(1)
        ppl.append(torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()))
    return torch.stack(ppl).mean()


class BestRQ(nn.Module):
    """The unsupervised objective: masks the input, predicts the codes of masked frames."""

    def __init__(self, input_dim: int, d_model: int, cfg: BestRQConfig):
        super().__init__()
        self.cfg = cfg
        self.quantizer = RandomProjectionQuantizer(input_dim, cfg)
        self.heads = nn.ModuleList(nn.Linear(d_model, cfg.codebook_size) for _ in range(cfg.num_codebooks))

    def forward(self, encoder: nn.Module, feats: torch.Tensor, lens: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss on an unlabelled batch, with the masked fraction and target perplexity to log."""
        targets = self.quantizer(feats, lens)  # from the clean input
        masked, mask = mask_features(feats, lens, self.cfg.mask_prob, self.cfg.mask_span_ms, self.cfg.noise_std)
        h, out_lens = encoder(masked, lens)
        # Heads run on masked frames only: unmasked frames cannot affect the loss, and with
        # 8192-way heads this is most of the objective's cost saved.
        selected = h[mask]  # (M, D)
        if selected.shape[0] == 0:
            loss = h.sum() * 0.0  # nothing masked in this batch; keeps the graph
        else:
            logits = torch.stack([head(selected) for head in self.heads], dim=1)  # (M, N, K)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets[mask].flatten())
        valid = padding_mask(out_lens, h.shape[1])
        stats = {
            "mask_fraction": mask.sum() / valid.sum().clamp_min(1),
            "code_perplexity": code_perplexity(targets[valid], self.cfg.codebook_size),
        }
        return loss, stats

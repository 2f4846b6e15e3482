"""InfoNCE (CPC / wav2vec 2.0 style) masked contrastive objective, behind the same interface as BEST-RQ.

The encoder sees masked input; at each masked 40 ms frame its projected output must pick out the
projected *clean* stacked input of the same frame among all masked frames of the batch (in-batch
negatives), by cosine similarity over a temperature. BL-JUST's authors used a CPC-style InfoNCE
lower level; this is its filterbank counterpart, for fidelity experiments.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bljust.config import InfoNCEConfig
from bljust.models.conformer import padding_mask
from bljust.objectives.masking import STACK, mask_features, stack_frames


def info_nce(queries: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over i of -log softmax_j(cos(q_i, k_j) / T)[i]. queries, keys: (M, C)."""
    sim = F.normalize(queries.float(), dim=-1) @ F.normalize(keys.float(), dim=-1).T / temperature
    return F.cross_entropy(sim, torch.arange(sim.shape[0], device=sim.device))


class InfoNCE(nn.Module):
    def __init__(self, input_dim: int, d_model: int, cfg: InfoNCEConfig):
        super().__init__()
        self.cfg = cfg
        self.query = nn.Linear(d_model, cfg.proj_dim)
        self.key = nn.Linear(input_dim * STACK, cfg.proj_dim)

    def forward(self, encoder: nn.Module, feats: torch.Tensor, lens: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        masked, mask = mask_features(feats, lens, self.cfg.mask_prob, self.cfg.mask_span_ms, self.cfg.noise_std)
        h, out_lens = encoder(masked, lens)
        targets = stack_frames(feats)
        if mask.sum() < 2:  # a contrast needs at least one negative
            return h.sum() * 0.0, {"mask_fraction": mask.float().mean()}
        loss = info_nce(self.query(h[mask]), self.key(targets[mask]), self.cfg.temperature)
        valid = padding_mask(out_lens, h.shape[1])
        return loss, {"mask_fraction": mask.sum() / valid.sum().clamp_min(1)}

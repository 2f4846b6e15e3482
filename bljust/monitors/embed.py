"""Frame embeddings of one encoder layer over the probe set, in eval mode and without gradients."""

from __future__ import annotations

import torch

from bljust.models.asr import AsrModel
from bljust.models.conformer import padding_mask
from bljust.monitors.probe import ProbeSet


@torch.no_grad()
def embed_frames(model: AsrModel, probe: ProbeSet, layer: int, device: torch.device) -> torch.Tensor:
    """(N, D) float32 on the CPU: every real (unpadded) 40 ms frame of block `layer` (1-based;
    0 = the last block), probe batches in order.

    The model's train/eval mode is restored afterwards, so the training step after a monitor
    pass sees the model as it left it; dropout is off while probing, so no RNG is drawn.
    """
    was_training = model.training
    model.eval()
    try:
        out = []
        for feats, lens in probe.batches:
            h, out_lens = model.encoder(feats.to(device), lens.to(device), return_layer=layer or None)
            out.append(h[padding_mask(out_lens, h.shape[1])].float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.encoder.d_model)

"""Training objectives: supervised CTC and the pluggable unsupervised loss L_u."""

from torch import nn


def build_unsupervised(cfg) -> nn.Module:
    """The configured L_u as a module `(encoder, feats, lens) -> (loss, stats)`, heads included."""
    from bljust.objectives.bestrq import BestRQ
    from bljust.objectives.infonce import InfoNCE

    d_in, d_model = cfg.model.input_dim, cfg.model.d_model
    if cfg.objective.unsup == "bestrq":
        return BestRQ(d_in, d_model, cfg.objective.bestrq)
    return InfoNCE(d_in, d_model, cfg.objective.infonce)

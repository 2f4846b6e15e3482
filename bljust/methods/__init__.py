"""Training methods: each says what one step does; the trainer owns the loop."""

from bljust.methods.base import Method, TrainContext
from bljust.methods.bljust import BLJust
from bljust.methods.just import Just
from bljust.methods.ptft import Ptft
from bljust.methods.pseudo_label import PseudoLabel
from bljust.methods.supervised import Supervised

METHODS: dict[str, type[Method]] = {"supervised": Supervised, "ptft": Ptft, "just": Just, "bljust": BLJust,
                                 "pseudo_label": PseudoLabel}


def build_method(ctx: TrainContext) -> Method:
    return METHODS[ctx.cfg.method.name](ctx)

"""init_from=PATH: start a run from another run's checkpoint (any method), e.g. to fine-tune a
LibriSpeech model on a company's own labelled data.

The checkpoint's weights only make sense with its input normalisation and its token ids, so both
come along: its CMVN statistics always, and its tokenizer whenever it can spell every labelled
transcript of the new run (then the CTC head carries over too). Otherwise the run keeps its own
tokenizer and starts a fresh CTC head: loading a head whose ids mean other characters would be
silently wrong even when the sizes match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from omegaconf import OmegaConf
from torch import nn

from bljust.data.features import Cmvn
from bljust.data.tokenizer import Tokenizer
from bljust.errors import UserError
from bljust.tracking.checkpoint import load_checkpoint

SHAPE_KEYS = ("input_dim", "subsampling_channels", "d_model", "num_layers", "num_heads", "ff_mult", "conv_kernel")


@dataclass
class WarmStart:
    """What a run takes from the checkpoint it starts from."""

    path: str
    state: dict[str, Any]  # model state_dict
    tokenizer: Tokenizer
    cmvn: Cmvn
    keep_head: bool  # the checkpoint's tokenizer spells every labelled transcript

    def load_into(self, model: nn.Module) -> None:
        """Copy the encoder (and the CTC head when the tokenizer carried over) into `model`."""
        own = model.state_dict()
        take = {k: v for k, v in self.state.items()
                if k in own and own[k].shape == v.shape and (self.keep_head or not k.startswith("ctc_head."))}
        model.load_state_dict(take, strict=False)
        head = "with its CTC head" if self.keep_head else "fresh CTC head (new tokenizer)"
        print(f"init_from: loaded {len(take)}/{len(own)} tensors from {self.path}, {head}")


def warm_start(path: str, model_cfg: Any, labelled_texts: Iterable[str]) -> WarmStart:
    """Read `path` and decide what carries over; a model shape mismatch is one clear error."""
    ckpt = load_checkpoint(path)
    theirs = ckpt["config"]["model"]
    ours = OmegaConf.to_container(model_cfg, resolve=True) if not isinstance(model_cfg, dict) else model_cfg
    differ = [k for k in SHAPE_KEYS if theirs.get(k) != ours.get(k)]
    if differ:
        raise UserError(f"init_from={path}: the checkpoint is model={theirs.get('name')} but this run builds "
                        f"model={ours.get('name')} ({', '.join(f'{k} {theirs.get(k)} vs {ours.get(k)}' for k in differ)}); "
                        f"add model={theirs.get('name')}")
    tokenizer = Tokenizer.from_tensor(ckpt["tokenizer"])
    keep_head = all(tokenizer.unknown_fraction(t) == 0 for t in labelled_texts if t)
    return WarmStart(str(path), ckpt["model"], tokenizer, Cmvn.from_state_dict(ckpt["cmvn"]), keep_head)

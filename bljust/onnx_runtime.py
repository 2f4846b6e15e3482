"""An exported model (python -m bljust.export) run by onnxruntime, in place of the PyTorch model.

The .onnx file carries everything inference needs besides the graph, in its metadata: the
checkpoint's config, its tokenizer and its CMVN statistics. Features are computed by bljust's own
code (bljust.data.features, as in training), so a served model sees exactly what it was trained on.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bljust.data.features import Cmvn
from bljust.data.tokenizer import Tokenizer
from bljust.errors import UserError

ONNX_MISSING = "ONNX export and inference need onnx and onnxruntime: pip install bljust[export]"
META_CONFIG, META_TOKENIZER, META_CMVN = "bljust.config", "bljust.tokenizer", "bljust.cmvn"


class OnnxError(UserError, ValueError):
    """An .onnx file that cannot be used, or onnxruntime missing; the message names it."""


def metadata(cfg: dict[str, Any], tokenizer: Tokenizer, cmvn: Cmvn) -> dict[str, str]:
    """The metadata entries an exported model carries (all strings, as ONNX requires)."""
    return {
        META_CONFIG: json.dumps(cfg),
        META_TOKENIZER: base64.b64encode(tokenizer.model_proto).decode("ascii"),
        META_CMVN: json.dumps({"mean": cmvn.mean.tolist(), "std": cmvn.std.tolist()}),
    }


class OnnxAsrModel:
    """Callable like AsrModel in eval mode: (B, T, F) CMVN-normalised fbank, (B,) lengths ->
    CTC logits (B, T', V), lengths (B,), as torch tensors on the CPU."""

    training = False  # inference only: evaluate's loop switches PyTorch models to eval and back

    def __init__(self, path: str | Path, threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError:
            raise OnnxError(ONNX_MISSING) from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default (one per core)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own types for unreadable or invalid models
            raise OnnxError(f"{path}: not a loadable ONNX model ({str(err).splitlines()[0]})") from None
        self.meta = self.session.get_modelmeta().custom_metadata_map
        if not {META_CONFIG, META_TOKENIZER, META_CMVN} <= set(self.meta):
            raise OnnxError(f"{path}: no bljust metadata (export it with python -m bljust.export)")

    def eval(self) -> "OnnxAsrModel":
        return self

    def train(self, mode: bool = True) -> "OnnxAsrModel":
        return self

    def __call__(self, feats: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, out_lens = self.session.run(None, {"feats": feats.detach().cpu().float().numpy(),
                                                   "feat_lens": lens.detach().cpu().to(torch.int64).numpy()})
        return torch.from_numpy(logits), torch.from_numpy(np.asarray(out_lens))


def load_onnx(path: str | Path, threads: int = 0) -> tuple[OnnxAsrModel, Tokenizer, Cmvn, dict]:
    """Model, tokenizer, CMVN and config of an exported model, as evaluate.load_model gives them."""
    if not Path(path).is_file():
        raise OnnxError(f"{path}: file not found")
    model = OnnxAsrModel(path, threads)
    stats = json.loads(model.meta[META_CMVN])
    cmvn = Cmvn(torch.tensor(stats["mean"]), torch.tensor(stats["std"]))
    tokenizer = Tokenizer(base64.b64decode(model.meta[META_TOKENIZER]))
    return model, tokenizer, cmvn, json.loads(model.meta[META_CONFIG])

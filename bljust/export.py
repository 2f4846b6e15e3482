"""Export a checkpoint's encoder and CTC head to ONNX, for serving without PyTorch.

    python -m bljust.export ckpt=runs/demo/supervised/seed0/checkpoints/best.pt out=model.onnx

The graph takes CMVN-normalised log-mel features `feats` (B, T, num_mel_bins) float32 and their
lengths `feat_lens` (B,) int64, batch and time dynamic, and returns CTC logits `logits`
(B, ceil(T/4), V) and `out_lens` (B,). The file's metadata holds the tokenizer, the CMVN
statistics and the config, so `evaluate ckpt=model.onnx` and `transcribe ckpt=model.onnx` compute
the features with bljust's own code, as in training, and run the graph with onnxruntime. After
writing, the export is checked against PyTorch on random features of two lengths.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from pathlib import Path

import torch

from bljust.onnx_runtime import ONNX_MISSING, OnnxError, load_onnx, metadata

KEYS = {
    "ckpt": "checkpoint to export (required)",
    "out": "the .onnx file to write (required)",
    "opset": "ONNX opset version (default 18)",
}
MIN_FRAMES = 9  # the x4 subsampling needs a few 10 ms frames; shorter inputs give no output frame
CHECK_ATOL = 1e-3  # float32 logits of a graph rewritten by the exporter differ by ~1e-5 from eager


@contextlib.contextmanager
def _quiet(logger: str):
    """Silence a logger below errors (torch.onnx logs every optional op it could not register)."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def export_model(ckpt_path: str | Path, out: str | Path, opset: int = 18) -> Path:
    """Write `out` from the checkpoint and check it against PyTorch; returns `out`."""
    from bljust.evaluate import load_model
    from bljust.tracking.checkpoint import load_checkpoint

    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError:
        raise OnnxError(ONNX_MISSING) from None
    model, tokenizer, cmvn, cfg = load_model(load_checkpoint(str(ckpt_path)), torch.device("cpu"))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    dims = cfg["model"]["input_dim"]
    batch, time = torch.export.Dim("batch"), torch.export.Dim("time", min=MIN_FRAMES)
    example = (torch.randn(2, 200, dims), torch.tensor([200, 150]))
    with warnings.catch_warnings(), _quiet("torch.onnx"):
        warnings.simplefilter("ignore")  # the exporter's deprecation and axis-renaming notes
        torch.onnx.export(model, example, str(out), input_names=["feats", "feat_lens"],
                          output_names=["logits", "out_lens"], dynamic_shapes={"feats": {0: batch, 1: time},
                                                                              "lens": {0: batch}},
                          dynamo=True, opset_version=opset, verbose=False)
    proto = onnx.load(str(out))
    onnx.helper.set_model_props(proto, metadata(cfg, tokenizer, cmvn))
    onnx.save(proto, str(out))
    check_export(model, out, dims)
    return out


@torch.no_grad()
def check_export(model: torch.nn.Module, path: Path, dims: int) -> float:
    """Largest difference of the ONNX logits from PyTorch's on real frames, for a batch whose
    shapes differ from the example's; raises when it is not within CHECK_ATOL."""
    onnx_model = load_onnx(path)[0]
    g = torch.Generator().manual_seed(0)
    feats, lens = torch.randn(3, 333, dims, generator=g), torch.tensor([333, 120, MIN_FRAMES])
    ref, ref_lens = model(feats, lens)
    got, got_lens = onnx_model(feats, lens)
    mask = torch.arange(ref.shape[1])[None, :] < ref_lens[:, None]
    diff = float((got - ref).abs()[mask].max())
    if not torch.equal(got_lens, ref_lens) or diff > CHECK_ATOL:
        raise OnnxError(f"{path}: exported graph differs from PyTorch (logits by {diff:.2e})")
    return diff


def main(argv: list[str] | None = None) -> None:
    from bljust.cli import fail, parse_command
    from bljust.errors import UserError

    try:
        kv, rest = parse_command(sys.argv[1:] if argv is None else argv, __doc__, KEYS)
        if rest or "ckpt" not in kv or "out" not in kv:
            raise UserError("usage: python -m bljust.export ckpt=PATH out=model.onnx [opset=18] (--help for the keys)")
        try:
            opset = int(kv.get("opset", "18"))
        except ValueError:
            raise UserError(f"opset={kv['opset']!r}: expected an integer") from None
        out = export_model(kv["ckpt"], kv["out"], opset)
        print(f"export: {out} ({out.stat().st_size / 2**20:.1f} MB), checked against PyTorch")
    except UserError as err:
        fail(err)


if __name__ == "__main__":
    main()

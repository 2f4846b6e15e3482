"""ONNX export (python -m bljust.export): onnxruntime gives PyTorch's greedy transcripts on the
demo test set, for any batch size and length, with features computed by bljust's own code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bljust.evaluate import load_model
from bljust.onnx_runtime import OnnxError, load_onnx
from bljust.tracking.checkpoint import load_checkpoint

pytestmark = pytest.mark.train  # the shared checkpoint trains two steps


@pytest.fixture(scope="module")
def exported(small_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    r = subprocess.run([sys.executable, "-m", "bljust.export", f"ckpt={small_checkpoint}", f"out={out}"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"export: {out} (") and "checked against PyTorch" in r.stdout
    return out


def test_the_graph_has_dynamic_batch_and_time_and_carries_what_inference_needs(exported, small_checkpoint):
    model, tokenizer, cmvn, cfg = load_onnx(exported)
    feats, lens = model.session.get_inputs()
    assert (feats.name, lens.name) == ("feats", "feat_lens")
    assert isinstance(feats.shape[0], str) and isinstance(feats.shape[1], str) and feats.shape[2] == 80
    ckpt = load_checkpoint(small_checkpoint)
    assert cfg == ckpt["config"] and tokenizer.model_proto == bytes(ckpt["tokenizer"].numpy().tobytes())
    assert torch.equal(cmvn.mean, ckpt["cmvn"]["mean"]) and torch.equal(cmvn.std, ckpt["cmvn"]["std"])


def test_onnxruntime_matches_pytorch_for_any_batch_and_length(exported, small_checkpoint):
    eager = load_model(load_checkpoint(small_checkpoint), torch.device("cpu"))[0]
    onnx = load_onnx(exported)[0]
    g = torch.Generator().manual_seed(1)
    for batch, frames in ((1, 9), (1, 1234), (5, 401)):
        feats = torch.randn(batch, frames, 80, generator=g)
        lens = torch.randint(9, frames + 1, (batch,), generator=g)
        lens[0] = frames
        with torch.no_grad():
            ref, ref_lens = eager(feats, lens)
        got, got_lens = onnx(feats, lens)
        assert got.shape == ref.shape and torch.equal(got_lens, ref_lens)
        mask = torch.arange(ref.shape[1])[None, :] < ref_lens[:, None]
        assert (got - ref).abs()[mask].max() < 1e-4


def test_onnx_transcripts_of_the_demo_test_set_equal_pytorchs(exported, small_checkpoint, tmp_path):
    """The same command, the same split: once the checkpoint with PyTorch, once the export with
    onnxruntime; every greedy hypothesis is identical."""
    hyps = {}
    for name, model in (("pt", small_checkpoint), ("onnx", exported)):
        r = subprocess.run([sys.executable, "-m", "bljust.evaluate", f"ckpt={model}", "split=test",
                            f"out={tmp_path / name}", "device=cpu"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        hyps[name] = (tmp_path / name / "hyps" / "test.txt").read_text().splitlines()
        assert json.loads((tmp_path / name / "wer.json").read_text())["test"]["utterances"] == len(hyps[name])
    assert len(hyps["pt"]) >= 8 and sum(bool(line.split("\t")[2]) for line in hyps["pt"]) >= 8  # real outputs
    assert hyps["onnx"] == hyps["pt"]


def test_transcribe_runs_an_exported_model_on_audio_files(exported, small_checkpoint, demo_root):
    files = [str(p) for p in sorted((demo_root / "corpus" / "test").rglob("*.flac"))[:3]]
    outs = [subprocess.run([sys.executable, "-m", "bljust.transcribe", f"ckpt={m}", *files],
                           capture_output=True, text=True, timeout=300) for m in (small_checkpoint, exported)]
    assert all(r.returncode == 0 for r in outs), outs[1].stderr
    assert outs[1].stdout == outs[0].stdout and len(outs[1].stdout.splitlines()) == 3


def test_an_onnx_file_without_bljust_metadata_is_one_line(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "other.onnx"))
    with pytest.raises(OnnxError, match="other.onnx: no bljust metadata"):
        load_onnx(tmp_path / "other.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(OnnxError, match="broken.onnx: not a loadable ONNX model"):
        load_onnx(tmp_path / "broken.onnx")

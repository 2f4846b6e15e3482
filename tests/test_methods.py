"""What each method's step touches: SpecAugment only on supervised batches, the right stages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.train  # every test here builds a Trainer and steps it


def _trainer(small_cfg, tmp_path, overrides):
    from bljust.train import Trainer

    cfg = small_cfg([f"run_dir={tmp_path}", "objective.bestrq.codebook_size=64", *overrides])
    return Trainer(cfg, Path(tmp_path))


class _Spy(torch.nn.Module):
    """Counts SpecAugment calls and keeps the batch each call saw."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls, self.inputs = inner, [], []

    def forward(self, feats):
        self.calls.append(feats.shape)
        self.inputs.append(feats.detach().clone())
        return self.inner(feats)


class _Tap:
    """A batch stream that keeps a copy of the features of every batch it hands out."""

    def __init__(self, stream):
        self.stream, self.feats = stream, []

    def __next__(self):
        batch = next(self.stream)
        self.feats.append(batch.feats.clone())
        return batch

    def __getattr__(self, name):
        return getattr(self.stream, name)


@pytest.mark.parametrize("method,keys", [("just", []), ("bljust", ["method.explore=0"])])
def test_specaugment_only_on_supervised_batches(small_cfg, tmp_path, method, keys):
    tr = _trainer(small_cfg, tmp_path, [f"method={method}", *keys])
    spy = tr.ctx.specaug = _Spy(tr.ctx.specaug)
    labelled, unlabelled = _Tap(tr.ctx.labelled), _Tap(tr.ctx.unlabelled())
    tr.ctx.labelled, tr.ctx.unlabelled = labelled, lambda: unlabelled
    out = tr.method.step(0).record()
    assert len(spy.calls) == 1  # the labelled batch only; the unlabelled one is masked by L_u itself
    assert {"loss_sup", "loss_unsup", "mask_fraction", "code_perplexity"} <= set(out)
    # which batch: exactly the labelled batch's features, never the unlabelled one's
    assert len(labelled.feats) == len(unlabelled.feats) == 1
    assert torch.equal(spy.inputs[0], labelled.feats[0])
    assert not any(x.shape == spy.inputs[0].shape and torch.equal(x, spy.inputs[0]) for x in unlabelled.feats)


def test_ptft_stages(small_cfg, tmp_path):
    tr = _trainer(small_cfg, tmp_path, ["method=ptft", "method.pretrain_steps=2", "train.max_steps=2",
                                        "method.freeze_encoder_steps=1"])
    spy = tr.ctx.specaug = _Spy(tr.ctx.specaug)
    assert tr.method.total_steps() == 4
    head_before = tr.model.ctc_head.weight.detach().clone()
    enc = next(tr.model.encoder.parameters())
    s0 = tr.method.step(0).record()
    assert s0["stage"] == 1.0 and "loss_unsup" in s0 and not spy.calls
    assert torch.equal(tr.model.ctc_head.weight, head_before)  # stage 1 leaves the CTC head fresh
    tr.method.step(1)
    enc_before = enc.detach().clone()
    s2 = tr.method.step(2).record()  # first fine-tuning step: encoder frozen
    assert s2["stage"] == 2.0 and torch.equal(enc, enc_before) and not torch.equal(tr.model.ctc_head.weight, head_before)
    tr.method.step(3)
    assert not torch.equal(enc, enc_before) and tr.method.supervised_updates == 2


def test_ptft_fine_tunes_from_a_checkpoint(small_cfg, tmp_path):
    """init_from=PATH with pretrain_steps=0: stage 2 alone, starting from another run's weights."""
    from bljust.tracking.checkpoint import load_checkpoint

    src = _trainer(small_cfg, tmp_path / "src", ["train.max_steps=2", "train.eval_every=2", "eval.max_dev_utts=2"])
    src.run()
    weights = load_checkpoint(tmp_path / "src" / "checkpoints" / "last.pt")["model"]
    tr = _trainer(small_cfg, tmp_path / "ft", ["method=ptft", "method.pretrain_steps=0", "train.max_steps=1",
                                               f"init_from={tmp_path / 'src' / 'checkpoints' / 'last.pt'}"])
    assert all(torch.equal(v, weights[k]) for k, v in tr.model.state_dict().items())
    out = tr.method.step(0).record()
    assert out["stage"] == 2.0 and tr.method.total_steps() == 1

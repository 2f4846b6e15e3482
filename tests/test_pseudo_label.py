"""Pseudo-labelling: the slimIPL cache, the label filter and its counts, a gradient-free labelling
pass, the slimIPL step schedule, offline teacher labelling, and exact resume."""

from __future__ import annotations

import copy
import io
import json
import math
from pathlib import Path

import jiwer
import pytest
import torch

from bljust.config import ModelConfig
from bljust.errors import UserError
from bljust.methods.pl_cache import CacheEntry, PseudoLabelCache
from bljust.models.asr import AsrModel
from bljust.objectives.pseudo_labels import filter_labels, label_batch, utterance_confidence
from bljust.tracking.checkpoint import load_checkpoint
from bljust.tracking.metrics import read_metrics


def _entry(name: str) -> CacheEntry:
    return CacheEntry.from_lists([f"{name}-a", f"{name}-b"], [[1, 2, 3], [4]])


def test_cache_size_bound_and_replacement_probability():
    cache = PseudoLabelCache(capacity=3, replace_prob=0.1, seed=0)
    for name in "xyz":
        assert not cache.full()
        cache.add(_entry(name))
    assert cache.full() and len(cache) == 3
    with pytest.raises(AssertionError):
        cache.add(_entry("w"))  # full: entries are only replaced from now on
    draws = [cache.draw() for _ in range(3000)]
    assert set(draws) == {0, 1, 2} and all(abs(draws.count(i) / 3000 - 1 / 3) < 0.04 for i in range(3))
    replaced = sum(cache.should_replace() for _ in range(10000))
    assert 0.09 < replaced / 10000 < 0.11  # Bernoulli(0.1): 4 standard deviations is 0.012
    cache.replace(1, _entry("new"))
    assert len(cache) == 3 and cache.entries[1].ids == ["new-a", "new-b"] and cache.replacements == 1
    never, always = PseudoLabelCache(1, 0.0, 0), PseudoLabelCache(1, 1.0, 0)
    assert not any(never.should_replace() for _ in range(500)) and all(always.should_replace() for _ in range(500))


def test_cache_state_round_trips_through_a_weights_only_load():
    cache = PseudoLabelCache(capacity=4, replace_prob=0.5, seed=3)
    for name in "ab":
        cache.add(_entry(name))
    cache.draw()
    buf = io.BytesIO()
    torch.save(cache.state_dict(), buf)
    buf.seek(0)
    restored = PseudoLabelCache(capacity=4, replace_prob=0.5, seed=99)
    restored.load_state_dict(torch.load(buf, weights_only=True))
    assert [e.ids for e in restored.entries] == [e.ids for e in cache.entries]
    assert torch.equal(restored.entries[0].labels()["a-a"], torch.tensor([1, 2, 3]))
    assert [cache.draw() for _ in range(20)] == [restored.draw() for _ in range(20)]  # same generator state
    with pytest.raises(UserError, match="method.cache_size=1"):
        PseudoLabelCache(capacity=1, replace_prob=0.5, seed=0).load_state_dict(cache.state_dict())


def test_confidence_is_the_mean_best_path_posterior_over_valid_frames():
    probs = torch.tensor([[[0.9, 0.1], [0.6, 0.4], [0.5, 0.5]],
                          [[0.2, 0.8], [0.3, 0.7], [0.99, 0.01]]])  # (B=2, T=3, V=2)
    lens = torch.tensor([2, 3])  # the first utterance's third frame is padding
    logits = probs.log()
    assert utterance_confidence(logits, lens, "max_posterior").tolist() == pytest.approx(
        [(0.9 + 0.6) / 2, (0.8 + 0.7 + 0.99) / 3])
    assert utterance_confidence(logits, lens, "logprob").tolist() == pytest.approx(
        [(math.log(0.9) + math.log(0.6)) / 2, (math.log(0.8) + math.log(0.7) + math.log(0.99)) / 3])


def test_filter_keeps_confident_alignable_labels_and_counts_each_drop():
    tokens = [[], [5, 5], [5, 6], [7], [7, 8]]
    frames = torch.tensor([4, 2, 2, 3, 9])  # [5, 5] needs a blank between: 3 frames, has 2
    confidence = torch.tensor([0.9, 0.9, 0.4, 0.5, 0.95])
    kept = filter_labels(tokens, frames, confidence, threshold=0.5)
    assert kept.keep == [False, False, False, True, True]  # 0.5 >= 0.5 is kept
    assert (kept.drops.empty, kept.drops.too_long, kept.drops.low_confidence) == (1, 1, 1)
    assert kept.drops.total() == 3
    assert filter_labels(tokens, frames, confidence, threshold=0.0).keep == [False, False, True, True, True]


def test_labelling_pass_is_gradient_free_and_leaves_training_mode_alone():
    torch.manual_seed(0)
    model = AsrModel(ModelConfig(num_layers=1, dropout=0.5), vocab_size=6)
    model.train()
    feats, lens = torch.randn(3, 60, 80), torch.tensor([60, 40, 24])
    untouched = copy.deepcopy(model)  # the same weights, never asked for labels
    saved = []  # tensors autograd keeps for a backward pass, while labelling
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        tokens_a, conf_a, frames = label_batch(model, feats, lens, "max_posterior")
    assert not saved  # no graph was built: nothing stored for a backward
    tokens_b, conf_b, _ = label_batch(model, feats, lens, "max_posterior")
    assert tokens_a == tokens_b and torch.equal(conf_a, conf_b)  # eval mode: dropout (p=0.5) is off
    assert model.training  # restored for the update that follows
    assert not conf_a.requires_grad and all(p.grad is None for p in model.parameters())
    assert frames.tolist() == [15, 10, 6]  # subsampled by 4: what the CTC alignment check uses
    # weights and buffers (normalisation statistics) are as before labelling
    assert all(torch.equal(v, untouched.state_dict()[k]) for k, v in model.state_dict().items())
    # The labels are constants to the update: its gradient is the plain CTC gradient.
    logits, out_lens = model(feats, lens)
    loss = logits.sum()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    # labelling between a backward and the optimiser step leaves the gradients exactly as they are
    before = [p.grad.clone() for p in model.parameters()]
    assert label_batch(model, feats, lens, "max_posterior")[0] == tokens_a
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), before))
    # ... equal to that of a model that never labelled: the labelling pass left no gradient behind.
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        torch.manual_seed(1)
        logits, _ = model(feats, lens)
    assert saved  # the hook sees an ordinary forward's graph: its silence above means something
    model.zero_grad(set_to_none=True)
    torch.manual_seed(2)
    model(feats, lens)[0].sum().backward()
    torch.manual_seed(2)
    untouched(feats, lens)[0].sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name, p in untouched.named_parameters():
        assert torch.equal(grads[name], p.grad), name


def _trainer(small_cfg, run: Path, overrides, chatty: bool = False):
    """A trainer; chatty: its CTC head favours one letter, so a fresh model's labels are not empty."""
    from bljust.train import Trainer

    cfg = small_cfg([f"run_dir={run}", "method=pseudo_label", *overrides])
    tr = Trainer(cfg, run)
    if chatty:
        with torch.no_grad():
            tr.model.ctc_head.bias[tr.tokenizer.encode("E")[-1]] += 20.0
    return tr


class _LabelRecorder:
    """Wraps the method's labelling of a batch and recomputes, outside the package, what it must
    find: greedy CTC (argmax, merge repeats, drop blank 0) of the model in eval mode, kept when
    non-empty, alignable in its frames and at least `confidence_threshold` confident, paired with
    the hidden transcript read straight from the corpus's *.trans.txt files."""

    def __init__(self, tr):
        self.tr, self.steps = tr, []
        refs = {}
        for trans in (Path(tr.cfg.recipe.corpus_dir) / "unlabelled").rglob("*.trans.txt"):
            refs.update(line.split(" ", 1) for line in trans.read_text().splitlines())
        self.refs, self.real = refs, tr.method._label
        tr.method._label = self

    def labels(self, host) -> list[tuple[str, list[int], float, int]]:
        """(id, greedy tokens, mean max posterior, frames) per utterance of a batch."""
        model = self.tr.model
        was_training = model.training
        model.eval()
        with torch.no_grad():
            logits, lens = model(host.feats, host.feat_lens)
        model.train(was_training)
        out = []
        for u, frames, n in zip(host.ids, logits.float().log_softmax(-1), lens.tolist()):
            best = frames[:n].max(-1)
            tokens = [t for t in torch.unique_consecutive(best.indices).tolist() if t != 0]
            out.append((u, tokens, float(best.values.exp().mean()), n))
        return out

    def __call__(self, host):
        if len(host) == 0:  # nothing labelled, nothing counted
            return self.real(host)
        kept, threshold = [], self.tr.method.cfg.confidence_threshold
        for u, tokens, confidence, frames in self.labels(host):
            repeats = sum(a == b for a, b in zip(tokens, tokens[1:]))
            if tokens and len(tokens) + repeats <= frames and confidence >= threshold:
                kept.append((self.refs[u], self.tr.tokenizer.decode(tokens)))
        self.steps[-1].append({"labelled": len(host), "kept": kept})
        return self.real(host)

    def expected(self, passes: list[dict]) -> dict[str, float]:
        """The kept fraction and the kept labels' WER/CER (jiwer) over some labelling passes."""
        kept = [pair for p in passes for pair in p["kept"]]
        refs, hyps = [r for r, _ in kept], [h for _, h in kept]
        return {"pl_kept_fraction": len(kept) / sum(p["labelled"] for p in passes),
                "pl_wer": 100 * jiwer.wer(refs, hyps), "pl_cer": 100 * jiwer.cer(refs, hyps)}


SLIM = ["model.num_layers=1", "train.max_duration=20", "method.start_step=2", "method.sup_updates=1", "method.pl_updates=1", "method.cache_size=2",
        "method.replace_prob=0.5", "train.log_every=1", "train.eval_every=100", "eval.max_dev_utts=4"]


@pytest.mark.train
def test_slimipl_warms_up_fills_the_cache_then_trains_on_it(small_cfg, tmp_path):
    tr = _trainer(small_cfg, tmp_path, [*SLIM, "method.pl_dropout=0.3", "train.max_steps=10"], chatty=True)
    dropouts = lambda: {m.p for m in tr.model.modules() if isinstance(m, torch.nn.Dropout)}
    assert dropouts() == {0.1}
    expected = _LabelRecorder(tr)
    outs = []
    for s in range(8):
        expected.steps.append([])
        outs.append(tr.method.step(s).record())
    assert [("loss_sup" in o, "pl_filling" in o, "loss_pl" in o) for o in outs] == [
        (True, False, False), (True, False, False),  # warm-up
        (True, False, False), (False, True, False),  # cycle: supervised, then a filling slot
        (True, False, False), (False, True, False),  # the cache (2 batches) is full after this
        (True, False, False), (False, False, True)]  # a pseudo-labelled update from the cache
    assert dropouts() == {0.3}
    assert all(o["pl_cache_size"] <= 2 for o in outs[2:]) and len(tr.method.cache) == 2
    assert tr.method.supervised_updates == 5 and tr.method.pl_update_count == 1
    assert outs[7]["pl_fraction"] == pytest.approx(1 / 6)
    # The demo's unlabelled folder keeps its transcripts: the labels are scored, for analysis only.
    labelled = [o for o in outs if "pl_kept_fraction" in o]
    assert labelled and all("pl_wer" in o and "pl_cer" in o for o in labelled)  # values recomputed below
    # each log step (every step here) reports that step's labelling passes, recomputed outside
    assert [i for i, o in enumerate(outs) if "pl_kept_fraction" in o] == [i for i, p in enumerate(expected.steps) if p]
    for out, passes in zip(outs, expected.steps):
        if passes:
            want = expected.expected(passes)
            assert {k: out[k] for k in want} == pytest.approx(want)
    entry = tr.method.cache.entries[0]
    batch = tr.method._cached_batch(entry)
    labels = entry.labels()
    assert all(b is None for b in batch.texts)  # nothing of the hidden transcript reaches training
    for i, u in enumerate(batch.ids):
        assert torch.equal(batch.tokens[i, : batch.token_lens[i]], labels[u])


@pytest.mark.train
def test_labels_below_the_confidence_threshold_are_dropped_and_counted(small_cfg, tmp_path):
    """A model whose labels differ in confidence, the threshold at their median: the logged kept
    fraction, drop counts and WER/CER of the kept labels are what an outside count gives."""
    # ~7 utterances a batch: enough to split by confidence
    tr = _trainer(small_cfg, tmp_path, [*SLIM, "train.max_duration=60", "train.num_buckets=2"])
    with torch.no_grad():
        tr.model.ctc_head.bias[tr.tokenizer.encode("E")[-1]] += 4.0  # some frames say E, not all
    recorder = _LabelRecorder(tr)
    host = next(tr.ctx.unlabelled())
    confidences = sorted(c for _, tokens, c, _ in recorder.labels(host) if tokens)
    assert len(host) >= 4 and len(set(confidences)) >= 4, "labels too alike to split by confidence"
    tr.method.cfg.confidence_threshold = confidences[len(confidences) // 2]
    recorder.steps.append([])
    tr.method._label(host)
    out = tr.method._log_stats()
    want = recorder.expected(recorder.steps[0])
    assert {k: out[k] for k in want} == pytest.approx(want)
    assert 0 < out["pl_kept_fraction"] < 1  # some kept, some dropped: the count is tested both ways
    empty = sum(not tokens for _, tokens, _, _ in recorder.labels(host))
    below = sum(bool(tokens) and c < tr.method.cfg.confidence_threshold for _, tokens, c, _ in recorder.labels(host))
    assert (out["pl_dropped_empty"], out["pl_dropped_low_confidence"]) == (empty, below) and below > 0


@pytest.mark.e2e
def test_interrupted_slimipl_run_resumes_exactly(small_cfg, tmp_path):
    keys = [*SLIM, "train.max_steps=8", "train.ckpt_every=1"]
    whole = _trainer(small_cfg, tmp_path / "whole", keys, chatty=True)
    whole.run()
    cut = _trainer(small_cfg, tmp_path / "cut", keys, chatty=True)
    real_step = cut.method.step

    def dies_at_7(step):
        if step == 7:
            raise KeyboardInterrupt  # as if killed: last.pt holds step 7, the cache full
        return real_step(step)

    cut.method.step = dies_at_7
    with pytest.raises(KeyboardInterrupt):
        cut.run()
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert state["step"] == 7 and len(state["method"]["cache"]["ids"]) == 2
    resumed = _trainer(small_cfg, tmp_path / "cut", keys)
    resumed.run()
    losses = lambda d: [(r["step"], r.get("loss_sup"), r.get("loss_pl"), r.get("pl_cache_size"))
                        for r in read_metrics(d / "metrics.jsonl") if not r.get("final")]
    assert losses(tmp_path / "whole") == losses(tmp_path / "cut")
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert whole.method.cache.state_dict()["ids"] == resumed.method.cache.state_dict()["ids"]


def _constant_teacher(small_cfg, tmp_path) -> tuple[Path, str]:
    """A checkpoint whose CTC head always says one letter: every utterance is labelled with it."""
    src = _trainer(small_cfg, tmp_path / "teacher", ["method=supervised", "train.max_steps=1", "model.num_layers=1",
                                                     "train.eval_every=1", "eval.max_dev_utts=2"])
    src.run()
    path = tmp_path / "teacher" / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(path)
    letter = src.tokenizer.encode("E")[-1]
    ckpt["model"]["ctc_head.bias"][letter] = 100.0
    torch.save(ckpt, path)
    return path, src.tokenizer.decode([letter])


@pytest.mark.e2e
def test_offline_mode_labels_once_filters_and_trains_on_the_mixture(small_cfg, tmp_path):
    teacher, letter = _constant_teacher(small_cfg, tmp_path)
    keys = ["method.mode=offline", f"method.teacher={teacher}", "method.confidence_threshold=0.9",
            "model.num_layers=1", "train.max_duration=20",
            "train.max_steps=2", "train.log_every=1", "train.eval_every=2", "eval.max_dev_utts=4"]
    tr = _trainer(small_cfg, tmp_path / "student", keys)
    manifest = tmp_path / "student" / "pseudo_labels.jsonl.gz"
    stats = json.loads((tmp_path / "student" / "pseudo_labels.json").read_text())
    n_unlabelled = len(tr.ctx.unlabelled().cuts)
    assert stats["pl_kept"] == n_unlabelled and stats["pl_kept_fraction"] == 1.0 and stats["pl_wer"] >= 90
    from bljust.data.manifests import cut_text, load_cuts

    cuts = load_cuts(manifest)
    assert {cut_text(c) for c in cuts} == {letter} and all(c.supervisions[0].custom["pl_confidence"] > 0.99
                                                          for c in cuts)
    assert len(tr.method.stream.cuts) == n_unlabelled + len(tr.ctx.labelled.cuts)
    table = tr.run()
    assert table["step"] == 2 and tr.method.supervised_updates == 2
    assert read_metrics(tmp_path / "student" / "metrics.jsonl")[0]["pl_kept_fraction"] == 1.0
    before = manifest.stat().st_mtime_ns
    _trainer(small_cfg, tmp_path / "student", keys)  # a resumed run reuses the labels
    assert manifest.stat().st_mtime_ns == before
    with pytest.raises(UserError, match="no pseudo-label survived"):
        _trainer(small_cfg, tmp_path / "strict", [*keys[:2], "method.confidence_threshold=1.01"])

"""CTC loss normalisation against hand-computed values; greedy decoding; WER/CER against a
brute-force edit distance."""

from __future__ import annotations

import math
import random

import pytest
import torch

from bljust.objectives.ctc import ctc_alignable, ctc_loss, greedy_decode
from bljust.scoring import error_rates


def test_ctc_loss_is_summed_then_divided_by_target_tokens():
    # Two classes (blank, "1") with equal logits: every frame emits either with p = 1/2.
    # Utterance A: 2 frames, target [1]   -> paths 11, 01, 10          -> P = 3/4
    # Utterance B: 3 frames, target [1,1] -> only path 1 0 1 (blank between repeats) -> P = 1/8
    logits = torch.zeros(2, 3, 2)
    lens = torch.tensor([2, 3])
    tokens = torch.tensor([[1, 0], [1, 1]])
    token_lens = torch.tensor([1, 2])
    expected = (-math.log(3 / 4) - math.log(1 / 8)) / 3  # 3 target tokens in the batch
    assert ctc_loss(logits, lens, tokens, token_lens).item() == pytest.approx(expected, rel=1e-6)


def test_ctc_unalignable_target_contributes_zero():
    logits = torch.zeros(1, 2, 2)
    loss = ctc_loss(logits, torch.tensor([2]), torch.tensor([[1, 1, 1]]), torch.tensor([3]))
    assert torch.isfinite(loss) and loss.item() == 0.0
    assert ctc_alignable(torch.tensor([3, 2, 2]), torch.tensor([3, 3, 4]),
                         torch.tensor([[1, 1, 2], [1, 1, 0], [1, 2, 0]])).tolist() == [False, True, True]


def test_greedy_decode_merges_repeats_and_drops_blanks():
    path = torch.tensor([[0, 3, 3, 0, 3, 2, 2, 0, 0]])
    logits = torch.nn.functional.one_hot(path, 5).float()
    assert greedy_decode(logits, torch.tensor([9])) == [[3, 3, 2]]
    assert greedy_decode(logits, torch.tensor([4])) == [[3]]


def edit_distance(a: list, b: list) -> int:
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[-1]


def test_wer_hand_case_and_corpus_level():
    assert error_rates(["A B C D"], ["A X C"])["wer"] == pytest.approx(50.0)  # 1 sub + 1 del over 4
    # corpus level: (1 + 0) errors / (1 + 3) words, not the mean of per-utterance rates
    assert error_rates(["A", "B C D"], ["X", "B C D"])["wer"] == pytest.approx(25.0)


def test_wer_and_cer_match_brute_force_edit_distance():
    rng = random.Random(0)
    words = ["THE", "CAT", "SAT", "ON", "A", "MAT", "DOG'S"]
    refs = [" ".join(rng.choices(words, k=rng.randint(1, 8))) for _ in range(30)]
    hyps = [" ".join(w for w in r.split() if rng.random() > 0.2) + (" CAT" if rng.random() < 0.3 else "")
            for r in refs]
    hyps = [h.strip() for h in hyps]
    rates = error_rates(refs, hyps)
    wer = 100 * sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps)) / sum(len(r.split()) for r in refs)
    cer = 100 * sum(edit_distance(list(r), list(h)) for r, h in zip(refs, hyps)) / sum(len(r) for r in refs)
    assert rates["wer"] == pytest.approx(wer) and rates["cer"] == pytest.approx(cer)


def test_evaluation_scores_references_the_tokenizer_cannot_spell(small_cfg):
    # A test utterance whose reference has a character outside the vocabulary is scored (its
    # character counts as an error), not silently dropped, which would flatter the WER.
    from bljust.data.dataset import AsrDataset
    from bljust.data.features import Cmvn
    from bljust.data.manifests import load_cuts
    from bljust.data.tokenizer import Tokenizer
    from bljust.evaluate import score, transcribe_cuts
    from bljust.models.asr import AsrModel
    from bljust.prepare import prepare

    cfg = small_cfg()
    data = prepare(cfg, verbose=False)
    tokenizer, cmvn = Tokenizer.load(data.tokenizer), Cmvn.load(data.cmvn)
    cuts = load_cuts(data.eval_splits["test"]).subset(first=3).to_eager()
    odd = cuts[0]
    odd.supervisions[0].text = odd.supervisions[0].text + " ½"
    assert tokenizer.unknown_fraction(odd.supervisions[0].text) > 0
    model = AsrModel(cfg.model, tokenizer.vocab_size)
    results = transcribe_cuts(model, cuts, AsrDataset(cmvn, tokenizer), tokenizer, torch.device("cpu"))
    assert [r[0] for r in results] == [c.id for c in cuts]
    assert results[0][1].endswith("½")
    assert score(results)["utterances"] == 3

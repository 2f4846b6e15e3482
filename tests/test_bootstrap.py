"""Paired bootstrap intervals of a WER/CER difference, on hand-made hypotheses whose answer is known,
and the per-utterance edit counts they are built from."""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import numpy as np
import pytest

from bljust.evaluate import write_hyps
from bljust.reporting.bootstrap import Counts, paired_bootstrap, paired_counts
from bljust.reporting.runs import HypsError, read_hyps
from bljust.scoring import error_rates, utterance_edits

ROOT = Path(__file__).resolve().parent.parent
WORDS = "THE CAT SAT ON A MAT WITH HER OLD RED HAT".split()


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(n)]


def garble(ref: str, rng: random.Random, p: float) -> str:
    """Each word substituted, deleted or followed by an insertion with probability p / 3 each."""
    out = []
    for w in ref.split():
        r = rng.random()
        out += [] if r < p / 3 else ["DOG"] if r < 2 * p / 3 else [w, "UH"] if r < p else [w]
    return " ".join(out)


def hyps_file(path: Path, refs: list[str], hyps: list[str]) -> Path:
    write_hyps([(f"utt{i:03d}", r, h) for i, (r, h) in enumerate(zip(refs, hyps))], path)
    return path


def test_utterance_edits_sum_to_the_corpus_rates_of_any_subset():
    rng = random.Random(1)
    refs = sentences(60)
    hyps = [garble(r, rng, 0.4) for r in refs]
    hyps[3] = ""  # a blank output: every reference word deleted
    counts = utterance_edits(refs, hyps)
    assert counts["word_edits"][3] == counts["words"][3] == len(refs[3].split())
    for subset in (range(60), range(0, 60, 3), [5, 5, 7]):  # with repeats, as a resample has them
        sub_r, sub_h = [refs[i] for i in subset], [hyps[i] for i in subset]
        rates = error_rates(sub_r, sub_h)
        wer = 100 * sum(counts["word_edits"][i] for i in subset) / sum(counts["words"][i] for i in subset)
        cer = 100 * sum(counts["char_edits"][i] for i in subset) / sum(counts["chars"][i] for i in subset)
        assert wer == pytest.approx(rates["wer"], abs=1e-9) and cer == pytest.approx(rates["cer"], abs=1e-9)


def test_an_identical_pair_differs_by_exactly_zero(tmp_path):
    rng = random.Random(2)
    refs = sentences(50)
    hyps = [garble(r, rng, 0.5) for r in refs]
    a, b = hyps_file(tmp_path / "a.txt", refs, hyps), hyps_file(tmp_path / "b.txt", refs, hyps)
    ids, ca, cb = paired_counts([a], [b])
    assert len(ids) == 50
    for d in paired_bootstrap(ca, cb, resamples=1000).values():
        assert (d.delta, d.low, d.high, d.p_lower) == (0.0, 0.0, 0.0, 0.0)


def test_a_clear_win_excludes_zero_and_a_tie_straddles_it(tmp_path):
    rng = random.Random(3)
    refs = sentences(80)
    good = [garble(r, rng, 0.1) for r in refs]
    bad = [garble(r, rng, 0.6) for r in refs]
    _, cg, cb = paired_counts([hyps_file(tmp_path / "good.txt", refs, good)], [hyps_file(tmp_path / "bad.txt", refs, bad)])
    for d in paired_bootstrap(cg, cb, resamples=2000, seed=0).values():
        assert d.low <= d.delta <= d.high < 0 and d.p_lower == 1.0
    # A tie: the same 40 sentences twice; one system drops the first word of each in the first copy,
    # the other in the second copy: equal totals (difference exactly 0), errors on different utterances
    base = sentences(40, seed=4)
    refs, cut = base + base, [" ".join(r.split()[1:]) for r in base]
    first = hyps_file(tmp_path / "first.txt", refs, cut + base)
    second = hyps_file(tmp_path / "second.txt", refs, base + cut)
    _, c1, c2 = paired_counts([first], [second])
    for d in paired_bootstrap(c1, c2, resamples=2000, seed=0).values():
        assert d.delta == 0.0 and d.low < -1 and d.high > 1 and 0.3 < d.p_lower < 0.7


def test_the_interval_has_the_width_of_the_paired_standard_error():
    """Known answer: every utterance 10 words long, so a resample's difference is 10 x the mean of the
    drawn per-utterance differences d_i, and the 95 % interval is close to ±1.96 x 10 sd(d) / sqrt(N).
    The two systems' errors are strongly correlated: resampling them independently would give an
    interval over four times as wide, so this fails if the pairing is lost."""
    rng = np.random.default_rng(5)
    n = 400
    a = rng.integers(0, 9, n)
    b = a + rng.integers(0, 3, n)  # b is a plus 0-2 errors per utterance
    ones = np.full(n, 10)
    ca, cb = (Counts({"word_edits": x, "words": ones, "char_edits": x, "chars": ones}) for x in (a, b))
    d = paired_bootstrap(ca, cb, resamples=4000, seed=0)["wer"]
    se = 10 * np.std(a - b) / np.sqrt(n)
    assert d.delta == pytest.approx(10 * np.mean(a - b))
    assert (d.high - d.low) / 2 == pytest.approx(1.96 * se, rel=0.1)
    assert d.low < d.delta < d.high < 0


def test_seeds_are_pooled_into_the_mean_of_their_rates_and_draws_are_seeded(tmp_path):
    rng = random.Random(6)
    refs = sentences(50)
    a_files = [hyps_file(tmp_path / f"a{s}.txt", refs, [garble(r, rng, 0.2 + 0.1 * s) for r in refs]) for s in range(3)]
    b_files = [hyps_file(tmp_path / "b0.txt", refs, [garble(r, rng, 0.4) for r in refs])]  # one seed only
    _, ca, cb = paired_counts(a_files, b_files)
    d = paired_bootstrap(ca, cb, resamples=1000, seed=0)

    def rate(path: Path, metric: str) -> float:
        pairs = list(read_hyps(path).values())
        return error_rates([r for r, _ in pairs], [h for _, h in pairs])[metric]

    for m in ("wer", "cer"):  # the table's mean over seeds, minus the baseline's
        assert d[m].delta == pytest.approx(statistics.mean(rate(p, m) for p in a_files) - rate(b_files[0], m))
    assert paired_bootstrap(ca, cb, resamples=1000, seed=0) == d
    other = paired_bootstrap(ca, cb, resamples=1000, seed=1)["wer"]
    assert (other.low, other.high) != (d["wer"].low, d["wer"].high)
    assert other.low == pytest.approx(d["wer"].low, abs=2) and other.high == pytest.approx(d["wer"].high, abs=2)


def test_utterances_are_paired_by_id_and_unscorable_ones_left_out(tmp_path):
    refs = sentences(6)
    a = tmp_path / "a.txt"
    write_hyps([("x1", refs[0], refs[0]), ("x2", refs[1], ""), ("x3", None, "NOISE"), ("only_a", refs[2], "")], a)
    b = tmp_path / "b.txt"
    write_hyps([("x2", refs[1], refs[1]), ("x1", refs[0], ""), ("x3", None, "")], b)  # another order
    assert read_hyps(a)["x3"] == ("", "NOISE")  # no reference: written empty, not as "None"
    ids, ca, cb = paired_counts([a], [b])
    assert ids == ["x1", "x2"]
    assert list(ca.arrays["word_edits"]) == [0, len(refs[1].split())]
    assert list(cb.arrays["word_edits"]) == [len(refs[0].split()), 0]


def test_hypotheses_that_cannot_be_paired_are_named(tmp_path):
    refs = sentences(3)
    a = hyps_file(tmp_path / "a.txt", refs, refs)
    other = hyps_file(tmp_path / "other.txt", ["SOMETHING ELSE", *refs[1:]], refs)
    with pytest.raises(HypsError, match=r"other\.txt: reference of 'utt000' differs"):
        paired_counts([a], [other])
    torn = tmp_path / "torn.txt"
    torn.write_text("utt000\tTHE CAT\tTHE CAT\nutt001\tTHE CAT\n")
    with pytest.raises(HypsError, match=r"torn\.txt:2: expected ID<TAB>REF<TAB>HYP"):
        paired_counts([a], [torn])
    alien = tmp_path / "alien.txt"
    write_hyps([("zzz", "THE CAT", "THE CAT")], alien)
    with pytest.raises(HypsError, match="no scorable utterance id common"):
        paired_counts([a], [alien])


def test_compare_reports_a_bad_hypotheses_file_in_one_line(tmp_path, monkeypatch):
    import json

    from conftest import run_cli

    for method in ("supervised", "bljust"):
        run = tmp_path / "runs" / method / "seed0"
        (run / "hyps").mkdir(parents=True)
        (run / "config.yaml").write_text("train:\n  seed: 0\n")
        (run / "wer.json").write_text(json.dumps({"test": {"wer": 50.0, "cer": 20.0, "utterances": 2}}))
        (run / "hyps" / "test.txt").write_text("utt0\tTHE CAT\tTHE\n" if method == "supervised" else "utt0 THE CAT\n")
    monkeypatch.chdir(ROOT)
    code, out, err = run_cli(monkeypatch, "bljust.compare", str(tmp_path / "runs"))
    assert code == 1 and out == ""
    assert err == f"error: {tmp_path}/runs/bljust/seed0/hyps/test.txt:1: expected ID<TAB>REF<TAB>HYP, found 1 field(s)\n"


def test_compare_bootstraps_dev_for_runs_that_never_scored_test(tmp_path, monkeypatch):
    """Discriminating runs score dev only: the default (test) has nothing to pair, --bootstrap-split dev
    pairs their dev hypotheses."""
    import json

    rng = random.Random(7)
    refs = sentences(60)
    for method, p in (("supervised", 0.5), ("ptft", 0.1)):
        run = tmp_path / "runs" / method / "seed0"
        (run / "config.yaml").parent.mkdir(parents=True)
        (run / "config.yaml").write_text("train:\n  seed: 0\n")
        hyps = [garble(r, rng, p) for r in refs]
        (run / "wer.json").write_text(json.dumps({"dev": {**error_rates(refs, hyps), "utterances": 60}}))
        hyps_file(run / "hyps" / "dev.txt", refs, hyps)

    from conftest import run_cli

    monkeypatch.chdir(ROOT)

    def compare(*extra: str) -> str:
        code, out, err = run_cli(monkeypatch, "bljust.compare", str(tmp_path / "runs"), *extra)
        assert code == 0, err
        return out

    assert "Paired bootstrap" not in compare()
    rows = [line for line in compare("--bootstrap-split", "dev").splitlines() if line.startswith("| ptft | supervised")]
    assert len(rows) == 1 and "| dev | 60 |" in rows[0]
    delta_wer = float(rows[0].split("|")[5].split()[0])
    assert delta_wer < 0  # ptft's hypotheses were garbled less

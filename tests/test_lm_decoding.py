"""Beam-search CTC decoding with a lexicon and an irstlm-built n-gram LM (flashlight-text's
decoder with KenLM), the LM build command, and the demo's LM text, which holds out dev and test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bljust.data.manifests import read_transcripts
from bljust.data.tokenizer import BLANK, Tokenizer
from bljust.decoding.beam import BeamSearchDecoder, DecoderError, arpa_words
from bljust.decoding.lm import build_arpa, lm_sentences
from bljust.decoding.options import DecodeOptions, greedy_decoder
from bljust.errors import UserError

# "BY THE SEA" is common, "I SEE" too; nothing has "THE SEE"
LM_TEXT = ["BY THE SEA", "DOWN BY THE SEA", "THE SEA IS BLUE", "I SEE YOU", "I SEE THE SEA", "HELLO WORLD",
           "HELLO THERE", "THE WORLD IS BIG", "BY THE WAY"]


@pytest.fixture(scope="module")
def tokenizer(demo_root) -> Tokenizer:
    return Tokenizer.load(demo_root / "prepared" / "tokenizer.model")


@pytest.fixture(scope="module")
def arpa(tmp_path_factory) -> Path:
    return build_arpa(LM_TEXT, tmp_path_factory.mktemp("lm") / "lm.arpa", order=3)


def emission(tok: Tokenizer, text: str, alternatives: dict[int, tuple[str, float]] | None = None) -> torch.Tensor:
    """(1, T, V) logits saying `text` clearly, each character for two frames then a blank frame.
    alternatives: character position -> (another character, its logit) against the true one's 5.0."""
    pieces = tok.sp.encode(text, out_type=str)
    frames = []
    for i, piece in enumerate(pieces):
        row = torch.zeros(tok.vocab_size)
        row[tok.sp.piece_to_id(piece)] = 5.0
        if alternatives and i in alternatives:
            other, logit = alternatives[i]
            row[tok.sp.piece_to_id(other)] = logit
        blank = torch.zeros(tok.vocab_size)
        blank[BLANK] = 5.0
        frames += [row, row, blank]
    return torch.stack(frames).unsqueeze(0)


def decode(tok, logits, **kw) -> str:
    return BeamSearchDecoder(tok, DecodeOptions("beam", **kw))(logits, torch.tensor([logits.shape[1]]))[0]


def test_irstlm_builds_an_arpa_lm_whose_words_become_the_lexicon(arpa):
    text = arpa.read_text()
    assert text.lstrip().startswith("\\data\\") and "\\3-grams:" in text
    assert sorted(arpa_words(arpa)) == sorted({w for s in LM_TEXT for w in s.split()})


def test_an_lm_irstlm_cannot_estimate_is_one_line_with_the_fix(tmp_path):
    from bljust.decoding.lm import LmBuildError

    # every n-gram seen exactly 3 times: no counts of counts for improved Kneser-Ney's discounts
    with pytest.raises(LmBuildError, match="division by zero.*try smoothing=witten-bell"):
        build_arpa(LM_TEXT * 3, tmp_path / "lm.arpa")
    assert not (tmp_path / "lm.arpa").exists()
    assert arpa_words(build_arpa(LM_TEXT * 3, tmp_path / "wb.arpa", smoothing="witten-bell"))


def test_lexicon_corrects_a_misspelling_greedy_makes(tokenizer, arpa):
    # "WORLD" with its D heard slightly less than T: greedy spells WORLT, the lexicon has no such word
    pos = len(tokenizer.sp.encode("HELLO WORL", out_type=str))
    logits = emission(tokenizer, "HELLO WORLD", {pos: ("T", 5.5)})
    assert greedy_decoder(tokenizer)(logits, torch.tensor([logits.shape[1]])) == ["HELLO WORLT"]
    assert decode(tokenizer, logits, lm=str(arpa)) == "HELLO WORLD"


def test_the_lm_weight_decides_between_words_the_audio_cannot_tell_apart(tokenizer, arpa):
    # the last letter sounds a bit more like E (SEE) than A (SEA); only the LM knows "BY THE SEA"
    pos = len(tokenizer.sp.encode("BY THE SE", out_type=str))
    logits = emission(tokenizer, "BY THE SEE", {pos: ("A", 4.8)})
    assert decode(tokenizer, logits, lm=str(arpa), lm_weight=0.0) == "BY THE SEE"
    assert decode(tokenizer, logits, lm=str(arpa), lm_weight=2.0) == "BY THE SEA"


def test_a_given_lexicon_limits_the_words_and_may_spell_them(tokenizer, arpa, tmp_path):
    lexicon = tmp_path / "words.txt"
    # THERE spelled by the tokenizer; WORLD spelled out in the model's pieces
    lexicon.write_text("HELLO\nTHERE\nWORLD \u2581 W O R L D\n")
    logits = emission(tokenizer, "HELLO WORLD")
    assert decode(tokenizer, logits, lm=str(arpa), lexicon=str(lexicon)) == "HELLO WORLD"
    lexicon.write_text("HELLO\nWORLD \u2581 W O R L Q9\n")
    with pytest.raises(DecoderError, match=r"words.txt:2: token 'Q9' is not in the model's vocabulary"):
        decode(tokenizer, logits, lexicon=str(lexicon))


def test_unusable_lms_are_one_line(tokenizer, tmp_path):
    with pytest.raises(DecoderError, match="lm=.*nope.arpa: file not found"):
        decode(tokenizer, emission(tokenizer, "HI"), lm=str(tmp_path / "nope.arpa"))
    (tmp_path / "text.arpa").write_text("just some words\n")
    with pytest.raises(DecoderError, match="no unigrams found"):
        decode(tokenizer, emission(tokenizer, "HI"), lm=str(tmp_path / "text.arpa"))
    (tmp_path / "lm.bin").write_bytes(b"mmap lm http://kheafield.com/code format version 5\x00" + bytes(64))
    with pytest.raises(DecoderError, match="KenLM binary, whose words cannot be listed: give lexicon="):
        decode(tokenizer, emission(tokenizer, "HI"), lm=str(tmp_path / "lm.bin"))


def test_decode_keys_are_checked():
    with pytest.raises(UserError, match="decode=beam needs lm=PATH"):
        DecodeOptions.from_kv({"decode": "beam"})
    with pytest.raises(UserError, match="decode='best': expected greedy or beam"):
        DecodeOptions.from_kv({"decode": "best"})
    with pytest.raises(UserError, match="lm_weight='heavy': expected a number"):
        DecodeOptions.from_kv({"decode": "beam", "lm": "x", "lm_weight": "heavy"})
    opts = DecodeOptions.from_kv({"decode": "beam", "lm": "x", "beam_size": "8", "word_score": "-0.5"})
    assert (opts.beam_size, opts.word_score, opts.label) == (8, -0.5, "+lm")


def test_missing_flashlight_says_what_to_install(tokenizer, arpa, monkeypatch):
    monkeypatch.setitem(sys.modules, "flashlight.lib.text", None)  # as if the extra were not installed
    with pytest.raises(DecoderError) as err:
        decode(tokenizer, emission(tokenizer, "HI"), lm=str(arpa))
    assert str(err.value) == "decode=beam needs flashlight-text: pip install bljust[lm]"


def test_lm_text_drops_excluded_sentences():
    kept, removed = lm_sentences(["by the sea!", "", "I see you.", "Hello, world"], {"I SEE YOU"})
    assert (kept, removed) == (["BY THE SEA", "HELLO WORLD"], 1)


def test_the_demo_lm_text_holds_no_dev_or_test_sentence(demo_root):
    from bljust.data.demo_corpus import DemoCorpusSpec, load_sentences
    from bljust.data.demo_corpus import lm_sentences as demo_lm_sentences

    spec = DemoCorpusSpec()
    text = demo_lm_sentences(spec)
    source = load_sentences(spec.seed)
    held_out = {t for split in ("dev", "test") for t in read_transcripts(demo_root / "corpus" / split).values()}
    assert held_out and held_out <= set(source)  # they come from the same source...
    assert not held_out & set(text)  # ...and none is in the LM text (a smaller corpus's held out too)
    assert set(text) <= set(source) and len(text) > 0.9 * len(source)  # the rest of the source is


def test_the_demo_lm_text_holds_out_the_bench_and_scarce_dev_and_test_sentences():
    """`build_lm text=demo` knows no corpus: the 15-minute dev/test splits of the bench and label-scarce
    corpora (conf/experiment/bench/common.yaml) reach past the default spec's reserves, and once
    leaked 48 of their sentences into the LM text."""
    from bljust.data.demo_corpus import LM_HELD_OUT_MINUTES, DemoCorpusSpec, load_sentences, partition_sentences
    from bljust.data.demo_corpus import lm_sentences as demo_lm_sentences

    text = set(demo_lm_sentences(DemoCorpusSpec()))
    source = load_sentences(0)
    for minutes in (10.0, 15.0, LM_HELD_OUT_MINUTES):
        spec = DemoCorpusSpec(train_minutes=15.0, unlabelled_minutes=480.0, dev_minutes=minutes, test_minutes=minutes)
        pools = partition_sentences(source, spec)
        assert pools["dev"] and pools["test"] and not (set(pools["dev"]) | set(pools["test"])) & text
    longer = DemoCorpusSpec(dev_minutes=2 * LM_HELD_OUT_MINUTES, test_minutes=2 * LM_HELD_OUT_MINUTES)
    pools = partition_sentences(source, longer)  # a spec with longer splits holds out its own reserves
    assert not (set(pools["dev"]) | set(pools["test"])) & set(demo_lm_sentences(longer))


@pytest.mark.e2e
def test_evaluate_and_transcribe_with_beam_and_lm(small_checkpoint, demo_root, tmp_path):
    corpus = demo_root / "corpus"
    lm = tmp_path / "lm.arpa"
    r = subprocess.run([sys.executable, "-m", "bljust.build_lm", "text=demo", f"out={lm}",
                        f"exclude={corpus / 'dev'},{corpus / 'test'}"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("build_lm: 3-gram on ") and "(0 excluded sentences removed)" in r.stdout
    out = small_checkpoint.parent / "eval_beam"  # inside the run, where the comparison report looks
    common = [sys.executable, "-m", "bljust.evaluate", f"ckpt={small_checkpoint}", "split=test", f"out={out}"]
    assert subprocess.run(common, capture_output=True, text=True, timeout=300).returncode == 0
    r = subprocess.run([*common, "decode=beam", f"lm={lm}", "beam_size=20", "lm_weight=1.5", "word_score=1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("test+lm: WER ")
    table = json.loads((out / "wer.json").read_text())
    assert table["test"]["utterances"] == table["test+lm"]["utterances"] > 0
    words = set(arpa_words(lm))
    hyps = [line.split("\t")[2] for line in (out / "hyps" / "test+lm.txt").read_text().splitlines()]
    assert any(hyps) and all(w in words for h in hyps for w in h.split())  # lexicon words only
    # the comparison report gives greedy and beam + LM side by side, from the same wer.json
    from bljust.compare import main as compare

    assert compare([str(small_checkpoint.parent), "--wer-json", "eval_beam/wer.json",
                    "--out", str(tmp_path / "report.md")]) == 0
    head = (tmp_path / "report.md").read_text().splitlines()[0]
    assert "| test WER |" in head and "| test+lm WER |" in head and "| test+lm CER |" in head
    flac = sorted((corpus / "test").rglob("*.flac"))[0]
    r = subprocess.run([sys.executable, "-m", "bljust.transcribe", f"ckpt={small_checkpoint}", "decode=beam",
                        f"lm={lm}", str(flac)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    path, text = r.stdout.strip().split("\t")
    assert path == str(flac) and all(w in words for w in text.split())
    # without the extra: one line naming the package
    block = "import sys, runpy; sys.modules['flashlight.lib.text'] = None; sys.argv[0] = 'x'; " \
            "runpy.run_module('bljust.transcribe', run_name='__main__')"
    r = subprocess.run([sys.executable, "-c", block, f"ckpt={small_checkpoint}", "decode=beam", f"lm={lm}",
                        str(flac)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr.strip() == "error: decode=beam needs flashlight-text: pip install bljust[lm]"


@pytest.mark.e2e
def test_evaluate_chooses_the_lm_weights_on_dev_then_uses_them_on_test(small_checkpoint, tmp_path, monkeypatch):
    """tune_on=dev: the pair with the lowest dev WER (then CER; the first on a tie) over the grid,
    recorded under dev+lm, and test+lm decoded with exactly that pair."""
    import bljust.evaluate as ev
    from bljust.data.demo_corpus import DemoCorpusSpec
    from bljust.data.demo_corpus import lm_sentences as demo_lm_sentences

    lm = build_arpa(demo_lm_sentences(DemoCorpusSpec())[:4000], tmp_path / "demo.arpa", order=2)
    monkeypatch.setattr(ev, "LM_WEIGHTS", (0.5, 3.0))  # word scores far apart: this head is random
    monkeypatch.setattr(ev, "WORD_SCORES", (-10.0, 10.0))
    grid = {}
    for lm_weight in ev.LM_WEIGHTS:
        for word_score in ev.WORD_SCORES:
            opts = DecodeOptions("beam", beam_size=10, lm=str(lm), lm_weight=lm_weight, word_score=word_score)
            _, rates, _ = ev.evaluate(small_checkpoint, "dev", out=tmp_path / f"fixed{lm_weight}_{word_score}", opts=opts)
            grid[lm_weight, word_score] = (rates["wer"], rates["cer"])
    assert len(set(grid.values())) > 1  # the grid's points decode differently: the choice means something
    chosen = min(grid, key=grid.get)  # min keeps the first of equal keys, as the tuning does
    name, rates, wer_json = ev.evaluate(small_checkpoint, "test", out=tmp_path / "tuned", opts=DecodeOptions(
        "beam", beam_size=10, lm=str(lm)), tune_on="dev")
    table = json.loads(wer_json.read_text())
    assert name == "test+lm" and set(table) == {"dev+lm", "test+lm"}
    assert (table["dev+lm"]["lm_weight"], table["dev+lm"]["word_score"]) == chosen
    assert (table["dev+lm"]["wer"], table["dev+lm"]["cer"]) == grid[chosen]
    assert table["test+lm"]["tuned_on"] == "dev" and (rates["lm_weight"], rates["word_score"]) == chosen
    _, fixed, _ = ev.evaluate(small_checkpoint, "test", out=tmp_path / "fixed_test", opts=DecodeOptions(
        "beam", beam_size=10, lm=str(lm), lm_weight=chosen[0], word_score=chosen[1]))
    assert (fixed["wer"], fixed["cer"]) == (rates["wer"], rates["cer"])
    assert (tmp_path / "tuned" / "hyps" / "dev+lm.txt").is_file() and (tmp_path / "tuned" / "hyps" / "test+lm.txt").is_file()
    with pytest.raises(UserError, match="tune_on=dev: only beam search"):
        ev.evaluate(small_checkpoint, "test", out=tmp_path / "greedy", tune_on="dev")

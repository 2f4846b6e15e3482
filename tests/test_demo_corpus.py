"""Tests of the demo corpus generator: layout, audio format, split hygiene and determinism."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import soundfile as sf

from bljust.data import demo_corpus
from bljust.data.demo_corpus import DemoCorpusSpec, clean_sentence, corpus_is_complete, make_demo_corpus

SPLITS = ("train", "unlabelled", "dev", "test")
TINY = DemoCorpusSpec(seed=3, train_minutes=0.4, unlabelled_minutes=0.4, dev_minutes=0.3, test_minutes=0.3)
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None or not demo_corpus._fortune_files(),
                                  reason="espeak-ng or fortunes not installed")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """One tiny corpus shared by the read-only tests."""
    out = tmp_path_factory.mktemp("demo") / "corpus"
    make_demo_corpus(out, TINY)
    return out


def transcripts(split_dir: Path) -> dict[str, str]:
    """All `uttid -> transcript` pairs of one split."""
    pairs = {}
    for trans in split_dir.glob("*/*/*.trans.txt"):
        for line in trans.read_text().splitlines():
            uttid, text = line.split(" ", 1)
            pairs[uttid] = text
    return pairs


def split_variants(corpus_dir: Path) -> dict[str, set[str]]:
    """Voice variants used by each split, from speakers.tsv."""
    rows = [line.split("\t") for line in (corpus_dir / "speakers.tsv").read_text().splitlines()[1:]]
    found: dict[str, set[str]] = {s: set() for s in SPLITS}
    for _speaker, split, _accent, variant, _rate, _pitch in rows:
        found[split].add(variant)
    return found


def test_clean_sentence_rules():
    assert clean_sentence("Don't panic, it's only a test!") == "DON'T PANIC IT'S ONLY A TEST"
    assert clean_sentence("It costs 5 dollars.") is None  # digits
    assert clean_sentence("Mail me @ home now.") is None  # odd symbol
    assert clean_sentence("Too short.") is None
    assert clean_sentence("I work at IBM now.") is None  # acronym would be read as a word


@needs_espeak
def test_layout_is_librispeech(corpus: Path):
    assert corpus_is_complete(corpus, TINY)
    assert (corpus / "speakers.tsv").is_file()
    speaker_ids: list[str] = []
    for split in SPLITS:
        speakers = [p for p in (corpus / split).iterdir()]
        assert speakers, split
        speaker_ids += [p.name for p in speakers]
        for speaker in speakers:
            assert speaker.name.isdigit()
            chapters = list(speaker.iterdir())
            assert 1 <= len(chapters) <= 2 and all(c.name.isdigit() for c in chapters)
            for chapter in chapters:
                prefix = f"{speaker.name}-{chapter.name}"
                lines = (chapter / f"{prefix}.trans.txt").read_text().splitlines()
                flacs = sorted(p.name for p in chapter.glob("*.flac"))
                uttids = [line.split(" ", 1)[0] for line in lines]
                assert flacs == sorted(f"{u}.flac" for u in uttids)  # every line has its audio, and back
                for uttid, line in zip(uttids, lines):
                    assert uttid.startswith(prefix + "-") and len(uttid.rsplit("-", 1)[1]) == 4
                    text = line.split(" ", 1)[1]
                    assert text == text.upper() and 3 <= len(text.split()) <= 20
    assert len(speaker_ids) == len(set(speaker_ids))  # unique across splits


@needs_espeak
def test_flac_is_16khz_mono_16bit(corpus: Path):
    for flac in list(corpus.glob("*/*/*/*.flac"))[:20]:
        info = sf.info(str(flac))
        assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "FLAC", "PCM_16")
        assert info.frames > 16000 * 0.5


@needs_espeak
def test_eval_sentences_and_voices_are_unseen(corpus: Path):
    text = {split: set(transcripts(corpus / split).values()) for split in SPLITS}
    seen = text["train"] | text["unlabelled"]
    assert not text["dev"] & seen and not text["test"] & seen and not text["dev"] & text["test"]
    variants = split_variants(corpus)
    trained = variants["train"] | variants["unlabelled"]
    assert not variants["dev"] & trained and not variants["test"] & trained
    assert not variants["dev"] & variants["test"]


@needs_espeak
def test_same_seed_gives_identical_corpus(corpus: Path, tmp_path: Path):
    again = tmp_path / "again"
    make_demo_corpus(again, DemoCorpusSpec(**{**TINY.__dict__, "workers": 1}))  # workers must not matter
    for split in SPLITS:
        assert transcripts(again / split) == transcripts(corpus / split)
    for flac in corpus.glob("*/*/*/*.flac"):
        a, _ = sf.read(str(flac), dtype="int16")
        b, _ = sf.read(str(again / flac.relative_to(corpus)), dtype="int16")
        assert (a == b).all()
    assert (again / "speakers.tsv").read_text() == (corpus / "speakers.tsv").read_text()


def test_incomplete_folder_is_detected(tmp_path: Path):
    (tmp_path / "train" / "1" / "2").mkdir(parents=True)  # what an interrupted run might leave
    assert not corpus_is_complete(tmp_path)
    assert not corpus_is_complete(tmp_path, TINY)
    assert not corpus_is_complete(tmp_path / "missing")


@needs_espeak
def test_spec_mismatch_is_not_complete(corpus: Path):
    assert not corpus_is_complete(corpus, DemoCorpusSpec(**{**TINY.__dict__, "seed": 4}))
    assert corpus_is_complete(corpus, DemoCorpusSpec(**{**TINY.__dict__, "workers": 7}))


def test_require_espeak_one_line_error(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(RuntimeError) as err:
        demo_corpus.require_espeak()
    assert str(err.value) == "espeak-ng not found: install it with `apt-get install -y espeak-ng fortunes`"
    assert "\n" not in str(err.value)

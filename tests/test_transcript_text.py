"""Transcripts that are not plain ASCII, through `prepare` and `evaluate` as real processes on real
files: accented letters fold to their base letters, a transcript with a digit is left out and
counted (never cut to "I HAVE CATS"), and every character still dropped is counted per split with
an example. The labelled split is a LibriSpeech-layout folder, the dev split a CSV table, both of
real demo-corpus speech."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bljust.data.manifests import cut_text, load_cuts

TRAIN = ["Café au lait", "naïve résumé", "ÉCOLE", "I have 3 cats", "Ωmega, he said!"]
DEV = ["Crème brûlée, s’il vous plaît", "Room 101", "ÉCOLE"]
CHAPTER = "1272-128104"


def flacs(demo_root: Path) -> list[Path]:
    return sorted((demo_root / "corpus" / "dev").rglob("*.flac"))


@pytest.fixture(scope="module")
def corpus(demo_root, tmp_path_factory) -> Path:
    """train/1272/128104 (LibriSpeech layout) and dev.csv, with the transcripts above."""
    root = tmp_path_factory.mktemp("accents")
    chapter = root / "train" / "1272" / "128104"
    chapter.mkdir(parents=True)
    audio = flacs(demo_root)
    lines = []
    for i, text in enumerate(TRAIN):
        shutil.copy(audio[i], chapter / f"{CHAPTER}-{i:04d}.flac")
        lines.append(f"{CHAPTER}-{i:04d} {text}\n")
    (chapter / f"{CHAPTER}.trans.txt").write_text("".join(lines), encoding="utf-8")
    with open(root / "dev.csv", "w", newline="", encoding="utf-8") as f:
        rows = csv.writer(f)
        rows.writerow(["audio", "text"])
        for i, text in enumerate(DEV):
            shutil.copy(audio[len(TRAIN) + i], root / f"d{i}.flac")
            rows.writerow([f"d{i}.flac", text])
    return root


def recipe(corpus: Path) -> list[str]:
    # One utterance in five (train) and in three (dev) has a digit: over the default 10 % limit on unusable data.
    return ["recipe=custom", f"recipe.corpus_dir={corpus}", "recipe.labelled=[train]", "recipe.dev=[dev.csv]",
            f"recipe.data_dir={corpus}/prepared", "train.max_bad_fraction=0.5"]


@pytest.fixture(scope="module")
def prepared(corpus) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "bljust.prepare", *recipe(corpus)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return r


def test_prepare_folds_accents_and_leaves_digit_transcripts_out(corpus, prepared):
    manifests = corpus / "prepared" / "manifests"
    assert [cut_text(c) for c in load_cuts(manifests / "labelled.jsonl.gz")] == [
        "CAFE AU LAIT", "NAIVE RESUME", "ECOLE", "MEGA HE SAID"]
    assert [cut_text(c) for c in load_cuts(manifests / "eval_dev.jsonl.gz")] == [
        "CREME BRULEE S'IL VOUS PLAIT", "ECOLE"]
    done = json.loads((corpus / "prepared" / "prepare.json").read_text())
    assert done["skipped"] == {"labelled": {"digits_in_text": 1}, "dev": {"digits_in_text": 1}, "cmvn": {}}
    assert done["dropped_characters"] == {"labelled": {"Ω": 1, ",": 1, "!": 1}, "dev": {",": 1}}
    out = prepared.stdout.splitlines()
    assert f"(skipped 1 (digits_in_text: 1, e.g. {corpus}/train/1272/128104/{CHAPTER}.trans.txt:4))" in next(line for line in out if line.startswith("prepare: labelled: 4 utterances"))
    assert f"(skipped 1 (digits_in_text: 1, e.g. {corpus}/dev.csv:2))" in next(line for line in out if line.startswith("prepare: dev: 2 utterances"))
    # One line for every split's dropped characters: letters first (a dropped letter splits a word)
    assert [line for line in out if line.startswith("prepare: transcripts:")] == [
        "prepare: transcripts: labelled: dropped 3 characters outside text.keep [A-Z'] "
        "('Ω' 1, e.g. 'Ωmega, he said!'; '!' 1, e.g. 'Ωmega, he said!'; ',' 1, e.g. 'Ωmega, he said!') | "
        "dev: dropped 1 characters outside text.keep [A-Z'] (',' 1, e.g. 'Crème brûlée, s’il vous plaît')"]


def recorded(scores: dict) -> dict:
    return {k: scores[k] for k in ("skipped", "dropped_characters") if k in scores}


@pytest.mark.e2e
def test_evaluate_folds_references_the_same_way_and_records_what_it_left_out(corpus, prepared, tmp_path):
    """A 2-step run on this corpus, then `evaluate data=dev.csv`: the references are the prepared
    dev labels, and wer.json says which utterance was not scored and which characters were dropped."""
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "bljust.train", *recipe(corpus), "logging.wandb=disabled",
                    "train.progress=false", "train.num_workers=0", "train.max_duration=40", "optim.warmup_steps=1",
                    "train.max_steps=2", "train.log_every=1", "train.ckpt_every=2", "train.eval_every=1000",
                    "device=cpu", f"run_dir={run}"], check=True, capture_output=True, timeout=600)
    # The run's own final scores say what prepare left out of the split, as evaluate split=dev does.
    left_out = {"skipped": {"digits_in_text": 1}, "dropped_characters": {",": 1}}
    assert recorded(json.loads((run / "wer.json").read_text())["dev"]) == left_out
    r = subprocess.run([sys.executable, "-m", "bljust.evaluate", f"ckpt={run}/checkpoints/last.pt",
                        f"data={corpus}/dev.csv", f"out={tmp_path}/eval", "device=cpu"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    refs = [line.split("\t")[1] for line in (tmp_path / "eval" / "hyps" / "dev.txt").read_text().splitlines()]
    assert refs == ["CREME BRULEE S'IL VOUS PLAIT", "ECOLE"]
    scores = json.loads((tmp_path / "eval" / "wer.json").read_text())["dev"]
    assert scores["utterances"] == 2 and recorded(scores) == left_out
    assert r.stderr.splitlines() == [
        f"{corpus}/dev.csv: skipped 1 (digits_in_text: 1, e.g. {corpus}/dev.csv:2)",
        f"{corpus}/dev.csv: references: dropped 1 characters outside text.keep [A-Z'] "
        "(',' 1, e.g. 'Crème brûlée, s’il vous plaît')"]
    assert r.stdout.strip().endswith(f"(2 utterances; 1 left out, see {tmp_path}/eval/wer.json)")


def test_another_alphabet_is_kept_through_text_keep(demo_root, tmp_path):
    """Cyrillic kept as written (Ё is in text.keep, so it is not folded to Е); a Latin letter
    outside it is dropped and counted, a digit still keeps the transcript out."""
    from bljust.data.skips import SkipLog
    from bljust.data.sources import load_entry
    from bljust.data.text import normalizer_from_config

    audio = flacs(demo_root)
    texts = ["Ёлка, ёж и Café", "в 3 часа", "Привет мир"]
    with open(tmp_path / "ru.csv", "w", newline="", encoding="utf-8") as f:
        rows = csv.writer(f)
        rows.writerow(["audio", "text"])
        for i, text in enumerate(texts):
            shutil.copy(audio[i], tmp_path / f"r{i}.flac")
            rows.writerow([f"r{i}.flac", text])
    skips, normalize = SkipLog(), normalizer_from_config({"case": "upper", "keep": "А-ЯЁ'"})
    cuts = load_entry(tmp_path / "ru.csv", True, skips, 30.0, normalize)
    assert [cut_text(c) for c in cuts] == ["ЁЛКА ЁЖ И", "ПРИВЕТ МИР"]
    assert skips.as_dict() == {"digits_in_text": 1}
    assert dict(normalize.dropped) == {"C": 1, "A": 1, "F": 1, "É": 1, ",": 1}

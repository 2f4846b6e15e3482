"""Manifests from a miniature LibriSpeech tree (real FLAC from the demo corpus) and from tables."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bljust.data.manifests import ManifestError, cut_text, load_table_manifest, scan_librispeech
from bljust.data.skips import SkipLog


def real_flacs(demo_root: Path, n: int) -> list[Path]:
    return sorted((demo_root / "corpus" / "dev").rglob("*.flac"))[:n]


@pytest.fixture
def mini_tree(tmp_path, demo_root) -> Path:
    """dev-clean/{1272/128104, 2277/149896} with 2 utterances each, LibriSpeech names."""
    root = tmp_path / "LibriSpeech" / "dev-clean"
    flacs = iter(real_flacs(demo_root, 4))
    for spk, chap in (("1272", "128104"), ("2277", "149896")):
        d = root / spk / chap
        d.mkdir(parents=True)
        lines = []
        for i in range(2):
            utt = f"{spk}-{chap}-{i:04d}"
            shutil.copy(next(flacs), d / f"{utt}.flac")
            lines.append(f"{utt} MISTER QUILTER IS THE APOSTLE NUMBER {i}".replace(" NUMBER 0", "").replace(" NUMBER 1", " AGAIN"))
        (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def test_labelled_manifest_lists_exactly_the_utterances(mini_tree):
    cuts = scan_librispeech(mini_tree, labelled=True)
    assert [c.id for c in cuts] == ["1272-128104-0000", "1272-128104-0001", "2277-149896-0000", "2277-149896-0001"]
    first = cuts[0]
    assert cut_text(first) == "MISTER QUILTER IS THE APOSTLE" and first.supervisions[0].speaker == "1272"
    assert first.sampling_rate == 16000 and first.duration > 0.5


def test_unlabelled_manifest_reads_no_text(mini_tree):
    cuts = scan_librispeech(mini_tree, labelled=False)
    assert len(cuts) == 4 and all(cut_text(c) is None for c in cuts)


def test_bad_layout_is_skipped_and_counted(mini_tree):
    chapter = mini_tree / "1272" / "128104"
    (chapter / "1272-128104-0001.flac").unlink()  # transcript for a missing utterance
    shutil.copy(chapter / "1272-128104-0000.flac", chapter / "1272-128104-0009.flac")  # audio without transcript
    with open(chapter / "1272-128104.trans.txt", "a") as f:
        f.write("1272-128104-0005 ,,,\n")  # empty transcript after normalisation
        f.write("1272-128104-0000 DUPLICATE\n")
    skips = SkipLog()
    cuts = scan_librispeech(mini_tree, labelled=True, skips=skips)
    assert len(cuts) == 3
    assert skips.as_dict() == {"missing_audio": 1, "audio_without_transcript": 1, "empty_transcript": 1,
                               "duplicate_id": 1}
    assert "1272-128104-0009.flac" in skips.summary()


def test_unusable_folder_is_one_clear_error(tmp_path):
    with pytest.raises(ManifestError, match="corpus folder not found"):
        scan_librispeech(tmp_path / "nope", labelled=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no \\*.trans.txt"):
        scan_librispeech(tmp_path / "empty", labelled=True)


def test_csv_table_with_relative_paths(tmp_path, demo_root):
    flacs = real_flacs(demo_root, 2)
    for f in flacs:
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "data.csv").write_text("audio,text,speaker\n" + "".join(f"{f.name},Hello there!,s1\n" for f in flacs))
    cuts = load_table_manifest(tmp_path / "data.csv")
    assert len(cuts) == 2 and cut_text(cuts[0]) == "HELLO THERE"
    (tmp_path / "bad.csv").write_text("audio,transcript\nx.flac,hi\n")
    with pytest.raises(ManifestError, match="expected audio,text"):
        load_table_manifest(tmp_path / "bad.csv")


def test_evaluate_tells_tables_from_cutsets(tmp_path, demo_root):
    import json

    from bljust.evaluate import data_cuts

    flac = real_flacs(demo_root, 1)[0]
    (tmp_path / "t.jsonl").write_text(json.dumps({"audio": str(flac), "text": "hi there"}) + "\n")
    assert cut_text(data_cuts(str(tmp_path / "t.jsonl"), 30.0)[0]) == "HI THERE"
    prepared = demo_root / "prepared" / "manifests" / "eval_dev.jsonl.gz"  # a lhotse CutSet, no "cuts" in its name
    assert len(data_cuts(str(prepared), 30.0)) == len(list((demo_root / "corpus" / "dev").rglob("*.flac")))

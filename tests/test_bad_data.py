"""Bad data, one case at a time: each is skipped and counted under its own reason, whether it is
found when manifests are built (header checks) or only when training reads the file (a corrupt
or truncated FLAC, a file changed after `prepare`). A data set that is mostly bad stops the run."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from bljust.data.audio import BadAudio, read_audio
from bljust.data.dataset import AsrDataset, BatchStream
from bljust.data.features import Cmvn, resample
from bljust.data.manifests import ManifestError, load_cuts, load_table_manifest, scan_librispeech
from bljust.data.skips import BadDataError, SkipLog, check_bad_fraction
from bljust.data.tokenizer import Tokenizer, train_tokenizer

N_GOOD = 3
NUMBERS = ("ZERO", "ONE", "TWO", "THREE")  # words: a transcript with a digit is left out (data/text.py)


def real_flacs(demo_root: Path, n: int) -> list[Path]:
    return sorted((demo_root / "corpus" / "dev").rglob("*.flac"))[:n]


def samples(flac: Path) -> np.ndarray:
    return sf.read(str(flac), dtype="float32")[0]


# Each maker turns `path` (a copy of a real utterance) into one kind of bad file.
def _non_audio(path: Path, src: Path) -> None:
    path.write_text("this is not audio\n" * 50)


def _low_rate(path: Path, src: Path) -> None:
    sf.write(str(path), samples(src)[::2], 8000, format="FLAC")


def _zero_length(path: Path, src: Path) -> None:  # WAV: libsndfile cannot open an empty FLAC at all
    sf.write(str(path), np.zeros(0, dtype="float32"), 16000, format="WAV")


def _over_long(path: Path, src: Path) -> None:  # real speech repeated past the 30 s limit
    x = samples(src)
    sf.write(str(path), np.tile(x, int(31 * 16000 / len(x)) + 1), 16000, format="FLAC")


def _truncated(path: Path, src: Path) -> None:
    data = src.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt(path: Path, src: Path) -> None:
    data = bytearray(src.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 2000):
        data[i] = (data[i] * 7 + 13) % 256
    path.write_bytes(bytes(data))


def _missing(path: Path, src: Path) -> None:
    path.unlink()


HEADER_CASES = {  # found when manifests are built: reason recorded by the scan
    "non_audio": (_non_audio, "unreadable_audio"),
    "low_sample_rate": (_low_rate, "low_sample_rate"),
    "zero_length": (_zero_length, "empty_audio"),
    "over_long": (_over_long, "too_long_audio"),
}
READ_CASES = {  # found when training reads the file (the header of a damaged FLAC is intact)
    **HEADER_CASES,
    "missing_file": (_missing, "missing_audio"),
    "truncated_flac": (_truncated, "unreadable_audio"),
    "corrupt_flac": (_corrupt, "unreadable_audio"),
}


@pytest.fixture
def table(tmp_path, demo_root) -> Path:
    """A CSV manifest of N_GOOD + 1 real utterances; the last one is the one a test breaks."""
    flacs = real_flacs(demo_root, N_GOOD + 1)
    rows = []
    for i, f in enumerate(flacs):
        shutil.copy(f, tmp_path / f"u{i}.flac")
        rows.append(f"u{i}.flac,HELLO THERE NUMBER {NUMBERS[i]}\n")
    (tmp_path / "data.csv").write_text("audio,text\n" + "".join(rows))
    return tmp_path / "data.csv"


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_bad_file_is_skipped_when_manifests_are_built(table, case):
    make, reason = HEADER_CASES[case]
    bad = table.parent / f"u{N_GOOD}.flac"
    make(bad, table.parent / "u0.flac")
    skips = SkipLog()
    cuts = load_table_manifest(table, skips, min_rate=16000)  # features.low_rate=refuse
    assert [c.id for c in cuts] == [f"u{i}" for i in range(N_GOOD)]
    assert skips.as_dict() == {reason: 1} and str(bad) in skips.summary()


@pytest.mark.parametrize("case", sorted(READ_CASES))
def test_bad_file_is_skipped_when_training_reads_it(table, demo_root, case):
    """The file goes bad after the manifest was written: the batch drops it and says why (low
    rates under features.low_rate=refuse; tests/test_telephone_audio.py has the default)."""
    make, reason = READ_CASES[case]
    cuts = load_table_manifest(table)
    make(table.parent / f"u{N_GOOD}.flac", table.parent / "u0.flac")
    prepared = demo_root / "prepared"
    ds = AsrDataset(Cmvn.load(prepared / "cmvn.pt"), Tokenizer.load(prepared / "tokenizer.model"), low_rate="refuse")
    batch = ds[cuts]
    assert batch.ids == [f"u{i}" for i in range(N_GOOD)] and batch.feats.shape[0] == N_GOOD
    assert batch.skips.as_dict() == {reason: 1}
    assert f"u{N_GOOD}.flac" in batch.skips.summary()
    with pytest.raises(BadAudio) as err:
        read_audio(table.parent / f"u{N_GOOD}.flac", 16000, 30.0, low_rate="refuse")
    assert err.value.reason == reason and f"u{N_GOOD}.flac" in str(err.value)


def test_higher_sample_rate_is_resampled_not_skipped(tmp_path, demo_root):
    src = real_flacs(demo_root, 1)[0]
    x = samples(src)
    up = resample(torch.from_numpy(x), 16000, 22050).numpy()
    sf.write(str(tmp_path / "hi.flac"), up, 22050, format="FLAC")
    wave = read_audio(tmp_path / "hi.flac", 16000)
    assert abs(len(wave) - len(x)) <= 2


def test_empty_transcript_and_unknown_characters_are_skipped(table, demo_root):
    prepared = demo_root / "prepared"
    lines = table.read_text().splitlines()
    lines[2] = "u1.flac,,,"  # empty after normalisation: skipped when the table is read
    table.write_text("\n".join(lines) + "\n")
    skips = SkipLog()
    cuts = load_table_manifest(table, skips)
    assert skips.as_dict() == {"empty_transcript": 1} and len(cuts) == N_GOOD
    # characters the tokenizer never saw: skipped when the batch is made
    tok = train_tokenizer(["HELLO THERE NUMBER " + " ".join(NUMBERS)])
    assert tok.unknown_fraction("QUIZ") > 0
    cuts = load_table_manifest(table.parent / _rewrite(table, {3: "u3.flac,QUIZ"}))
    ds = AsrDataset(Cmvn.load(prepared / "cmvn.pt"), tok)
    batch = ds[cuts]
    assert batch.skips.as_dict() == {"unknown_characters": 1} and "u3" not in batch.ids


def _rewrite(table: Path, lines: dict[int, str]) -> str:
    """A copy of `table` with some lines replaced; returns its file name."""
    rows = table.read_text().splitlines()
    for i, line in lines.items():
        rows[i] = line
    out = table.with_name("edited.csv")
    out.write_text("\n".join(rows) + "\n")
    return out.name


def test_duplicate_ids_and_missing_file_in_a_table(table):
    rows = table.read_text().splitlines()
    rows.append(rows[1])  # the same utterance again
    rows.append("nowhere.flac,HELLO")
    table.write_text("\n".join(rows) + "\n")
    skips = SkipLog()
    cuts = load_table_manifest(table, skips)
    assert len(cuts) == N_GOOD + 1
    assert skips.as_dict() == {"duplicate_id": 1, "missing_audio": 1}


@pytest.fixture
def mini_tree(tmp_path, demo_root) -> Path:
    """One LibriSpeech chapter 1272/128104 with 3 real utterances."""
    d = tmp_path / "train" / "1272" / "128104"
    d.mkdir(parents=True)
    lines = []
    for i, f in enumerate(real_flacs(demo_root, 3)):
        shutil.copy(f, d / f"1272-128104-{i:04d}.flac")
        lines.append(f"1272-128104-{i:04d} HELLO NUMBER {NUMBERS[i]}")
    (d / "1272-128104.trans.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "train"


def test_transcript_for_a_missing_utterance(mini_tree):
    chapter = mini_tree / "1272" / "128104"
    (chapter / "1272-128104-0002.flac").unlink()
    skips = SkipLog()
    cuts = scan_librispeech(mini_tree, labelled=True, skips=skips)
    assert [c.id for c in cuts] == ["1272-128104-0000", "1272-128104-0001"]
    assert skips.as_dict() == {"missing_audio": 1} and "1272-128104-0002" in skips.summary()


def test_duplicate_ids_in_a_transcript(mini_tree):
    trans = mini_tree / "1272" / "128104" / "1272-128104.trans.txt"
    trans.write_text(trans.read_text() + "1272-128104-0001 SOMETHING ELSE\n")
    skips = SkipLog()
    cuts = scan_librispeech(mini_tree, labelled=True, skips=skips)
    assert len(cuts) == 3 and skips.as_dict() == {"duplicate_id": 1}


def test_whole_unusable_manifest_is_one_clear_error(mini_tree, tmp_path):
    for f in (mini_tree / "1272" / "128104").glob("*.flac"):
        _non_audio(f, f)
    with pytest.raises(ManifestError, match=r"train: no usable utterances \(skipped 3 \(unreadable_audio: 3"):
        scan_librispeech(mini_tree, labelled=True)
    (tmp_path / "empty.csv").write_text("audio,text\n")
    with pytest.raises(ManifestError, match="empty.csv: empty manifest"):
        load_table_manifest(tmp_path / "empty.csv")
    (tmp_path / "torn.jsonl").write_text('{"audio": "a.flac", "text": "hi"}\n{"audio": "b.fl')
    with pytest.raises(ManifestError, match="torn.jsonl:2: not a JSON object"):
        load_table_manifest(tmp_path / "torn.jsonl")
    (tmp_path / "cuts.jsonl.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(ManifestError, match="cuts.jsonl.gz: not a readable lhotse CutSet"):
        load_cuts(tmp_path / "cuts.jsonl.gz")


def test_bad_fraction_limit(mini_tree):
    skips = SkipLog()
    skips.add("missing_audio", "a.flac")
    check_bad_fraction("labelled data", skips, kept=9, limit=0.1)  # 10 %: at the limit, allowed
    skips.add("unreadable_audio", "b.flac")
    with pytest.raises(BadDataError, match=r"labelled data: 2 of 11 utterances \(18%\) unusable, more than "
                                           r"train.max_bad_fraction=0.1 \(skipped 2 \(missing_audio: 1, e.g. a.flac"):
        check_bad_fraction("labelled data", skips, kept=9, limit=0.1)
    check_bad_fraction("labelled data", skips, kept=9, limit=0.1, min_seen=100)  # too few seen yet


def test_prepare_stops_on_a_mostly_bad_corpus(mini_tree, tmp_path):
    from bljust.cli import compose_config
    from bljust.prepare import prepare

    chapter = mini_tree / "1272" / "128104"
    _non_audio(chapter / "1272-128104-0000.flac", chapter / "1272-128104-0000.flac")
    cfg = compose_config(["recipe.source=librispeech", f"recipe.corpus_dir={tmp_path}", "recipe.labelled=[train]",
                          "recipe.unlabelled=[]", "recipe.dev=[train]", "recipe.test=[]",
                          f"recipe.data_dir={tmp_path}/prepared", "train.max_bad_fraction=0.2"])
    with pytest.raises(BadDataError, match=r"labelled data \(train\): 1 of 3 utterances \(33%\) unusable"):
        prepare(cfg, verbose=False)
    assert not (tmp_path / "prepared" / "prepare.json").exists()  # nothing half-prepared is trusted


def test_stream_counts_skips_per_epoch_and_keeps_them_across_resume(table, demo_root):
    prepared = demo_root / "prepared"
    cuts = load_table_manifest(table)
    _missing(table.parent / f"u{N_GOOD}.flac", table.parent / "u0.flac")
    ds = AsrDataset(Cmvn.load(prepared / "cmvn.pt"), Tokenizer.load(prepared / "tokenizer.model"))
    stream = BatchStream(cuts, ds, max_duration=10.0, seed=0, num_buckets=2)
    per_epoch = stream.batches_per_epoch()
    for _ in range(per_epoch):
        next(stream)
    state = stream.state_dict()
    next(stream)  # crosses into epoch 1: epoch 0's summary is ready
    (epoch, used, skips), = stream.finished_epochs
    assert (epoch, used, skips.as_dict()) == (0, N_GOOD, {"missing_audio": 1})
    resumed = BatchStream(cuts, ds, max_duration=10.0, seed=0, num_buckets=2)
    resumed.load_state_dict(state)
    next(resumed)
    assert resumed.finished_epochs[0][:2] == (0, N_GOOD) and resumed.skips.as_dict() == stream.skips.as_dict()

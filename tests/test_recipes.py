"""The LibriSpeech / Libri-light recipes on a miniature tree of real demo FLAC, and recipe=custom.

The miniature tree has the real layout and names: LibriSpeech/<split>/<spk>/<chapter>/
<spk>-<chapter>-<utt>.flac + <spk>-<chapter>.trans.txt, and librispeech_finetuning/1h/{0..5}/
{clean,other} and 9h/{clean,other} in the same per-chapter layout.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from conftest import FINETUNING_10H, LIBRISPEECH, libri_overrides

from bljust.data.manifests import ManifestError, cut_text, load_cuts
from bljust.errors import UserError

def ids(path: Path) -> list[str]:
    return [c.id for c in load_cuts(path)]


@pytest.mark.train
def test_librispeech_10h_manifests_and_a_few_steps(mini_libri, small_cfg, tmp_path):
    from bljust.train import Trainer

    root, expected = mini_libri
    cfg = small_cfg([*libri_overrides(root), "method=just", "train.max_steps=3", "train.eval_every=3",
                     f"run_dir={tmp_path}"])
    assert cfg.model.name == "tiny" and cfg.recipe.name == "librispeech_10h"
    table = Trainer(cfg, tmp_path).run()
    m = root / "prepared_librispeech_10h" / "manifests"
    assert ids(m / "labelled.jsonl.gz") == sorted(u for f in FINETUNING_10H for u in expected[f])
    assert ids(m / "unlabelled.jsonl.gz") == sorted(u for f in LIBRISPEECH[:3] for u in expected[f])
    assert all(cut_text(c) is None for c in load_cuts(m / "unlabelled.jsonl.gz"))
    for split in LIBRISPEECH[3:]:
        assert ids(m / f"eval_{split}.jsonl.gz") == expected[split]
    assert table["step"] == 3 and set(LIBRISPEECH[3:]) <= set(table)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("dev-clean_wer" in r and "dev-other_wer" in r for r in records)
    assert all(r.get("skipped_utterances", 0) == 0 for r in records)


@pytest.mark.parametrize("recipe,labelled,unlabelled", [
    ("librispeech_10min", ["1h/0/clean", "1h/0/other"], LIBRISPEECH[:3]),
    ("librispeech_1h", FINETUNING_10H[:12], LIBRISPEECH[:3]),
    ("librispeech_100h", ["train-clean-100"], LIBRISPEECH[1:3]),
])
def test_every_librispeech_recipe_lists_its_subset(mini_libri, small_cfg, recipe, labelled, unlabelled):
    from bljust.prepare import prepare

    root, expected = mini_libri
    cfg = small_cfg(libri_overrides(root, recipe))
    assert cfg.model.name == "tiny"
    out = prepare(cfg, verbose=False)
    assert ids(out.labelled) == sorted(u for f in labelled for u in expected[f])
    assert ids(out.unlabelled) == sorted(u for f in unlabelled for u in expected[f])


def test_unlabelled_subset_is_a_key(mini_libri, small_cfg):
    from bljust.prepare import prepare

    root, expected = mini_libri
    cfg = small_cfg([*libri_overrides(root), "recipe.unlabelled=[train-clean-100]",
                     f"recipe.data_dir={root}/prepared_u100"])
    assert ids(prepare(cfg, verbose=False).unlabelled) == expected["train-clean-100"]


def test_recipe_defaults_are_the_large_model_and_paper_masking():
    from bljust.cli import compose_config

    cfg = compose_config(["recipe=librispeech_10h"])
    assert cfg.model.name == "large" and cfg.objective.bestrq.mask_prob == 0.01
    assert cfg.recipe.labelled == FINETUNING_10H and cfg.recipe.unlabelled == LIBRISPEECH[:3]


def _prepare_error(small_cfg, overrides: list[str]) -> str:
    from bljust.prepare import prepare

    with pytest.raises(UserError) as err:
        prepare(small_cfg(overrides), verbose=False)
    return str(err.value)


def test_missing_or_misplaced_roots_are_one_clear_line(mini_libri, small_cfg, tmp_path):
    root, _ = mini_libri
    base = [*libri_overrides(root), f"recipe.data_dir={tmp_path}/p"]
    msg = _prepare_error(small_cfg, [*base, f"recipe.corpus_dir={tmp_path}/nowhere"])
    assert msg.startswith(f"recipe.corpus_dir={tmp_path}/nowhere: folder not found") and "LibriSpeech root" in msg
    msg = _prepare_error(small_cfg, [*base, f"recipe.labelled_dir={root}"])  # one level too high
    assert "recipe.labelled:" in msg and f"did you mean {root}/librispeech_finetuning?" in msg
    assert "\n" not in msg


def test_missing_split_folder_names_key_and_path(mini_libri, small_cfg, tmp_path):
    root, _ = mini_libri
    partial = tmp_path / "LibriSpeech"
    shutil.copytree(root / "LibriSpeech", partial)
    shutil.rmtree(partial / "train-other-500")
    msg = _prepare_error(small_cfg, [*libri_overrides(root), f"recipe.corpus_dir={partial}",
                                     f"recipe.data_dir={tmp_path}/p"])
    assert msg.startswith(f"recipe.unlabelled: {partial}/train-other-500 not found")


def test_folder_without_transcripts_is_a_layout_error(mini_libri, small_cfg, tmp_path):
    root, _ = mini_libri
    ft = tmp_path / "ft"
    shutil.copytree(root / "librispeech_finetuning", ft)
    for trans in (ft / "9h" / "other").rglob("*.trans.txt"):
        trans.unlink()
    msg = _prepare_error(small_cfg, [*libri_overrides(root), f"recipe.labelled_dir={ft}", f"recipe.data_dir={tmp_path}/p"])
    assert "9h/other: no *.trans.txt transcripts found" in msg


def test_missing_transcript_line_is_skipped_and_counted(mini_libri, small_cfg, tmp_path):
    from bljust.prepare import prepare

    root, expected = mini_libri
    ft = tmp_path / "ft"
    shutil.copytree(root / "librispeech_finetuning", ft)
    trans = next((ft / "9h" / "clean").rglob("*.trans.txt"))
    lines = trans.read_text().splitlines()
    trans.write_text(lines[0] + "\n")  # the second utterance's audio now has no transcript
    cfg = small_cfg([*libri_overrides(root), f"recipe.labelled_dir={ft}", f"recipe.data_dir={tmp_path}/p"])
    out = prepare(cfg, verbose=False)
    dropped = expected["9h/clean"][1]
    assert dropped not in ids(out.labelled) and len(ids(out.labelled)) == 15
    skipped = json.loads((tmp_path / "p" / "prepare.json").read_text())["skipped"]
    assert skipped["labelled"] == {"audio_without_transcript": 1}


# --- recipe=custom -------------------------------------------------------------------------------

def _export(demo_root: Path, out: Path, minutes: float, skip: float = 0.0) -> int:
    from tools.export_table import export_table

    return export_table(demo_root / "corpus" / "unlabelled", out, minutes, skip, copy_audio=True)


def test_custom_recipe_reads_tables_cutsets_and_audio_folders(demo_root, small_cfg, tmp_path):
    """Labelled CSV with relative paths, a lhotse CutSet as dev, a plain audio folder as unlabelled."""
    from bljust.prepare import prepare

    n = _export(demo_root, tmp_path / "acme" / "train.csv", 0.5)
    assert n > 3 and (tmp_path / "acme" / "audio").is_dir()
    assert not Path((tmp_path / "acme" / "train.csv").read_text().splitlines()[1].split(",")[0]).is_absolute()
    audio_only = tmp_path / "acme" / "untranscribed"
    audio_only.mkdir()
    for flac in sorted((tmp_path / "acme" / "audio").glob("*.flac"))[:3]:
        shutil.copy(flac, audio_only / flac.name)
    dev_cutset = demo_root / "prepared" / "manifests" / "eval_dev.jsonl.gz"
    cfg = small_cfg(["recipe=custom", f"recipe.corpus_dir={tmp_path}/acme", "recipe.labelled=[train.csv]",
                     "recipe.unlabelled=[untranscribed]", f"recipe.dev=[{dev_cutset}]", "recipe.test=[train.csv]",
                     f"recipe.data_dir={tmp_path}/prepared"])
    out = prepare(cfg, verbose=False)
    assert len(ids(out.labelled)) == n and len(ids(out.unlabelled)) == 3
    assert set(out.eval_splits) == {"eval_dev", "train"}
    assert ids(out.eval_splits["eval_dev"]) == ids(dev_cutset)


def test_custom_recipe_needs_labelled_and_dev(small_cfg, tmp_path):
    msg = _prepare_error(small_cfg, ["recipe=custom", f"recipe.data_dir={tmp_path}/p"])
    assert msg.startswith("recipe.labelled is empty")


def test_labelled_table_without_text_is_an_error(demo_root, small_cfg, tmp_path):
    flac = next((demo_root / "corpus" / "dev").rglob("*.flac"))
    (tmp_path / "t.csv").write_text(f"audio\n{flac}\n")
    msg = _prepare_error(small_cfg, ["recipe=custom", f"recipe.corpus_dir={tmp_path}", "recipe.labelled=[t.csv]",
                                     "recipe.dev=[t.csv]", f"recipe.data_dir={tmp_path}/p"])
    assert msg == f"{tmp_path}/t.csv: no text column; labelled data needs audio,text[,speaker][,id]"


def test_text_normalisation_is_configurable_and_shared(demo_root, small_cfg, tmp_path):
    """text.case/text.keep shape the training labels, the tokenizer and the scored references alike."""
    from bljust.data.tokenizer import Tokenizer
    from bljust.evaluate import data_cuts
    from bljust.prepare import prepare

    flacs = sorted((demo_root / "corpus" / "dev").rglob("*.flac"))[:2]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"audio": str(f), "text": f"Room 101, please! #{i}"}) + "\n"
                                              for i, f in enumerate(flacs)))
    cfg = small_cfg(["recipe=custom", f"recipe.corpus_dir={tmp_path}", "recipe.labelled=[t.jsonl]",
                     "recipe.dev=[t.jsonl]", f"recipe.data_dir={tmp_path}/p", "text.case=lower", "text.keep=\"a-z0-9'\""])
    out = prepare(cfg, verbose=False)
    assert [cut_text(c) for c in load_cuts(out.labelled)] == ["room 101 please 0", "room 101 please 1"]
    assert Tokenizer.load(out.tokenizer).unknown_fraction("room 101") == 0
    refs = [cut_text(c) for c in data_cuts(str(tmp_path / "t.jsonl"), 30.0, {"case": "lower", "keep": "a-z0-9'"})]
    assert refs == ["room 101 please 0", "room 101 please 1"]
    # The LibriSpeech default keeps no digits: such a reference is left out and counted, never cut to "ROOM PLEASE"
    with pytest.raises(UserError, match=r"no usable utterances \(skipped 2 \(digits_in_text: 2"):
        data_cuts(str(tmp_path / "t.jsonl"), 30.0)
    with pytest.raises(UserError, match=r"text.keep='a-\['"):
        prepare(small_cfg(["recipe=custom", f"recipe.corpus_dir={tmp_path}", "recipe.labelled=[t.jsonl]",
                           "recipe.dev=[t.jsonl]", f"recipe.data_dir={tmp_path}/q", 'text.keep="a-["']), verbose=False)


def test_table_relative_path_is_read_from_the_tables_folder(demo_root, tmp_path, monkeypatch):
    """A relative path is never read from the working directory; a missing one is skipped and counted."""
    from bljust.data.manifests import load_table_manifest
    from bljust.data.skips import SkipLog

    flac = next((demo_root / "corpus" / "dev").rglob("*.flac"))
    (tmp_path / "sub").mkdir()
    shutil.copy(flac, tmp_path / flac.name)  # beside the cwd, not beside the table
    (tmp_path / "sub" / "t.csv").write_text(f"audio,text\n{flac.name},hi\n{flac},hello\n")
    monkeypatch.chdir(tmp_path)
    skips = SkipLog()
    cuts = load_table_manifest(tmp_path / "sub" / "t.csv", skips)
    assert len(cuts) == 1 and cut_text(cuts[0]) == "HELLO"
    assert skips.as_dict() == {"missing_audio": 1} and f"sub/{flac.name}" in skips.summary()


def test_lhotse_cutset_segments_are_skipped_and_counted(demo_root, tmp_path):
    """Cuts that are parts of a longer recording cannot be read whole: counted, not silently wrong."""
    from bljust.data.skips import SkipLog
    from bljust.data.sources import load_entry

    cuts = load_cuts(demo_root / "prepared" / "manifests" / "eval_dev.jsonl.gz")
    first = cuts[0]
    mixed = [first.truncate(duration=first.duration / 2), *list(cuts)[1:]]
    from lhotse import CutSet

    CutSet(mixed).to_file(tmp_path / "cuts.jsonl.gz")
    skips = SkipLog()
    out = load_entry(tmp_path / "cuts.jsonl.gz", True, skips)
    assert len(out) == len(cuts) - 1 and skips.as_dict() == {"not_whole_recording": 1}
    with gzip.open(tmp_path / "cuts.jsonl.gz", "rt") as f:
        assert "recording" in f.readline()
    with pytest.raises(ManifestError, match="not found"):
        load_entry(tmp_path / "nope.jsonl.gz", True, skips)

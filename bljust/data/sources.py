"""Where a recipe's data lives: split entries (folders or manifest files) to uniform CutSets.

A recipe lists entries per role (labelled, unlabelled, dev, test). An entry is a LibriSpeech-layout
folder, a folder of audio (unlabelled only), a CSV/JSONL table (`audio,text[,speaker][,id]`) or a
lhotse CutSet. Whatever the entry, the result is the same kind of CutSet: one whole-recording cut
per utterance with normalised text (or no text for unlabelled data, so no label can leak into
unsupervised training). A missing root or entry is one line naming the config key and the path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lhotse import CutSet
from lhotse.utils import fastcopy

from bljust.data.manifests import (ManifestError, _recording, channel_cuts, cut_text, is_table_manifest, load_cuts,
                                   load_table_manifest, scan_librispeech)
from bljust.data.skips import SkipLog
from bljust.data.text import Normalizer, normalize_text

ROLES = ("labelled", "unlabelled", "dev", "test")

# What each root should hold, for the error message when it does not.
LAYOUT_HINTS = {
    ("librispeech", "recipe.corpus_dir"): "the LibriSpeech root holding dev-clean/, test-clean/, train-clean-100/ ... "
                                          "(openslr.org/12, see recipes/librispeech_10h/README.md)",
    ("librispeech", "recipe.labelled_dir"): "Libri-light's librispeech_finetuning root holding 1h/{0..5}/{clean,other} "
                                            "and 9h/{clean,other} (see recipes/librispeech_10h/README.md)",
}
# Folder names a user may have pointed one level too high above.
_KNOWN_TOPS = ("LibriSpeech", "librispeech_finetuning")


def root_key(role: str, recipe: Any) -> str:
    return "recipe.labelled_dir" if role == "labelled" and recipe.labelled_dir else "recipe.corpus_dir"


def entry_path(role: str, entry: str, recipe: Any) -> Path:
    """Absolute entries as they are; relative ones under the role's root."""
    root = recipe.labelled_dir if role == "labelled" and recipe.labelled_dir else recipe.corpus_dir
    path = Path(entry)
    return path if path.is_absolute() else Path(root) / path


def _expected(recipe: Any, key: str) -> str:
    hint = LAYOUT_HINTS.get((recipe.source, key))
    return f" (expected {hint})" if hint else ""


def _did_you_mean(root: Path, entry: str) -> str:
    for top in _KNOWN_TOPS:
        if (root / top / entry).exists():
            return f"; did you mean {root / top}?"
    return ""


def check_sources(recipe: Any) -> None:
    """Raise one clear ManifestError for an empty role, a missing root or a missing entry."""
    for role in ("labelled", "dev"):
        if not recipe[role]:
            raise ManifestError(f"recipe.{role} is empty: give at least one folder or manifest, "
                                f"e.g. recipe.{role}=[/path/to/{role}.csv]")
    for role in ROLES:
        for entry in recipe[role]:
            key = root_key(role, recipe)
            root = Path(recipe.labelled_dir if key == "recipe.labelled_dir" else recipe.corpus_dir)
            if not Path(entry).is_absolute() and not root.is_dir():
                raise ManifestError(f"{key}={root}: folder not found{_expected(recipe, key)}")
            path = entry_path(role, entry, recipe)
            if not path.exists():
                raise ManifestError(f"recipe.{role}: {path} not found{_did_you_mean(root, entry)}"
                                    f"{_expected(recipe, key) if not Path(entry).is_absolute() else ''}")


def load_entry(path: Path, labelled: bool, skips: SkipLog, max_seconds: float = 30.0,
               normalize: Normalizer = normalize_text, min_rate: int = 0, channels: str | int = "mix") -> CutSet:
    """One entry (folder, table or CutSet file) as a uniform CutSet; bad utterances counted in
    `skips`, among them audio recorded below `min_rate` Hz (0: any rate); files with several
    channels mixed, split or picked as `channels` (features.channels) says."""
    if path.is_dir():
        return scan_librispeech(path, labelled, skips, max_seconds, normalize, min_rate, channels)
    if is_table_manifest(path):
        cuts = load_table_manifest(path, skips, max_seconds, normalize, min_rate, labelled=labelled,
                                   channels=channels)
        if labelled and cut_text(cuts[0]) is None:
            raise ManifestError(f"{path}: no text column; labelled data needs audio,text[,speaker][,id]")
    else:
        cuts = import_cutset(load_cuts(path), labelled, skips, max_seconds, normalize, path, min_rate, channels)
    return cuts if labelled else strip_text(cuts)


def import_cutset(cuts: CutSet, labelled: bool, skips: SkipLog, max_seconds: float,
                  normalize: Normalizer, path: Path, min_rate: int = 0, channels: str | int = "mix") -> CutSet:
    """A user's lhotse CutSet re-made in our form: whole single-file recordings, normalised text.

    Features are computed from the whole audio file, so a cut that is a segment of a longer
    recording (or has several supervisions, or no file source) cannot be used as it is: it is
    skipped and counted (split such recordings into files first, e.g. with lhotse's `cut.save_audio`).
    A MonoCut of a multichannel recording keeps its channel; other cuts follow `channels`.
    """
    made_cuts = []
    for cut in cuts:
        rec = getattr(cut, "recording", None)
        if rec is None or len(rec.sources) != 1 or rec.sources[0].type != "file":
            skips.add("no_audio_file", cut.id)
            continue
        if len(cut.supervisions) > 1 or cut.start > 0 or abs(cut.duration - rec.duration) > 0.01:
            skips.add("not_whole_recording", cut.id)
            continue
        text, problem = normalize.label(cut_text(cut) or "") if labelled else (None, None)
        if problem:
            skips.add(problem, cut.id)
            continue
        source = Path(rec.sources[0].source)
        channel = cut.channel if isinstance(cut.channel, int) and rec.num_channels > 1 else None
        made = _recording(cut.id, source if source.is_absolute() else path.parent / source, skips, max_seconds,
                          min_rate, channel)
        if made is None:
            continue
        speaker = cut.supervisions[0].speaker if cut.supervisions else None
        made_cuts.extend(channel_cuts(made, text, speaker, channels, skips, channel))
    if not made_cuts:
        raise ManifestError(f"{path}: no usable utterances ({skips.summary()})")
    return CutSet.from_cuts(made_cuts)


def strip_text(cuts: CutSet) -> CutSet:
    """Unlabelled view of a CutSet: the same cuts, no transcript."""
    return cuts.map_supervisions(lambda s: fastcopy(s, text=None))


def load_split(recipe: Any, role: str, entries: list[str], skips: SkipLog, max_seconds: float,
               normalize: Normalizer, min_rate: int = 0, channels: str | int = "mix") -> CutSet:
    """All entries of one role joined into one CutSet; an id seen twice is kept once and counted."""
    seen: set[str] = set()
    joined = []
    for entry in entries:
        for cut in load_entry(entry_path(role, entry, recipe), role != "unlabelled", skips, max_seconds, normalize,
                              min_rate, channels):
            if cut.id in seen:
                skips.add("duplicate_id", f"{entry}:{cut.id}")
                continue
            seen.add(cut.id)
            joined.append(cut)
    return CutSet(joined)

"""lhotse CutSets from corpora in LibriSpeech layout (speaker/chapter/utt.flac + trans.txt).

Everything downstream reads these manifests; nothing else walks directories. Problems with single
utterances are skipped and counted; a folder that is missing or holds no usable utterance is one
clear error.
"""

from __future__ import annotations

from pathlib import Path

import soundfile as sf
from lhotse import CutSet, MonoCut, MultiCut, Recording, SupervisionSegment
from lhotse.audio import AudioSource

from bljust.data.audio import BadAudio, check_header
from bljust.data.skips import SkipLog
from bljust.errors import UserError
from bljust.data.text import Normalizer, normalize_text

AUDIO_SUFFIXES = (".flac", ".wav", ".mp3", ".ogg", ".opus")  # what libsndfile >= 1.1 reads


class ManifestError(UserError, ValueError):
    """A corpus folder or manifest that cannot be used at all; the message names it."""


def _recording(rec_id: str, path: Path, skips: SkipLog, max_seconds: float, min_rate: int = 0,
               channel: int | None = None) -> Recording | None:
    """A lhotse Recording (all its channels) from the file header, or None (counted) if the file
    is unusable or lacks `channel`.

    Only the header is read here; faults in the samples (a corrupt or truncated FLAC) surface
    when training reads the file and are skipped and counted there. Files recorded below
    `min_rate` Hz are skipped (0: any rate; see audio.lowest_rate).
    """
    try:
        info = sf.info(str(path))
    except Exception:
        skips.add("unreadable_audio", str(path))
        return None
    try:
        check_header(path, info.frames, info.samplerate, info.channels, min_rate, max_seconds, channel)
    except BadAudio as err:
        skips.add(err.reason, str(path))
        return None
    duration = info.frames / info.samplerate
    source = AudioSource(type="file", channels=list(range(info.channels)), source=str(path.resolve()))
    return Recording(rec_id, [source], info.samplerate, info.frames, duration)


def channel_cuts(rec: Recording, text: str | None, speaker: str | None, channels: str | int, skips: SkipLog,
                 channel: int | None = None):
    """The cuts one recording gives under features.channels (config.parse_channels): a mono file
    one MonoCut; with several channels, `mix` one MultiCut over all of them (read as their
    average), a number one MonoCut of that channel, `split` one MonoCut per channel with ids
    `<id>-ch<k>` (unlabelled audio only: one transcript cannot be both sides of a call; a table's
    `channel` column gives each channel its own row and text). `channel` (that column) wins."""
    def mono(cut_id: str, k: int) -> MonoCut:
        sup = SupervisionSegment(cut_id, rec.id, 0.0, rec.duration, channel=k, text=text, speaker=speaker)
        return MonoCut(cut_id, 0.0, rec.duration, k, supervisions=[sup], recording=rec)

    n = rec.num_channels
    if channel is not None or n == 1:
        return [mono(rec.id, channel or 0)]
    if channels == "mix":
        every = list(range(n))
        sup = SupervisionSegment(rec.id, rec.id, 0.0, rec.duration, channel=every, text=text, speaker=speaker)
        return [MultiCut(rec.id, 0.0, rec.duration, every, supervisions=[sup], recording=rec)]
    if channels == "split":
        if text is not None:
            skips.add("multichannel_labelled", f"{rec.sources[0].source} (features.channels=split: give each "
                      "channel its own row and text with a table's channel column)")
            return []
        return [mono(f"{rec.id}-ch{k}", k) for k in range(n)]
    if channels >= n:
        skips.add("missing_channel", f"{rec.sources[0].source}: has {n} channels, features.channels={channels}")
        return []
    return [mono(rec.id, channels)]


def _find_audio(folder: Path, utt_id: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        candidate = folder / f"{utt_id}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _read_transcripts(trans: Path, skips: SkipLog, normalize: Normalizer = normalize_text,
                      refused: set[str] | None = None) -> dict[str, str]:
    """UTTID -> normalised text from one chapter's trans.txt; the ids of lines that cannot be a
    label (digits, nothing left) go into `refused`, as they are already counted."""
    texts: dict[str, str] = {}
    for line_no, line in enumerate(trans.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        utt_id, _, text = line.strip().partition(" ")
        text, problem = normalize.label(text)
        if problem:
            skips.add(problem, f"{trans}:{line_no}")
            if refused is not None:
                refused.add(utt_id)
        elif utt_id in texts:
            skips.add("duplicate_id", f"{trans}:{line_no}")
        else:
            texts[utt_id] = text
    return texts


def scan_librispeech(
    folder: str | Path, labelled: bool, skips: SkipLog | None = None, max_seconds: float = 30.0,
    normalize: Normalizer = normalize_text, min_rate: int = 0, channels: str | int = "mix",
) -> CutSet:
    """All utterances under `folder` as a CutSet, sorted by id.

    labelled=True: one cut per trans.txt line with existing audio; the supervision carries the
    normalised text. labelled=False: one cut per audio file; the supervision carries no text
    (transcripts, if any, are not read), so no label can leak into unsupervised training.
    A file with several channels gives the cuts `channel_cuts` says for `channels`.
    """
    folder = Path(folder)
    skips = skips if skips is not None else SkipLog()
    if not folder.is_dir():
        raise ManifestError(f"{folder}: corpus folder not found")
    cuts: list = []
    seen: set[str] = set()

    def add(utt_id: str, path: Path, text: str | None) -> None:
        if utt_id in seen:
            skips.add("duplicate_id", str(path))
            return
        rec = _recording(utt_id, path, skips, max_seconds, min_rate)
        if rec is None:
            return
        seen.add(utt_id)
        cuts.extend(channel_cuts(rec, text, utt_id.split("-")[0], channels, skips))

    if labelled:
        transcripts = sorted(folder.rglob("*.trans.txt"))
        if not transcripts:
            raise ManifestError(f"{folder}: no *.trans.txt transcripts found (expected LibriSpeech layout)")
        for trans in transcripts:
            refused: set[str] = set()
            texts = _read_transcripts(trans, skips, normalize, refused)
            for utt_id, text in sorted(texts.items()):
                path = _find_audio(trans.parent, utt_id)
                if path is None:
                    skips.add("missing_audio", f"{trans.parent / utt_id}")
                else:
                    add(utt_id, path, text)
            for audio in sorted(p for p in trans.parent.iterdir() if p.suffix in AUDIO_SUFFIXES):
                if audio.stem not in texts and audio.stem not in refused:  # one utterance, one count
                    skips.add("audio_without_transcript", str(audio))
    else:
        for path in sorted(p for p in folder.rglob("*") if p.suffix in AUDIO_SUFFIXES):
            add(path.stem, path, None)
    if not cuts:
        raise ManifestError(f"{folder}: no usable utterances ({skips.summary()})")
    return CutSet.from_cuts(cuts)


def read_transcripts(folder: str | Path) -> dict[str, str]:
    """UTTID -> normalised text from every *.trans.txt under `folder`; empty when there are none.

    For analysis only (e.g. scoring pseudo-labels of a split used as unlabelled): training never
    reads the transcripts of an unlabelled split.
    """
    texts: dict[str, str] = {}
    for trans in sorted(Path(folder).rglob("*.trans.txt")):
        texts.update(_read_transcripts(trans, SkipLog()))
    return texts


def cut_text(cut) -> str | None:
    """The transcript of a single-supervision cut, or None for unlabelled cuts."""
    return cut.supervisions[0].text if cut.supervisions else None


def load_cuts(path: str | Path) -> CutSet:
    """Read a CutSet manifest (JSONL or JSONL.gz) with a one-line error when it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (run `python -m bljust.prepare` first)")
    try:
        return CutSet.from_file(path)
    except Exception as err:
        raise ManifestError(f"{path}: not a readable lhotse CutSet ({str(err).splitlines()[0]})") from None


TABLE_COLUMNS = {"audio", "text", "speaker", "id", "channel"}


def is_table_manifest(path: str | Path) -> bool:
    """CSV, or JSONL whose first record has an `audio` field (a lhotse cut has `recording`)."""
    import gzip
    import json

    path = Path(path)
    if path.suffix == ".csv":
        return True
    if not path.is_file():
        return False
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "{}")
        return "audio" in json.loads(first)
    except (OSError, ValueError):
        return False


def load_table_manifest(path: str | Path, skips: SkipLog | None = None, max_seconds: float = 30.0,
                        normalize: Normalizer = normalize_text, min_rate: int = 0,
                        labelled: bool = True, channels: str | int = "mix") -> CutSet:
    """A CutSet from a plain CSV (header row) or JSONL table with `audio,text[,speaker][,id][,channel]`.

    `channel` (0 = first) reads one channel of the file: a call's agent and customer are two rows
    of one file, each with its own text and id. Without it, a file with several channels gives
    the cuts `channel_cuts` says for `channels` (features.channels).

    labelled=False: the text column, if any, is not read (unlabelled audio needs no transcript).

    Relative audio paths are read relative to the table's own folder, so a table and its audio
    can move together. Unknown columns are an error (a typo like `transcript` would otherwise
    silently train on nothing); unusable rows are skipped and counted.
    """
    import csv
    import gzip
    import json

    path = Path(path)
    skips = skips if skips is not None else SkipLog()
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            if path.suffix == ".csv":
                rows = list(csv.DictReader(f))
            else:
                rows = []
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        rows.append(dict(json.loads(line)))
                    except (ValueError, TypeError):
                        raise ManifestError(f"{path}:{n}: not a JSON object") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ManifestError(f"{path}: not a readable CSV/JSONL table ({str(err).splitlines()[0]})") from None
    if not rows:
        raise ManifestError(f"{path}: empty manifest")
    columns = set(rows[0])
    if "audio" not in columns or not columns <= TABLE_COLUMNS:
        raise ManifestError(f"{path}: columns {sorted(columns)}; expected audio,text[,speaker][,id][,channel]")
    cuts, seen = [], set()
    for n, row in enumerate(rows, 1):
        audio = Path(row["audio"])
        audio = audio if audio.is_absolute() else path.parent / audio
        channel = row.get("channel")
        if channel not in (None, ""):
            if not str(channel).strip().isdigit():
                raise ManifestError(f"{path}:{n}: channel={channel!r}; expected a channel number (0 = the first)")
            channel = int(str(channel).strip())
        else:
            channel = None
        utt_id = row.get("id") or (audio.stem if channel is None else f"{audio.stem}-ch{channel}")
        text, problem = normalize.label(row.get("text") or "") if labelled and "text" in columns else (None, None)
        if problem:
            skips.add(problem, f"{path}:{n}")
            continue
        if utt_id in seen:
            skips.add("duplicate_id", f"{path}:{n}")
            continue
        if not audio.is_file():
            skips.add("missing_audio", str(audio))
            continue
        rec = _recording(utt_id, audio, skips, max_seconds, min_rate, channel)
        if rec is None:
            continue
        seen.add(utt_id)
        cuts.extend(channel_cuts(rec, text, row.get("speaker") or None, channels, skips, channel))
    if not cuts:
        raise ManifestError(f"{path}: no usable utterances ({skips.summary()})")
    return CutSet.from_cuts(cuts)

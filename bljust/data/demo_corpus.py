"""Build the offline demo corpus: fortune-cookie sentences spoken by espeak-ng, laid out like LibriSpeech.

Splits are train (labelled), unlabelled, dev and test. Dev/test sentences never occur in the
training splits, and dev/test speakers use espeak-ng voice variants that training never hears.
The same spec always gives identical transcripts and audio.
"""

from __future__ import annotations

import functools
import io
import json
import os
import random
import re
import shutil
import subprocess
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Iterator

import soundfile as sf
import torch

from bljust.data.features import resample
from bljust.data.text import normalize_text
from bljust.errors import UserError

FORTUNES_DIR = Path("/usr/share/games/fortunes")
VARIANTS_DIRS = (  # Debian amd64 first; the others cover arm64 and non-Debian installs
    "/usr/lib/x86_64-linux-gnu/espeak-ng-data/voices/!v",
    "/usr/lib/aarch64-linux-gnu/espeak-ng-data/voices/!v",
    "/usr/share/espeak-ng-data/voices/!v",
)
ESPEAK_MISSING = "espeak-ng not found: install it with `apt-get install -y espeak-ng fortunes`"
SAMPLE_RATE = 16000
SPLITS = ("dev", "test", "train", "unlabelled")  # generation order: dev/test do not depend on train sizes
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")
NATURAL_VARIANTS = (
    "m1 m2 m3 m4 m5 m6 m7 m8 f1 f2 f3 f4 f5 klatt klatt2 klatt4 Andy Gene Lee Mike adam david edward "
    "john max paul rob Alicia Annie anika belinda linda shelby steph aunty"
).split()
HELD_OUT = {"dev": (2, 1), "test": (2, 1)}  # (male, female) variants reserved for each evaluation split
BATCH = 64  # most utterances synthesised per round; never derived from `workers`, which must not change output

_RAW_OK = re.compile(r"[A-Za-z'.,;:!?\"()\- ]+")  # letters and ordinary punctuation only
_ACRONYM = re.compile(r"[A-Z]{2,}")  # lower-cased for espeak, "IBM" would be read as a word
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"')])\s+")
_WORD = re.compile(r"[A-Z]+(?:'[A-Z]+)*")


@dataclass
class DemoCorpusSpec:
    """Sizes and seed of a demo corpus; `workers` only changes speed, never the output."""

    seed: int = 0
    train_minutes: float = 15.0  # labelled training split
    unlabelled_minutes: float = 120.0  # unlabelled split (transcripts written but never used for training)
    dev_minutes: float = 10.0
    test_minutes: float = 10.0
    workers: int = 2


@dataclass
class Utterance:
    """One planned recording: who says what, and where the FLAC goes."""

    uttid: str
    text: str  # upper-case transcript
    speaker: int
    chapter: int
    voice: str  # espeak-ng `-v` argument, e.g. "en-us+m3"
    rate: int
    pitch: int


class DemoCorpusError(UserError, RuntimeError):
    """The demo corpus cannot be made here; the message says what to install or change."""


def require_espeak() -> None:
    """Fail early with one actionable line when espeak-ng or the fortunes text is missing."""
    if shutil.which("espeak-ng") is None or not _fortune_files():
        raise DemoCorpusError(ESPEAK_MISSING)


def _fortune_files() -> list[Path]:
    """Plain fortune text files (the .u8 names are symlinks to them, .dat are indexes)."""
    if not FORTUNES_DIR.is_dir():
        return []
    return sorted(p for p in FORTUNES_DIR.iterdir()
                  if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8"))


def clean_sentence(raw: str) -> str | None:
    """Return the upper-case transcript of a raw sentence, or None when it is unsuitable."""
    if not _RAW_OK.fullmatch(raw) or _ACRONYM.search(raw):
        return None
    words = [w.strip("'") for w in normalize_text(raw).split()]
    words = [w for w in words if w]
    if not 3 <= len(words) <= 20 or not all(_WORD.fullmatch(w) for w in words):
        return None
    return " ".join(words)


@functools.cache
def _fortune_sentences() -> tuple[str, ...]:
    """Every distinct usable fortune sentence, sorted (set order is not reproducible). Parsed once
    a process: the corpus builders, the LM text and the target corpus's exclusion each ask for it."""
    found: set[str] = set()
    for path in _fortune_files():
        for cookie in re.split(r"^%$", path.read_text(encoding="utf-8", errors="replace"), flags=re.M):
            # Attribution lines ("-- Mark Twain") are not part of the quote.
            lines = [ln.strip() for ln in cookie.splitlines() if not ln.strip().startswith("--")]
            for raw in _SENTENCE_END.split(" ".join(lines).strip()):
                if (sentence := clean_sentence(raw)) is not None:
                    found.add(sentence)
    return tuple(sorted(found))


def load_sentences(seed: int) -> list[str]:
    """All distinct usable fortune sentences, in a seed-determined order."""
    ordered = list(_fortune_sentences())
    random.Random(seed).shuffle(ordered)
    return ordered


def partition_sentences(sentences: list[str], spec: DemoCorpusSpec) -> dict[str, list[str]]:
    """Cut the sentence list into disjoint pools, one per split.

    `spec` is read for its dev/test/train/unlabelled minutes only (the target corpus's spec too).
    Dev and test take a fixed reserve first (so they do not change with the training sizes);
    train and unlabelled share the rest in proportion to their minutes.
    """
    pools, start = {}, 0
    for split in ("dev", "test"):
        # Utterances average ~3.4 s; reserving one sentence per 2 s leaves a wide margin.
        size = int(getattr(spec, f"{split}_minutes") * 30) + 50
        pools[split], start = sentences[start:start + size], start + size
    rest = sentences[start:]
    train_share = spec.train_minutes / max(spec.train_minutes + spec.unlabelled_minutes, 1e-9)
    cut = round(len(rest) * train_share)
    pools["train"], pools["unlabelled"] = rest[:cut], rest[cut:]
    return pools


# The LM text holds out the dev and test reserves of splits at least this long, whatever `spec`
# says: `build_lm text=demo` knows no corpus, and the bench's 15-minute splits reach past the
# default 10-minute reserves.
LM_HELD_OUT_MINUTES = 30.0


def lm_sentences(spec: DemoCorpusSpec) -> list[str]:
    """The demo's LM text: every usable sentence of its source except the dev and test reserves.

    The reserves are one prefix of the shuffled list whose length grows with dev/test minutes, so
    holding out those of `spec`'s splits or of LM_HELD_OUT_MINUTES ones, whichever is longer, also
    holds out the dev and test sentences of every demo corpus with splits no longer than that.
    """
    sentences = load_sentences(spec.seed)
    widest = replace(spec, dev_minutes=max(spec.dev_minutes, LM_HELD_OUT_MINUTES),
                     test_minutes=max(spec.test_minutes, LM_HELD_OUT_MINUTES))
    held_out = sum(len(p) for split, p in partition_sentences(sentences, widest).items() if split in HELD_OUT)
    return sentences[held_out:]


def partition_variants(seed: int) -> dict[str, list[str]]:
    """Give dev and test their own unseen variants (balanced by gender); the rest go to training."""
    folder = next((Path(d) for d in VARIANTS_DIRS if Path(d).is_dir()), Path(VARIANTS_DIRS[0]))
    available = [v for v in NATURAL_VARIANTS if (folder / v).is_file()]
    if len(available) < 8:
        raise DemoCorpusError(f"demo corpus: only {len(available)} espeak-ng voice variants found in {folder}")
    female = [v for v in available if "gender female" in (folder / v).read_text(errors="replace")]
    male = [v for v in available if v not in female]
    rng = random.Random(f"{seed}-variants")
    rng.shuffle(male)
    rng.shuffle(female)
    split_variants = {}
    for split, (n_male, n_female) in HELD_OUT.items():
        split_variants[split] = male[:n_male] + female[:n_female]
        male, female = male[n_male:], female[n_female:]
    split_variants["train"] = split_variants["unlabelled"] = sorted(male + female)
    return split_variants


def plan_split(split: str, pool: list[str], variants: list[str], minutes: float, seed: int,
               ids: dict[str, int]) -> Iterator[Utterance]:
    """Yield utterances of one split speaker by speaker; `ids` numbers speakers/chapters corpus-wide."""
    rng = random.Random(f"{seed}-{split}")
    # Dev/test: ~8 speakers whatever the size (about 3 s per utterance); training: 25-40 each.
    per_eval_speaker = max(1, min(40, round(minutes * 20 / 8)))
    sentences = iter(pool)
    while True:
        speaker, ids["speaker"] = ids["speaker"], ids["speaker"] + 1
        voice = f"{rng.choice(ACCENTS)}+{rng.choice(variants)}"
        rate, pitch = rng.randint(130, 190), rng.randint(30, 70)
        n_utts = per_eval_speaker if split in HELD_OUT else rng.randint(25, 40)
        n_chapters = 2 if n_utts >= 20 and rng.random() < 0.5 else 1
        for c in range(n_chapters):
            chapter, ids["chapter"] = ids["chapter"], ids["chapter"] + 1
            for idx in range(n_utts // n_chapters + (c < n_utts % n_chapters)):
                text = next(sentences, None)
                if text is None:
                    raise DemoCorpusError(f"demo corpus: not enough sentences for {minutes} minutes of {split}")
                yield Utterance(f"{speaker}-{chapter}-{idx:04d}", text, speaker, chapter, voice, rate, pitch)


def flac_path(split_dir: Path, utt: Utterance) -> Path:
    """LibriSpeech location of an utterance: split/speaker/chapter/uttid.flac."""
    return split_dir / str(utt.speaker) / str(utt.chapter) / f"{utt.uttid}.flac"


def synthesise(job: tuple[str, str, int, int, str]) -> int:
    """Speak one sentence with espeak-ng into a 16 kHz 16-bit FLAC; return its length in samples."""
    text, voice, rate, pitch, path = job
    # Lower case: espeak-ng spells out upper-case words ("US" -> "U S").
    cmd = ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "--stdout", text.lower()]
    wav = subprocess.run(cmd, capture_output=True, check=True).stdout
    audio, rate_in = sf.read(io.BytesIO(wav), dtype="float32")
    audio = resample(torch.from_numpy(audio), rate_in, SAMPLE_RATE).clamp(-1, 1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio.numpy(), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return audio.numel()


def _init_worker() -> None:
    """One torch thread per process: the pool already uses every core."""
    torch.set_num_threads(1)


def make_split(split: str, plan: Iterator[Utterance], minutes: float, split_dir: Path,
               pool: Pool | None) -> list[tuple[Utterance, int]]:
    """Synthesise utterances in order until the split holds `minutes` of audio; return (utt, samples)."""
    target, total, kept, next_report = minutes * 60 * SAMPLE_RATE, 0, [], 0.1
    while total < target:
        # Near the end, plan only about what is still missing (counting a short ~2 s per
        # utterance), so few speaker ids are spent on utterances that get dropped.
        batch = [next(plan) for _ in range(min(BATCH, 2 + int((target - total) / SAMPLE_RATE / 2)))]
        jobs = [(u.text, u.voice, u.rate, u.pitch, str(flac_path(split_dir, u))) for u in batch]
        for utt, samples in zip(batch, pool.map(synthesise, jobs) if pool else map(synthesise, jobs)):
            if total < target:
                kept.append((utt, samples))
                total += samples
            else:  # overshoot of the last batch: drop it so the split stops at the target
                _remove_with_empty_parents(flac_path(split_dir, utt), split_dir)
        if total / target >= next_report or total >= target:
            done = min(1.0, total / target)
            print(f"demo corpus: {split} {len(kept)}/~{round(len(kept) / done)} utterances "
                  f"({total / SAMPLE_RATE / 60:.1f}/{minutes:g} min)", flush=True)
            next_report = (int(done * 10) + 1) / 10
    return kept


def _remove_with_empty_parents(path: Path, stop: Path) -> None:
    """Delete a file and the chapter/speaker folders it leaves empty."""
    path.unlink(missing_ok=True)
    for parent in (path.parent, path.parent.parent):
        if parent != stop and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def write_transcripts(split_dir: Path, kept: list[tuple[Utterance, int]]) -> None:
    """Write one `{speaker}-{chapter}.trans.txt` per chapter, lines `UTTID TRANSCRIPT`."""
    chapters: dict[tuple[int, int], list[Utterance]] = defaultdict(list)
    for utt, _ in kept:
        chapters[utt.speaker, utt.chapter].append(utt)
    for (speaker, chapter), utts in chapters.items():
        lines = "".join(f"{u.uttid} {u.text}\n" for u in utts)
        (split_dir / str(speaker) / str(chapter) / f"{speaker}-{chapter}.trans.txt").write_text(lines)


def _spec_key(spec: DemoCorpusSpec) -> dict:
    """Spec fields that change the output (`workers` does not)."""
    return {k: v for k, v in asdict(spec).items() if k != "workers"}


def corpus_is_complete(out_dir: Path, spec: DemoCorpusSpec | None = None) -> bool:
    """True when `out_dir` holds a finished corpus (corpus.json is written last) matching `spec`."""
    summary_path = Path(out_dir) / "corpus.json"
    if not summary_path.is_file():
        return False
    if spec is None:
        return True
    try:
        saved = json.loads(summary_path.read_text())["spec"]
    except (ValueError, KeyError):
        return False
    return {k: saved.get(k) for k in _spec_key(spec)} == _spec_key(spec)


def make_demo_corpus(out_dir: Path, spec: DemoCorpusSpec) -> dict:
    """(Re)generate the corpus in `out_dir`, replacing whatever is there; return its summary.

    Work happens in `<out_dir>.partial` which is renamed at the end, so an interrupted run never
    looks complete. Call `corpus_is_complete` first to reuse an existing corpus.
    """
    require_espeak()
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pools = partition_sentences(load_sentences(spec.seed), spec)
    variants = partition_variants(spec.seed)
    print(f"demo corpus: {sum(map(len, pools.values()))} sentences, writing {out_dir}", flush=True)
    ids = {"speaker": 100, "chapter": 1000}
    summary: dict = {"spec": asdict(spec), "sample_rate": SAMPLE_RATE, "splits": {}}
    speaker_rows = ["speaker\tsplit\taccent\tvariant\trate\tpitch\n"]
    pool = Pool(spec.workers, initializer=_init_worker) if spec.workers > 1 else None
    try:
        for split in SPLITS:
            minutes = getattr(spec, f"{split}_minutes")
            plan = plan_split(split, pools[split], variants[split], minutes, spec.seed, ids)
            (tmp / split).mkdir()
            kept = make_split(split, plan, minutes, tmp / split, pool) if minutes > 0 else []
            write_transcripts(tmp / split, kept)
            speakers = {u.speaker: u for u, _ in kept}
            for speaker, u in speakers.items():
                accent, variant = u.voice.split("+")
                speaker_rows.append(f"{speaker}\t{split}\t{accent}\t{variant}\t{u.rate}\t{u.pitch}\n")
            summary["splits"][split] = {
                "utterances": len(kept),
                "speakers": len(speakers),
                "hours": round(sum(n for _, n in kept) / SAMPLE_RATE / 3600, 4),
                "variants": sorted({u.voice.split("+")[1] for u in speakers.values()}),
            }
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    (tmp / "speakers.tsv").write_text("".join(speaker_rows))
    (tmp / "corpus.json.tmp").write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp / "corpus.json.tmp", tmp / "corpus.json")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return summary

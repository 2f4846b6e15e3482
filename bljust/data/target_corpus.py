"""Build the telephone target domain of the adaptation study: flite voices, a phone line, noise.

Everything that makes it a different domain from the espeak-ng demo corpus (the source):
- engine and speakers: Debian's flite, whose awb/rms/slt voices are built from recordings of real
  speakers (kal/kal16 are diphone voices), each speaker a (voice, duration stretch, mean f0)
  identity; the labelled splits never use the rms and slt voices, and no speaker identity is in
  two splits, so dev and test callers are unseen in the labelled subset;
- text: WordNet's glosses and example phrases (wordnet-base), dictionary prose instead of fortune
  cookies; a sentence that also occurs among the fortunes is dropped;
- channel, per utterance: additive noise (white, pink or brown) at a random SNR, the telephone
  band (300-3400 Hz, 4th-order Butterworth), 8 kHz, a level change with clipping, and one codec
  per speaker's line (G.711 mu-law or A-law, or GSM 06.10), stored as that codec's WAV so the
  reader decodes it as a company's call recordings would be decoded.

Layout is LibriSpeech's (split/speaker/chapter/utt.wav + chapter.trans.txt) with splits train
(the largest labelled pool), unlabelled, dev and test, plus `train_<N>min.csv` tables: nested
labelled subsets of whole speakers (the 5-minute one inside the 15-minute one inside train), the
Libri-light way, and `noise/`: noise recordings for the augmentation (data/augment.py), drawn
apart from the channel's. The same spec always gives the same corpus.
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
from dataclasses import asdict, dataclass, field
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import torch
from scipy.signal import butter, sosfilt

from bljust.data.demo_corpus import (LM_HELD_OUT_MINUTES, DemoCorpusError, _init_worker, _remove_with_empty_parents,
                                     clean_sentence, load_sentences, partition_sentences, write_transcripts)
from bljust.data.features import resample

WORDNET_DIR = Path("/usr/share/wordnet")
FLITE_MISSING = "flite or WordNet not found: install them with `apt-get install -y flite wordnet-base`"
LINE_RATE = 8000
SPLITS = ("dev", "test", "train", "unlabelled")
VOICES = ("awb", "rms", "slt", "kal16", "kal")
LABELLED_VOICES = ("awb", "kal16", "kal")  # rms and slt speak only in unlabelled, dev and test
FEMALE = ("slt",)
STRETCHES = (0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2, 1.25)
F0 = {"male": (90, 100, 110, 120, 130, 140, 150), "female": (160, 175, 190, 205, 220, 235, 250)}
CODECS = {"ulaw": "ULAW", "alaw": "ALAW", "gsm": "GSM610"}  # soundfile WAV subtypes
NOISES = ("white", "pink", "brown")
BAND_HZ = (300.0, 3400.0)
NOMINAL_DBFS = -26.0  # speech level on a telephone line (ITU-T P.56's usual active level)
EVAL_SPEAKERS = 8
BATCH = 64
_GLOSS_QUOTE = re.compile(r'"([^"]+)"')
_PARENS = re.compile(r"\([^)]*\)")


@dataclass
class TargetCorpusSpec:
    """Sizes, channel ranges and seed of a target corpus; `workers` only changes speed."""

    seed: int = 0
    train_minutes: float = 60.0  # the labelled pool; subsets_minutes are nested inside it
    subsets_minutes: list[float] = field(default_factory=lambda: [5.0, 15.0, 60.0])
    unlabelled_minutes: float = 240.0
    dev_minutes: float = 15.0
    test_minutes: float = 15.0
    snr_db: tuple[float, float] = (5.0, 25.0)
    gain_db: tuple[float, float] = (-12.0, 6.0)  # around NOMINAL_DBFS; loud lines clip
    noise_minutes: float = 5.0  # noise/ recordings for augmentation
    workers: int = 2


@dataclass
class Utterance:
    """One planned recording: who says what on which line, and the channel's draws."""

    uttid: str
    text: str
    speaker: int
    chapter: int
    voice: str
    stretch: float
    f0: int
    codec: str
    noise: str
    snr_db: float
    gain_db: float
    seed: int  # the noise's own seed


def require_flite() -> None:
    if shutil.which("flite") is None or not (WORDNET_DIR / "data.noun").is_file():
        raise DemoCorpusError(FLITE_MISSING)


def wordnet_phrases(raw_gloss: str) -> list[str]:
    """The quoted examples and the definition parts (split at ';', no parentheses) of one gloss."""
    examples = _GLOSS_QUOTE.findall(raw_gloss)
    definition = _PARENS.sub(" ", _GLOSS_QUOTE.sub(" ", raw_gloss))
    return [p.strip() for p in [*definition.split(";"), *examples] if p.strip()]


@functools.cache
def _wordnet_sentences() -> tuple[str, ...]:
    """Every WordNet phrase usable as a transcript and not a demo (fortunes) sentence, sorted; parsed
    once a process (about 4 s on two cores), as the corpus builder and the LM text both need it."""
    found: set[str] = set()
    for part in ("noun", "verb", "adj", "adv"):
        for line in (WORDNET_DIR / f"data.{part}").read_text(errors="replace").splitlines():
            if line.startswith("  ") or " | " not in line:  # the licence header
                continue
            for phrase in wordnet_phrases(line.split(" | ", 1)[1]):
                if (sentence := clean_sentence(phrase)) is not None:
                    found.add(sentence)
    found -= set(load_sentences(0))  # the source corpus's text (empty without fortunes)
    return tuple(sorted(found))


def load_target_sentences(seed: int) -> list[str]:
    """WordNet phrases usable as transcripts, none of them a demo (fortunes) sentence, seed-shuffled."""
    ordered = list(_wordnet_sentences())
    random.Random(f"{seed}-target").shuffle(ordered)
    return ordered


def lm_sentences(spec: TargetCorpusSpec) -> list[str]:
    """The target domain's LM text (`build_lm text=target`): every WordNet sentence but the dev and
    test reserves, of `spec`'s splits or of LM_HELD_OUT_MINUTES-long ones, whichever is longer (the
    reserves are a prefix of one seed-shuffled list, as in the demo corpus). It holds the labelled
    and unlabelled splits' text, as a company's LM corpus would hold its own domain's text."""
    sentences = load_target_sentences(spec.seed)
    reserve = max(spec.dev_minutes, LM_HELD_OUT_MINUTES), max(spec.test_minutes, LM_HELD_OUT_MINUTES)
    widest = TargetCorpusSpec(seed=spec.seed, dev_minutes=reserve[0], test_minutes=reserve[1])
    pools = partition_sentences(sentences, widest)
    return sentences[len(pools["dev"]) + len(pools["test"]):]


def partition_speakers(seed: int) -> dict[str, list[tuple[str, float, int]]]:
    """Every (voice, stretch, f0) identity in at most one split; train only from LABELLED_VOICES."""
    ids = [(v, s, f) for v in VOICES for s in STRETCHES for f in F0["female" if v in FEMALE else "male"]]
    rng = random.Random(f"{seed}-target-speakers")
    rng.shuffle(ids)
    out: dict[str, list] = {}
    for split in ("dev", "test"):  # each voice at least once where the count allows
        picked = [next(i for i in ids if i[0] == v) for v in VOICES][:EVAL_SPEAKERS]
        picked += [i for i in ids if i not in picked][:EVAL_SPEAKERS - len(picked)]
        out[split] = picked
        ids = [i for i in ids if i not in picked]
    out["train"] = [i for i in ids if i[0] in LABELLED_VOICES][:80]
    out["unlabelled"] = [i for i in ids if i not in out["train"]]
    return out


def plan_split(split: str, pool: list[str], speakers: list[tuple[str, float, int]], minutes: float,
               spec: TargetCorpusSpec, ids: dict[str, int]) -> Iterator[Utterance]:
    rng = random.Random(f"{spec.seed}-target-{split}")
    per_eval = max(1, min(60, round(minutes * 20 / EVAL_SPEAKERS)))
    sentences = iter(pool)
    for n, (voice, stretch, f0) in enumerate(speakers * 4):  # unlabelled may need identities again
        speaker, ids["speaker"] = ids["speaker"], ids["speaker"] + 1
        codec = rng.choice(sorted(CODECS))  # one line per speaker
        chapter, ids["chapter"] = ids["chapter"], ids["chapter"] + 1
        n_utts = per_eval if split in ("dev", "test") else rng.randint(20, 35)
        for idx in range(n_utts):
            text = next(sentences, None)
            if text is None:
                raise DemoCorpusError(f"target corpus: not enough sentences for {minutes} minutes of {split}")
            yield Utterance(f"{speaker}-{chapter}-{idx:04d}", text, speaker, chapter, voice, stretch, f0, codec,
                            rng.choice(NOISES), round(rng.uniform(*spec.snr_db), 2),
                            round(rng.uniform(*spec.gain_db), 2), rng.randrange(2**31))
    raise DemoCorpusError(f"target corpus: not enough speakers for {minutes} minutes of {split}")


def coloured_noise(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise whose power falls as 1/f^0 (white), 1/f (pink) or 1/f^2 (brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    alpha = {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind]
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1] if n > 1 else 1.0
    noise = np.fft.irfft(spectrum / freqs ** (alpha / 2), n)
    return (noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)).astype(np.float32)


def rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-20))


def telephone_channel(speech: np.ndarray, rate: int, noise: str, snr_db: float, gain_db: float,
                      seed: int) -> np.ndarray:
    """Speech at `rate` -> what a phone line delivers at 8 kHz (before the codec): noise at
    `snr_db` (over the whole band), the 300-3400 Hz band, 8 kHz, the level NOMINAL_DBFS + gain_db, clipped."""
    x = speech.astype(np.float32)
    n = coloured_noise(len(x), noise, np.random.default_rng(seed))
    x = x + n * 10 ** ((rms_db(x) - snr_db) / 20)
    x = sosfilt(butter(4, BAND_HZ, btype="bandpass", fs=rate, output="sos"), x).astype(np.float32)
    x = resample(torch.from_numpy(x), rate, LINE_RATE).numpy()
    x = x * 10 ** ((NOMINAL_DBFS + gain_db - rms_db(x)) / 20)
    return np.clip(x, -1.0, 1.0)


def write_codec(path: Path, line: np.ndarray, codec: str) -> None:
    """Store 8 kHz audio as the codec's WAV: reading it back decodes the codec."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), line, LINE_RATE, format="WAV", subtype=CODECS[codec])


def speak(voice: str, stretch: float, f0: int, text: str) -> tuple[np.ndarray, int]:
    cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}", "--setf", f"int_f0_target_mean={f0}",
           "-t", text.lower(), "-o", "/dev/stdout"]
    audio, rate = sf.read(io.BytesIO(subprocess.run(cmd, capture_output=True, check=True).stdout), dtype="float32")
    return audio, rate


def synthesise(job: tuple[Utterance, str]) -> int:
    """Speak one utterance, pass it down the line, write it; its length in 8 kHz samples."""
    u, path = job
    audio, rate = speak(u.voice, u.stretch, u.f0, u.text)
    line = telephone_channel(audio, rate, u.noise, u.snr_db, u.gain_db, u.seed)
    write_codec(Path(path), line, u.codec)
    return len(line)


def utt_path(split_dir: Path, u: Utterance) -> Path:
    return split_dir / str(u.speaker) / str(u.chapter) / f"{u.uttid}.wav"


def make_split(split: str, plan: Iterator[Utterance], minutes: float, split_dir: Path,
               pool: Pool | None) -> list[tuple[Utterance, int]]:
    target, total, kept = minutes * 60 * LINE_RATE, 0, []
    while total < target:
        batch = [next(plan) for _ in range(min(BATCH, 2 + int((target - total) / LINE_RATE / 2)))]
        jobs = [(u, str(utt_path(split_dir, u))) for u in batch]
        for u, samples in zip(batch, pool.map(synthesise, jobs) if pool else map(synthesise, jobs)):
            if total < target:
                kept.append((u, samples))
                total += samples
            else:
                _remove_with_empty_parents(utt_path(split_dir, u), split_dir)
    print(f"target corpus: {split} {len(kept)} utterances ({total / LINE_RATE / 60:.1f} min)", flush=True)
    return kept


def nested_subsets(kept: list[tuple[Utterance, int]], minutes: list[float]) -> dict[float, list[Utterance]]:
    """Whole speakers in corpus order until each size is reached: every subset contains the smaller ones."""
    speakers: dict[int, list[tuple[Utterance, int]]] = {}
    for u, n in kept:
        speakers.setdefault(u.speaker, []).append((u, n))
    out = {}
    for size in sorted(minutes):
        chosen, total = [], 0.0
        for utts in speakers.values():
            if total >= size * 60 * LINE_RATE:
                break
            chosen += [u for u, _ in utts]
            total += sum(n for _, n in utts)
        out[size] = chosen
    return out


def write_noise(folder: Path, spec: TargetCorpusSpec) -> None:
    """Noise recordings for augmentation: 15 s each, every colour, at 8 kHz, seeded apart from the channel."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(10_000 + spec.seed)
    for i in range(max(1, round(spec.noise_minutes * 4))):
        kind = NOISES[i % len(NOISES)]
        sf.write(str(folder / f"noise_{i:03d}_{kind}.wav"), 0.05 * coloured_noise(15 * LINE_RATE, kind, rng),
                 LINE_RATE, subtype="PCM_16")


def _spec_key(spec: TargetCorpusSpec) -> dict:
    key = {k: v for k, v in asdict(spec).items() if k != "workers"}
    return json.loads(json.dumps(key))  # tuples as lists, as corpus.json has them


def corpus_is_complete(out_dir: Path, spec: TargetCorpusSpec) -> bool:
    summary = Path(out_dir) / "corpus.json"
    if not summary.is_file():
        return False
    try:
        saved = json.loads(summary.read_text())["spec"]
    except (ValueError, KeyError):
        return False
    return {k: saved.get(k) for k in _spec_key(spec)} == _spec_key(spec)


def make_target_corpus(out_dir: Path, spec: TargetCorpusSpec) -> dict:
    """(Re)generate the target corpus in `out_dir` (built in `<out_dir>.partial`, renamed at the end)."""
    require_flite()
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # the demo's split of a sentence list (dev/test reserves, then train/unlabelled by minutes): it
    # reads only the spec's *_minutes, which this spec has too
    pools = partition_sentences(load_target_sentences(spec.seed), spec)
    speakers = partition_speakers(spec.seed)
    print(f"target corpus: {sum(map(len, pools.values()))} WordNet sentences, writing {out_dir}", flush=True)
    ids = {"speaker": 5000, "chapter": 50000}
    summary: dict = {"spec": _spec_key(spec), "sample_rate": LINE_RATE, "splits": {}}
    rows = ["speaker\tsplit\tvoice\tstretch\tf0\tcodec\n"]
    pool = Pool(spec.workers, initializer=_init_worker) if spec.workers > 1 else None
    try:
        for split in SPLITS:
            minutes = getattr(spec, f"{split}_minutes")
            (tmp / split).mkdir()
            plan = plan_split(split, pools[split], speakers[split], minutes, spec, ids)
            kept = make_split(split, plan, minutes, tmp / split, pool) if minutes > 0 else []
            write_transcripts(tmp / split, kept)
            by_speaker = {u.speaker: u for u, _ in kept}
            rows += [f"{s}\t{split}\t{u.voice}\t{u.stretch}\t{u.f0}\t{u.codec}\n" for s, u in by_speaker.items()]
            summary["splits"][split] = {"utterances": len(kept), "speakers": len(by_speaker),
                                        "hours": round(sum(n for _, n in kept) / LINE_RATE / 3600, 4),
                                        "voices": sorted({u.voice for u in by_speaker.values()})}
            if split == "train":
                for size, utts in nested_subsets(kept, spec.subsets_minutes).items():
                    table = "".join(f"train/{utt_path(Path(), u)},{u.text},{u.speaker}\n" for u in utts)
                    (tmp / f"train_{size:g}min.csv").write_text("audio,text,speaker\n" + table)
                    summary["splits"][f"train_{size:g}min"] = {"utterances": len(utts),
                                                              "speakers": len({u.speaker for u in utts})}
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    write_noise(tmp / "noise", spec)
    (tmp / "speakers.tsv").write_text("".join(rows))
    (tmp / "corpus.json.tmp").write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp / "corpus.json.tmp", tmp / "corpus.json")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return summary

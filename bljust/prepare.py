"""Prepare a recipe's data: lhotse manifests, global CMVN statistics, SentencePiece model.

    python -m bljust.prepare recipe=demo [recipe.demo.train_minutes=180 ...]

Idempotent: a second call with the same settings does nothing; changed settings rebuild.
The demo corpus is synthesised first when it is missing.
"""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from bljust.config import parse_channels
from bljust.data.audio import BadAudio, lowest_rate, read_audio
from bljust.data.features import Cmvn, fbank
from bljust.data.manifests import cut_text, load_cuts
from bljust.data.skips import SkipLog, check_bad_fraction
from bljust.data.sources import check_sources, load_split
from bljust.data.text import TEXT_RULES_VERSION, Normalizer, normalizer_from_config
from bljust.data.tokenizer import Tokenizer, train_tokenizer
from bljust.errors import UserError
from bljust.tracking.disk import write_text_atomic

CMVN_MAX_UTTS = 1000  # a deterministic subsample is plenty for 80 means and variances


@dataclass
class PreparedData:
    """Paths of everything `prepare` wrote for a recipe."""

    data_dir: Path
    labelled: Path
    unlabelled: Path | None
    eval_splits: dict[str, Path]  # split name (folder name) -> manifest; dev splits first
    dev_splits: list[str]
    cmvn: Path
    tokenizer: Path


def split_name(folder: str) -> str:
    """'dev' -> 'dev', 'LibriSpeech/dev-clean' -> 'dev-clean', 'company/test.csv' -> 'test'."""
    return Path(folder).name.split(".")[0]


def _paths(cfg: Any) -> PreparedData:
    data_dir = Path(cfg.recipe.data_dir)
    m = data_dir / "manifests"
    evals = {split_name(f): m / f"eval_{split_name(f)}.jsonl.gz" for f in [*cfg.recipe.dev, *cfg.recipe.test]}
    return PreparedData(
        data_dir=data_dir,
        labelled=m / "labelled.jsonl.gz",
        unlabelled=m / "unlabelled.jsonl.gz" if cfg.recipe.unlabelled else None,
        eval_splits=evals,
        dev_splits=[split_name(f) for f in cfg.recipe.dev],
        cmvn=data_dir / "cmvn.pt",
        tokenizer=data_dir / "tokenizer.model",
    )


def _signature(cfg: Any) -> dict[str, Any]:
    """The settings the prepared files depend on; a change triggers a rebuild."""
    return {
        "recipe": OmegaConf.to_container(cfg.recipe, resolve=True),
        "features": OmegaConf.to_container(cfg.features, resolve=True),
        "tokenizer": OmegaConf.to_container(cfg.tokenizer, resolve=True),
        "text": OmegaConf.to_container(cfg.text, resolve=True),
        "text_rules": TEXT_RULES_VERSION,  # the normaliser's own behaviour (data/text.py)
    }


def ensure_demo_corpus(cfg: Any) -> None:
    """Synthesise the demo corpus when it is missing or was made with other sizes."""
    from bljust.data.demo_corpus import DemoCorpusSpec, corpus_is_complete, make_demo_corpus, require_espeak

    spec = DemoCorpusSpec(**OmegaConf.to_container(cfg.recipe.demo, resolve=True))
    corpus = Path(cfg.recipe.corpus_dir)
    if corpus_is_complete(corpus, spec):
        return
    require_espeak()
    print(f"prepare: synthesising the demo corpus in {corpus} (one-off)", flush=True)
    make_demo_corpus(corpus, spec)


def ensure_target_corpus(cfg: Any) -> None:
    """Synthesise the telephone target corpus when it is missing or was made with other settings."""
    from bljust.data.target_corpus import TargetCorpusSpec, corpus_is_complete, make_target_corpus, require_flite

    settings = OmegaConf.to_container(cfg.recipe.target, resolve=True)
    labelled = settings.pop("labelled_minutes")
    spec = TargetCorpusSpec(**settings)
    if labelled not in spec.subsets_minutes or labelled > spec.train_minutes:
        raise UserError(f"recipe.target.labelled_minutes={labelled}: not one of the corpus's labelled subsets "
                        f"(recipe.target.subsets_minutes {spec.subsets_minutes}, at most train_minutes {spec.train_minutes:g})")
    corpus = Path(cfg.recipe.corpus_dir)
    if corpus_is_complete(corpus, spec):
        return
    require_flite()
    print(f"prepare: synthesising the telephone target corpus in {corpus} (one-off)", flush=True)
    make_target_corpus(corpus, spec)


def _cmvn(cuts, sample_rate: int, num_mel_bins: int, skips: SkipLog) -> Cmvn:
    cut_list = list(cuts)
    random.Random(0).shuffle(cut_list)
    chunks = []
    for cut in cut_list[:CMVN_MAX_UTTS]:
        try:
            wave = read_audio(cut.recording.sources[0].source, sample_rate, channel=cut.channel)
            chunks.append(fbank(wave, num_mel_bins, sample_rate))
        except BadAudio as err:
            skips.add("bad_audio", str(err))
    return Cmvn.from_features(chunks)


def upsample_summary(upsampled: dict[str, Counter], sample_rate: int) -> str:
    """One line: how many utterances of each split are read upsampled, and from which rates."""
    rates = sorted(set().union(*upsampled.values()))
    per_split = ", ".join(f"{name} {sum(c.values())}" for name, c in upsampled.items() if c)
    return (f"prepare: {sum(sum(c.values()) for c in upsampled.values())} utterances recorded below {sample_rate} Hz "
            f"({', '.join(f'{r} Hz' for r in rates)}) are upsampled ({per_split}); features.low_rate=refuse skips them")


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or {} if the file is torn or not an object."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def prepare(cfg: Any, verbose: bool = True) -> PreparedData:
    """Build whatever is missing or stale for `cfg.recipe`; return the paths."""
    out = _paths(cfg)
    sig_path = out.data_dir / "prepare.json"
    signature = _signature(cfg)
    expected = [out.labelled, out.cmvn, out.tokenizer, *out.eval_splits.values()] + ([out.unlabelled] if out.unlabelled else [])
    if sig_path.is_file() and all(p.is_file() for p in expected):
        if _read_json(sig_path).get("signature") == signature:
            return out
    log = print if verbose else (lambda *a, **k: None)
    if cfg.recipe.source == "demo":
        ensure_demo_corpus(cfg)
    elif cfg.recipe.source == "target":
        ensure_target_corpus(cfg)
    check_sources(cfg.recipe)
    (out.data_dir / "manifests").mkdir(parents=True, exist_ok=True)
    max_s = cfg.features.max_utt_seconds
    min_rate = lowest_rate(cfg.features.sample_rate, cfg.features.low_rate)
    skips: dict[str, SkipLog] = {}
    texts_of: dict[str, Normalizer] = {}  # per split: the characters its transcripts lost
    upsampled: dict[str, Counter] = {}
    channels = parse_channels(cfg.features.channels)
    multichannel: Counter = Counter()  # per split: files with several channels, handled as `channels` says

    def build(role: str, entries: list[str], path: Path, name: str) -> None:
        log_ = skips.setdefault(name, SkipLog())
        normalize = texts_of.setdefault(name, normalizer_from_config(cfg.text))
        cuts = load_split(cfg.recipe, role, entries, log_, max_s, normalize, min_rate, channels)
        multichannel[name] = len({c.recording.id for c in cuts if c.recording.num_channels > 1})
        upsampled[name] = Counter(c.recording.sampling_rate for c in cuts
                                  if c.recording.sampling_rate < cfg.features.sample_rate)
        check_bad_fraction(f"{name} data ({', '.join(entries)})", log_, len(cuts), cfg.train.max_bad_fraction)
        cuts.to_file(path)
        hours = sum(c.duration for c in cuts) / 3600
        log(f"prepare: {name}: {len(cuts)} utterances, {hours:.2f} h -> {path} ({log_.summary()})", flush=True)

    build("labelled", list(cfg.recipe.labelled), out.labelled, "labelled")
    if out.unlabelled:
        build("unlabelled", list(cfg.recipe.unlabelled), out.unlabelled, "unlabelled")
    for role in ("dev", "test"):
        for entry in cfg.recipe[role]:
            build(role, [entry], out.eval_splits[split_name(entry)], split_name(entry))
    dropped = {name: n.summary() for name, n in texts_of.items() if n.dropped}
    if dropped:
        log("prepare: transcripts: " + " | ".join(f"{name}: {line}" for name, line in dropped.items()), flush=True)
    if any(upsampled.values()):
        log(upsample_summary(upsampled, cfg.features.sample_rate), flush=True)
    if sum(multichannel.values()):
        how = {"mix": "downmixed (the channels averaged)", "split": "split, each channel its own utterance"}
        per_split = ", ".join(f"{name} {n}" for name, n in multichannel.items() if n)
        log(f"prepare: {sum(multichannel.values())} files with several channels are "
            f"{how.get(channels, f'read as channel {channels}')} ({per_split}); "
            "features.channels=mix|split|N chooses", flush=True)

    labelled = load_cuts(out.labelled)
    texts = [cut_text(c) for c in labelled]
    tok: Tokenizer = train_tokenizer(texts, cfg.tokenizer.model_type, cfg.tokenizer.vocab_size)
    tok.save(out.tokenizer)
    log(f"prepare: tokenizer ({cfg.tokenizer.model_type}) with {tok.vocab_size} tokens incl. blank -> {out.tokenizer}")
    cmvn_skips = skips.setdefault("cmvn", SkipLog())
    _cmvn(labelled, cfg.features.sample_rate, cfg.features.num_mel_bins, cmvn_skips).save(out.cmvn)
    log(f"prepare: CMVN statistics -> {out.cmvn}", flush=True)
    # Written last and renamed into place: a prepare killed half-way is redone, never trusted.
    write_text_atomic(sig_path, json.dumps({"signature": signature, "skipped": {k: v.as_dict() for k, v in skips.items()},
                                            "dropped_characters": {k: dict(n.dropped) for k, n in texts_of.items()},
                                            "upsampled": {k: sum(v.values()) for k, v in upsampled.items()},
                                            "multichannel": dict(multichannel)},
                                           indent=1))
    return out


PREPARE_SECTIONS = ("recipe", "features", "text", "tokenizer")  # the config prepare's output depends on


def print_help() -> None:
    """Usage, then the keys prepare reads with their defaults (Hydra overrides, as for train)."""
    from omegaconf import OmegaConf

    from bljust.cli import compose_config, to_yaml

    cfg = compose_config([])
    print(__doc__.strip())
    print("\nkeys (Hydra overrides, key=value; recipe=NAME picks conf/recipe/NAME.yaml), with their defaults:\n")
    print(to_yaml(OmegaConf.create({k: cfg[k] for k in PREPARE_SECTIONS})).rstrip())


def main(argv: list[str] | None = None) -> None:
    from bljust.cli import compose_config, fail, wants_help

    argv = sys.argv[1:] if argv is None else argv
    try:
        if wants_help(argv):
            print_help()
            return
        cfg = compose_config(argv)
        prepare(cfg)
    except UserError as err:
        fail(err)


if __name__ == "__main__":
    main()

"""WER/CER of a checkpoint on a split of its recipe or on any labelled data.

    python -m bljust.evaluate ckpt=runs/demo/supervised/seed0/checkpoints/best.pt split=test
    python -m bljust.evaluate ckpt=PATH data=/path/to/LibriSpeech/dev-clean   (or a CutSet manifest)
    python -m bljust.evaluate ckpt=PATH split=test decode=beam lm=lm/3gram.arpa lm_weight=1.5 word_score=1

Prints WER and CER and writes `hyps/<split>.txt` and `wer.json` beside the checkpoint's run (or
to out=DIR): the layout of the trainer's own final scores, so a report reads either the same way.
Beam search with an LM scores under `<split>+lm` (`hyps/<split>+lm.txt`), next to the greedy
`<split>` entry in the same wer.json. With tune_on=dev the LM weight and word score are chosen on
dev first (a fixed grid; dev+lm records the winner), then used on split=:

    python -m bljust.evaluate ckpt=PATH split=test decode=beam lm=lm/3gram.arpa tune_on=dev
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from lhotse import CutSet

from bljust.data.dataset import AsrDataset, eval_batches, scoring_view
from bljust.data.features import Cmvn
from bljust.data.manifests import ManifestError, load_cuts
from bljust.data.tokenizer import Tokenizer
from bljust.decoding.options import DECODE_KEYS, DecodeOptions, Decoder, greedy_decoder, make_decoder
from bljust.errors import UserError
from bljust.models.asr import AsrModel
from bljust.scoring import error_rates
from bljust.tracking.disk import write_text_atomic

KEYS = {
    "ckpt": "checkpoint to score (required), or a model exported by bljust.export (.onnx, run by onnxruntime)",
    "split": "a dev/test split of the checkpoint's recipe, e.g. test (or data=)",
    "data": "labelled data: a LibriSpeech-layout folder, an audio,text table or a CutSet (or split=)",
    "out": "folder for hyps/<split>.txt and wer.json (default: the run's eval/)",
    "device": "cpu | cuda (default: cuda when available)",
    **DECODE_KEYS,
    "tune_on": "a split (e.g. dev) on which lm_weight and word_score are chosen first, over a fixed grid, "
               "then used on split= (beam)",
}


Emissions = tuple[list[str], list[str | None], torch.Tensor, torch.Tensor]


def emissions(model: AsrModel, cuts: CutSet, dataset: AsrDataset, device: torch.device,
              max_duration: float = 300.0) -> Iterator[Emissions]:
    """(ids, references, logits (B, T', V) on the CPU, lengths (B,)) per batch of readable cuts,
    in manifest order. A list of them can be decoded many ways (tuning an LM on dev)."""
    was_training = model.training
    model.eval()
    try:
        for batch in eval_batches(cuts, scoring_view(dataset), max_duration):
            if len(batch) == 0:
                continue
            with torch.no_grad():
                logits, lens = model(batch.feats.to(device), batch.feat_lens.to(device))
            yield batch.ids, batch.texts, logits.float().cpu(), lens.cpu()
    finally:
        model.train(was_training)


def decode_all(batches: Iterable[Emissions], decoder: Decoder) -> list[tuple[str, str | None, str]]:
    """(id, reference or None, hypothesis) for every utterance of `emissions`' batches."""
    return [(u, r, h) for ids, refs, logits, lens in batches for u, r, h in zip(ids, refs, decoder(logits, lens))]


def transcribe_cuts(model: AsrModel, cuts: CutSet, dataset: AsrDataset, tokenizer: Tokenizer,
                    device: torch.device, max_duration: float = 300.0,
                    decoder: Decoder | None = None) -> list[tuple[str, str | None, str]]:
    """(id, reference or None, hypothesis) for every cut with readable audio, in manifest order;
    references are kept even when the tokenizer cannot spell them (they then count as errors).
    Greedy decoding unless `decoder` is given (bljust.decoding.options.make_decoder)."""
    batches = emissions(model, cuts, dataset, device, max_duration)
    return decode_all(batches, decoder or greedy_decoder(tokenizer))


def score(results: list[tuple[str, str | None, str]]) -> dict[str, float]:
    """Corpus WER/CER; utterances with an empty reference have no words to score and are counted."""
    scorable = [(r, h) for _, r, h in results if r]
    rates = error_rates([r for r, _ in scorable], [h for _, h in scorable])
    if len(scorable) < len(results):
        rates["empty_references"] = len(results) - len(scorable)
    return rates


def write_hyps(results: list[tuple[str, str | None, str]], path: Path) -> None:
    """One 'ID<TAB>REF<TAB>HYP' line per utterance, for error analysis and the paired bootstrap; an
    unscorable utterance has an empty REF, as `score` leaves it out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "".join(f"{u}\t{r or ''}\t{h}\n" for u, r, h in results))


def load_model(ckpt: dict[str, Any], device: torch.device) -> tuple[AsrModel, Tokenizer, Cmvn, dict]:
    """Model, tokenizer and CMVN from a checkpoint dict; everything inference needs is inside it."""
    from bljust.config import ModelConfig

    cfg = ckpt["config"]
    tokenizer = Tokenizer.from_tensor(ckpt["tokenizer"])
    model = AsrModel(ModelConfig(**cfg["model"]), tokenizer.vocab_size)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), tokenizer, Cmvn.from_state_dict(ckpt["cmvn"]), cfg


def load_for_inference(path: str | Path, device: torch.device) -> tuple[Any, Tokenizer, Cmvn, dict]:
    """load_model for a checkpoint (.pt) or an exported model (.onnx, run by onnxruntime on the CPU)."""
    if Path(path).suffix == ".onnx":
        from bljust.onnx_runtime import load_onnx

        return load_onnx(path)
    from bljust.tracking.checkpoint import load_checkpoint

    return load_model(load_checkpoint(str(path)), device)


def data_cuts(data: str, max_seconds: float, text_cfg: Any | None = None,
              counts: dict[str, Any] | None = None, min_rate: int = 0, channels: str | int = "mix") -> CutSet:
    """Labelled cuts from a LibriSpeech-layout folder, a plain audio,text table, or a CutSet, their
    references normalised as the checkpoint's training transcripts were (`text_cfg`); audio below
    `min_rate` Hz is skipped (0: any rate).

    What was left out (utterances by reason, e.g. `digits_in_text`; characters dropped from
    references) is printed and, when `counts` is given, put into it for wer.json.
    """
    from bljust.data.skips import SkipLog
    from bljust.data.sources import load_entry
    from bljust.data.text import normalizer_from_config

    path = Path(data)
    if not path.exists():
        raise ManifestError(f"data={path}: not found")
    skips, normalize = SkipLog(), normalizer_from_config(text_cfg)
    cuts = load_entry(path, True, skips, max_seconds, normalize, min_rate, channels)
    if skips.total:
        print(f"{path}: {skips.summary()}", file=sys.stderr)
    if normalize.dropped:
        print(f"{path}: references: {normalize.summary()}", file=sys.stderr)
    if counts is not None:
        counts.update(left_out(skips.as_dict(), dict(normalize.dropped)))
    return cuts


def left_out(skipped: dict[str, int], dropped: dict[str, int]) -> dict[str, Any]:
    """The wer.json entries that say what a score does not cover (empty when nothing was left out)."""
    out: dict[str, Any] = {}
    if skipped:
        out["skipped"] = skipped
    if dropped:
        out["dropped_characters"] = dropped
    return out


def prepared_counts(data_dir: Path, split: str) -> dict[str, Any]:
    """What `prepare` left out of a split, from its prepare.json."""
    try:
        done = json.loads((data_dir / "prepare.json").read_text())
    except (OSError, ValueError):
        return {}
    return left_out(done.get("skipped", {}).get(split, {}), done.get("dropped_characters", {}).get(split, {}))


def eval_dataset(cfg: dict, cmvn: Cmvn, tokenizer: Tokenizer) -> AsrDataset:
    """The feature pipeline a checkpoint was trained with (features.low_rate: older checkpoints
    have none and upsample)."""
    feat = cfg["features"]
    return AsrDataset(cmvn, tokenizer, feat["sample_rate"], feat["num_mel_bins"], feat["max_utt_seconds"],
                      low_rate=feat.get("low_rate", "upsample"))


def split_cuts(cfg: dict, split: str | None, data: str | None,
               counts: dict[str, Any] | None = None) -> tuple[CutSet, str]:
    """The cuts to score and their name: a prepared split of the checkpoint's recipe, or `data`;
    what was left out of them goes into `counts` when given."""
    from bljust.config import parse_channels
    from bljust.data.audio import lowest_rate

    counts = {} if counts is None else counts
    if split is not None:
        path = Path(cfg["recipe"]["data_dir"]) / "manifests" / f"eval_{split}.jsonl.gz"
        if not path.is_file():
            raise ManifestError(f"split={split}: no prepared manifest {path}")
        counts.update(prepared_counts(Path(cfg["recipe"]["data_dir"]), split))
        return load_cuts(path), split
    feat = cfg["features"]
    min_rate = lowest_rate(feat["sample_rate"], feat.get("low_rate", "upsample"))
    channels = parse_channels(feat.get("channels", "mix"))  # older checkpoints: mono files only, mix is the same
    return (data_cuts(data, feat["max_utt_seconds"], cfg.get("text"), counts, min_rate, channels),
            Path(data).name.split(".")[0])


# The grid `tune_on=` searches (and tools/tune_lm.py by default): the same for every run it tunes.
LM_WEIGHTS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
WORD_SCORES = (-1.0, 0.0, 1.0, 2.0, 3.0)


def tune_lm_weights(batches: list[Emissions], beam: Any, lm_weights: Iterable[float] = LM_WEIGHTS,
                    word_scores: Iterable[float] = WORD_SCORES, report: Callable[[dict], None] | None = None
                    ) -> tuple[dict[str, float], list[dict[str, float]], list[tuple[str, str | None, str]]]:
    """Decode the same emissions at every (lm_weight, word_score) of the grid with `beam` (a
    BeamSearchDecoder); the point with the lowest WER, then CER, wins and `beam` keeps its weights.
    Returns (best point, every point, the best point's transcripts); `report` sees each point."""
    grid, best, best_results = [], None, []
    word_scores = list(word_scores)
    for lm_weight in lm_weights:
        for word_score in word_scores:
            beam.set_weights(lm_weight, word_score)
            results = decode_all(batches, beam)
            rates = score(results)
            point = {"lm_weight": lm_weight, "word_score": word_score, "wer": rates["wer"], "cer": rates["cer"]}
            grid.append(point)
            if report is not None:
                report(point)
            if best is None or (point["wer"], point["cer"]) < (best["wer"], best["cer"]):
                best, best_results = point, results
    if best is None:
        raise UserError("tuning the LM weights: the grid is empty")
    beam.set_weights(best["lm_weight"], best["word_score"])
    return best, grid, best_results


def record(out: Path, name: str, results: list[tuple[str, str | None, str]], rates: dict[str, Any]) -> Path:
    """`name`'s hyp file and its entry in out/wer.json (other entries kept); the wer.json."""
    out.mkdir(parents=True, exist_ok=True)
    write_hyps(results, out / "hyps" / f"{name}.txt")
    wer_path = out / "wer.json"
    table = json.loads(wer_path.read_text()) if wer_path.is_file() else {}
    table[name] = rates
    write_text_atomic(wer_path, json.dumps(table, indent=1))
    return wer_path


def evaluate(ckpt: str | Path, split: str | None = None, data: str | None = None, out: str | Path | None = None,
             device: str | None = None, opts: DecodeOptions | None = None,
             tune_on: str | None = None) -> tuple[str, dict[str, Any], Path]:
    """Score checkpoint `ckpt` (or an exported .onnx model) on `split` (or `data`) with the
    decoding `opts` (greedy by default).

    Adds the rates to `out`/wer.json under `<name><opts.label>` (e.g. `test`, `test+lm`) and writes
    that name's hyp file beside it; returns (that name, rates, the wer.json). `out` defaults to the
    run's eval/. With `tune_on` (a split of the recipe, e.g. dev) beam search's lm_weight and
    word_score are first chosen on that split over the LM_WEIGHTS x WORD_SCORES grid, recorded
    under `<tune_on><opts.label>` with the chosen pair, and then used, unchanged, on `split`.
    """
    opts = opts or DecodeOptions()
    if tune_on and opts.decode != "beam":
        raise UserError(f"tune_on={tune_on}: only beam search has weights to tune (add decode=beam lm=PATH)")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() and Path(ckpt).suffix != ".onnx" else "cpu"))
    model, tokenizer, cmvn, cfg = load_for_inference(ckpt, dev)
    decoder = make_decoder(tokenizer, opts)  # before the forward passes: a bad LM fails at once
    dataset = eval_dataset(cfg, cmvn, tokenizer)
    out = Path(out) if out is not None else Path(ckpt).resolve().parent.parent / "eval"
    chosen: dict[str, Any] = {}
    if tune_on:
        tune_counts: dict[str, Any] = {}
        tune_cuts, tune_name = split_cuts(cfg, tune_on, None, tune_counts)
        best, _, tune_results = tune_lm_weights(list(emissions(model, tune_cuts, dataset, dev)), decoder,
                                                LM_WEIGHTS, WORD_SCORES)
        chosen = {"lm_weight": best["lm_weight"], "word_score": best["word_score"], "tuned_on": tune_name}
        record(out, tune_name + opts.label, tune_results, {**score(tune_results), **tune_counts, **chosen})
    counts: dict[str, Any] = {}
    cuts, name = split_cuts(cfg, split, data, counts)
    results = transcribe_cuts(model, cuts, dataset, tokenizer, dev, decoder=decoder)
    if not results:
        raise ManifestError(f"{name}: no usable utterance to score")
    rates = {**score(results), **counts, **chosen}
    name += opts.label
    return name, rates, record(out, name, results, rates)


def main(argv: list[str] | None = None) -> None:
    from bljust.cli import fail, parse_command

    try:
        kv, rest = parse_command(sys.argv[1:] if argv is None else argv, __doc__, KEYS)
        if "ckpt" not in kv or ("split" in kv) == ("data" in kv):
            raise UserError("usage: python -m bljust.evaluate ckpt=PATH (split=NAME | data=PATH) [out=DIR] "
                            "[decode=beam lm=PATH ...] (--help for the keys)")
        name, rates, wer_path = evaluate(kv["ckpt"], kv.get("split"), kv.get("data"), kv.get("out"),
                                         kv.get("device"), DecodeOptions.from_kv(kv), kv.get("tune_on"))
        if "tuned_on" in rates:
            print(f"{rates['tuned_on']}: chose lm_weight={rates['lm_weight']:g} word_score={rates['word_score']:g}")
        skipped = sum(rates.get("skipped", {}).values())
        print(f"{name}: WER {rates['wer']:.2f} %  CER {rates['cer']:.2f} %  ({rates['utterances']} utterances"
              + (f"; {skipped} left out, see {wer_path}" if skipped else "") + ")")
    except UserError as err:
        fail(err)


if __name__ == "__main__":
    main()

"""WER/CER of a checkpoint on a split of its recipe or on any labelled data.

    python -m bljust.evaluate ckpt=runs/demo/supervised/seed0/checkpoints/best.pt split=test
    python -m bljust.evaluate ckpt=PATH data=/path/to/LibriSpeech/dev-clean   (or a CutSet manifest)

Prints WER and CER and writes `hyps/<split>.txt` and `wer.json` beside the checkpoint's run (or
to out=DIR): the layout of the trainer's own final scores, so a report reads either the same way.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from lhotse import CutSet

from bljust.data.dataset import AsrDataset, eval_batches, scoring_view
from bljust.data.features import Cmvn
from bljust.data.manifests import ManifestError, load_cuts
from bljust.data.tokenizer import Tokenizer
from bljust.models.asr import AsrModel
from bljust.objectives.ctc import greedy_decode
from bljust.scoring import error_rates
from bljust.tracking.disk import write_text_atomic


@torch.no_grad()
def transcribe_cuts(model: AsrModel, cuts: CutSet, dataset: AsrDataset, tokenizer: Tokenizer,
                    device: torch.device, max_duration: float = 300.0) -> list[tuple[str, str | None, str]]:
    """(id, reference or None, hypothesis) for every cut with readable audio, in manifest order;
    references are kept even when the tokenizer cannot spell them (they then count as errors)."""
    was_training = model.training
    model.eval()
    out = []
    for batch in eval_batches(cuts, scoring_view(dataset), max_duration):
        if len(batch) == 0:
            continue
        logits, lens = model(batch.feats.to(device), batch.feat_lens.to(device))
        for utt, ref, ids in zip(batch.ids, batch.texts, greedy_decode(logits.float(), lens)):
            out.append((utt, ref, tokenizer.decode(ids)))
    model.train(was_training)
    return out


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


def data_cuts(data: str, max_seconds: float, text_cfg: Any | None = None,
              counts: dict[str, Any] | None = None) -> CutSet:
    """Labelled cuts from a LibriSpeech-layout folder, a plain audio,text table, or a CutSet, their
    references normalised as the checkpoint's training transcripts were (`text_cfg`).

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
    cuts = load_entry(path, True, skips, max_seconds, normalize)
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


def main(argv: list[str] | None = None) -> None:
    from bljust.cli import fail, parse_kv
    from bljust.errors import UserError
    from bljust.tracking.checkpoint import load_checkpoint

    try:
        kv, rest = parse_kv(sys.argv[1:] if argv is None else argv, {"ckpt", "split", "data", "out", "device"})
        if "ckpt" not in kv or ("split" in kv) == ("data" in kv):
            raise UserError("usage: python -m bljust.evaluate ckpt=PATH (split=NAME | data=PATH) [out=DIR]")
        device = torch.device(kv.get("device", "cuda" if torch.cuda.is_available() else "cpu"))
        ckpt = load_checkpoint(kv["ckpt"])
        model, tokenizer, cmvn, cfg = load_model(ckpt, device)
        feat = cfg["features"]
        dataset = AsrDataset(cmvn, tokenizer, feat["sample_rate"], feat["num_mel_bins"], feat["max_utt_seconds"])
        if "split" in kv:
            path = Path(cfg["recipe"]["data_dir"]) / "manifests" / f"eval_{kv['split']}.jsonl.gz"
            if not path.is_file():
                raise ManifestError(f"split={kv['split']}: no prepared manifest {path}")
            cuts, name = load_cuts(path), kv["split"]
            counts = prepared_counts(Path(cfg["recipe"]["data_dir"]), name)
        else:
            counts = {}
            cuts = data_cuts(kv["data"], feat["max_utt_seconds"], cfg.get("text"), counts)
            name = Path(kv["data"]).name.split(".")[0]
        results = transcribe_cuts(model, cuts, dataset, tokenizer, device)
        if not results:
            raise ManifestError(f"{name}: no usable utterance to score")
        rates = {**score(results), **counts}
        out = Path(kv.get("out", Path(kv["ckpt"]).resolve().parent.parent / "eval"))
        out.mkdir(parents=True, exist_ok=True)
        write_hyps(results, out / "hyps" / f"{name}.txt")
        wer_path = out / "wer.json"
        table = json.loads(wer_path.read_text()) if wer_path.is_file() else {}
        table[name] = rates
        write_text_atomic(wer_path, json.dumps(table, indent=1))
        skipped = sum(counts.get("skipped", {}).values())
        print(f"{name}: WER {rates['wer']:.2f} %  CER {rates['cer']:.2f} %  ({rates['utterances']} utterances"
              + (f"; {skipped} left out, see {wer_path}" if skipped else "") + ")")
    except UserError as err:
        fail(err)


if __name__ == "__main__":
    main()

"""Tune beam search's lm_weight and word_score on dev, then compare greedy and beam + LM on test.

    python tools/tune_lm.py CKPT LM.arpa [--dev dev] [--test test] [--out tune.json]

Dev logits are computed once and decoded for every grid point; the pair with the lowest dev WER
(then CER) is the one used on test, which is decoded only with it, never tuned on. Speed is
utterances per second on one CPU thread, for the whole path (audio, features, model, decoding)
and for the decoding alone. Prints a markdown table and the `bljust.evaluate` command that
scores a run with the chosen pair. A user error (a missing checkpoint, LM or prepared split) is
one line `error: ...` on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bljust.cli import fail
from bljust.decoding.options import DecodeOptions, greedy_decoder, make_decoder
from bljust.evaluate import (LM_WEIGHTS, WORD_SCORES, decode_all, emissions, eval_dataset, load_model, score,
                             split_cuts, tune_lm_weights)
from bljust.errors import UserError
from bljust.tracking.checkpoint import load_checkpoint


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def timed_decode(batches, decoder) -> tuple[list, float]:
    start = time.perf_counter()
    results = decode_all(batches, decoder)
    return results, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt")
    ap.add_argument("lm")
    ap.add_argument("--lexicon")
    ap.add_argument("--dev", default="dev")
    ap.add_argument("--test", default="test")
    ap.add_argument("--lm-weights", type=floats, default=list(LM_WEIGHTS))
    ap.add_argument("--word-scores", type=floats, default=list(WORD_SCORES))
    ap.add_argument("--beam-size", type=int, default=50)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    try:
        tune(args)
    except UserError as err:
        fail(err)


def tune(args: argparse.Namespace) -> None:
    """Tune on args.dev, score args.test, print the tables and write args.out."""
    torch.set_num_threads(1)  # the speed figures are per core
    device = torch.device("cpu")
    model, tokenizer, cmvn, cfg = load_model(load_checkpoint(args.ckpt), device)
    dataset = eval_dataset(cfg, cmvn, tokenizer)
    beam = make_decoder(tokenizer, DecodeOptions("beam", args.beam_size, lm=args.lm, lexicon=args.lexicon))
    greedy = greedy_decoder(tokenizer)

    dev = list(emissions(model, split_cuts(cfg, args.dev, None)[0], dataset, device))
    best, grid, _ = tune_lm_weights(dev, beam, args.lm_weights, args.word_scores, report=lambda p: print(
        f"dev lm_weight={p['lm_weight']:g} word_score={p['word_score']:g}: WER {p['wer']:.2f} CER {p['cer']:.2f}",
        flush=True))

    test_cuts = split_cuts(cfg, args.test, None)[0]
    start = time.perf_counter()
    test = list(emissions(model, test_cuts, dataset, device))
    forward_s = time.perf_counter() - start
    rows = {}
    for name, decoder in (("greedy", greedy), ("beam+lm", beam)):
        results, decode_s = timed_decode(test, decoder)
        n = len(results)
        rows[name] = {**score(results), "utt_per_s": n / (forward_s + decode_s), "decode_utt_per_s": n / decode_s}
    gain = 1 - rows["beam+lm"]["wer"] / rows["greedy"]["wer"]
    print(f"\nbest on {args.dev}: lm_weight={best['lm_weight']:g} word_score={best['word_score']:g} "
          f"(dev WER {best['wer']:.2f}, greedy {score(decode_all(dev, greedy))['wer']:.2f})")
    print(f"\n| {args.test} ({rows['greedy']['utterances']} utts) | WER | CER | utt/s, 1 thread | utt/s, decoding only |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['wer']:.2f} | {r['cer']:.2f} | {r['utt_per_s']:.1f} | {r['decode_utt_per_s']:.1f} |")
    print(f"\nbeam + LM: {100 * gain:.1f} % relative WER reduction on {args.test}")
    print(f"score a run: python -m bljust.evaluate ckpt=CKPT split={args.test} decode=beam lm={args.lm} "
          f"lm_weight={best['lm_weight']:g} word_score={best['word_score']:g} beam_size={args.beam_size}")
    if args.out:
        args.out.write_text(json.dumps({"ckpt": args.ckpt, "lm": args.lm, "beam_size": args.beam_size,
                                        "best": best, "grid": grid, "test": rows,
                                        "relative_wer_reduction": gain}, indent=1) + "\n")


if __name__ == "__main__":
    main()

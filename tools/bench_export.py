"""ONNX export against eager PyTorch on the CPU: the same greedy transcripts, and the speed ratio.

    python tools/bench_export.py CKPT [--split test] [--threads 1] [--rounds 5]

Exports CKPT (python -m bljust.export), computes the split's features once with bljust's own
code, then runs both models on the same batches, interleaved round by round (the machines are
shared and noisy). Prints how many greedy transcripts are equal, the largest logit difference on
real frames, and the median time per pass over the split for each, with the ratio eager / ONNX.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bljust.decoding.options import greedy_decoder
from bljust.evaluate import decode_all, eval_dataset, load_model, split_cuts
from bljust.export import export_model
from bljust.onnx_runtime import load_onnx
from bljust.tracking.checkpoint import load_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt")
    ap.add_argument("--split", default="test")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-duration", type=float, default=60.0, help="seconds of audio per batch")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    model, tokenizer, cmvn, cfg = load_model(load_checkpoint(args.ckpt), cpu)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_model(args.ckpt, Path(tmp) / "model.onnx")
        onnx_model = load_onnx(path, threads=args.threads)[0]
    cuts = split_cuts(cfg, args.split, None)[0]
    # features once: both models are timed on the same padded batches, features excluded
    batches = list(_feature_batches(cuts, cfg, cmvn, tokenizer, args))
    greedy = greedy_decoder(tokenizer)
    results, diffs, times = {}, [], {"eager": [], "onnx": []}
    for r in range(args.rounds):
        for name, m in (("eager", model), ("onnx", onnx_model)):
            start = time.perf_counter()
            with torch.no_grad():
                outs = [(ids, refs, *m(feats, lens)) for ids, refs, feats, lens in batches]
            times[name].append(time.perf_counter() - start)
            if r == 0:
                results[name] = outs
    for (_, _, a, a_lens), (_, _, b, b_lens) in zip(results["eager"], results["onnx"]):
        mask = torch.arange(a.shape[1])[None, :] < a_lens[:, None]
        diffs.append(float((a - b).abs()[mask].max()))
    hyps = {name: decode_all(outs, greedy) for name, outs in results.items()}
    equal = sum(x == y for x, y in zip(hyps["eager"], hyps["onnx"]))
    eager, onnx = statistics.median(times["eager"]), statistics.median(times["onnx"])
    n = len(hyps["eager"])
    print(f"{args.split}: {equal}/{n} greedy transcripts equal; largest logit difference {max(diffs):.2e}")
    print(f"| threads | utts | eager s / pass | ONNX s / pass | eager / ONNX |\n|---|---|---|---|---|\n"
          f"| {args.threads} | {n} | {eager:.3f} | {onnx:.3f} | **{eager / onnx:.2f}** |")


def _feature_batches(cuts, cfg, cmvn, tokenizer, args):
    """(ids, references, feats (B, T, F), lens (B,)) per batch, as evaluate builds them."""
    from bljust.data.dataset import eval_batches, scoring_view

    for batch in eval_batches(cuts, scoring_view(eval_dataset(cfg, cmvn, tokenizer)), args.batch_duration):
        if len(batch):
            yield batch.ids, batch.texts, batch.feats, batch.feat_lens


if __name__ == "__main__":
    main()

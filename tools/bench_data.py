"""Batching and loading: padding fraction of duration-bucketed batches, and loader speed.

    python tools/bench_data.py [--batches 40] [key=value ...]

Padding: over one epoch of each training manifest, the share of the padded batch tensor (frames)
that is padding, with the trainer's DynamicBucketingSampler (train.num_buckets buckets) and, for
comparison, lhotse's plain DynamicCutSampler (no bucketing) at the same train.max_duration.
Loading: batches per second the DataLoader delivers (audio read, fbank, CMVN, SpecAugment off)
with 0, 1 and 2 workers, over --batches batches; compare with a method's steps per second in
tools/bench_methods.py to see the headroom.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bljust.cli import compose_config


def padding_fraction(batches) -> tuple[float, int]:
    """1 - (audio in the batches) / (batch size x longest cut, summed): the padded share."""
    real = padded = 0.0
    n = 0
    for cuts in batches:
        durs = [c.duration for c in cuts]
        real += sum(durs)
        padded += len(durs) * max(durs)
        n += 1
    return 1 - real / padded, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_intermixed_args()

    from lhotse.dataset import DynamicBucketingSampler, DynamicCutSampler

    from bljust.data.dataset import BatchStream
    from bljust.data.manifests import load_cuts
    from bljust.train import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(["recipe=demo", "method=just", "logging.wandb=disabled", f"run_dir={tmp}",
                              *args.overrides])
        tr = Trainer(cfg, Path(tmp))
        t = cfg.train
        print(f"train.max_duration={t.max_duration} s, train.num_buckets={t.num_buckets}")
        print("| manifest | cuts | batches (bucketed) | padding, bucketed | padding, no bucketing |")
        print("|---|---|---|---|---|")
        for name, path in (("labelled", tr.data.labelled), ("unlabelled", tr.data.unlabelled)):
            cuts = load_cuts(path)
            bucketed = DynamicBucketingSampler(cuts, max_duration=t.max_duration, num_buckets=t.num_buckets,
                                               shuffle=True, seed=0)
            plain = DynamicCutSampler(cuts, max_duration=t.max_duration, shuffle=True, seed=0)
            pb, nb = padding_fraction(bucketed)
            pp, _ = padding_fraction(plain)
            print(f"| {name} | {len(cuts)} | {nb} | {pb:.1%} | {pp:.1%} |")

        print("\n| DataLoader workers | batches / s | s of audio / s |")
        print("|---|---|---|")
        cuts = load_cuts(tr.data.unlabelled)
        for workers in (0, 1, 2):
            stream = BatchStream(cuts, tr.unlabelled_ds, t.max_duration, seed=0, num_buckets=t.num_buckets,
                                 num_workers=workers)
            next(stream)  # worker start-up is not throughput
            start, audio = time.perf_counter(), 0.0
            for _ in range(args.batches):
                audio += next(stream).seconds
            dt = time.perf_counter() - start
            print(f"| {workers} | {args.batches / dt:.2f} | {audio / dt:.0f} |")


if __name__ == "__main__":
    main()

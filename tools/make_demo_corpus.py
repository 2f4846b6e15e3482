#!/usr/bin/env python
"""Generate the offline demo corpus (espeak-ng speech of fortune sentences, LibriSpeech layout)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bljust.data.demo_corpus import DemoCorpusSpec, corpus_is_complete, make_demo_corpus


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, then build the corpus unless a matching one is already complete."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/demo/corpus"), help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-minutes", type=float, default=15.0, help="labelled training audio")
    parser.add_argument("--unlabelled-minutes", type=float, default=120.0)
    parser.add_argument("--dev-minutes", type=float, default=10.0)
    parser.add_argument("--test-minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2, help="synthesis processes (output does not depend on it)")
    parser.add_argument("--force", action="store_true", help="regenerate even if a matching corpus exists")
    args = parser.parse_args(argv)

    spec = DemoCorpusSpec(seed=args.seed, train_minutes=args.train_minutes,
                          unlabelled_minutes=args.unlabelled_minutes, dev_minutes=args.dev_minutes,
                          test_minutes=args.test_minutes, workers=args.workers)
    if corpus_is_complete(args.out, spec) and not args.force:
        print(f"demo corpus: {args.out} is already complete (use --force to regenerate)", flush=True)
        return 0
    try:
        summary = make_demo_corpus(args.out, spec)
    except RuntimeError as err:  # e.g. espeak-ng missing: one line, no traceback
        print(err, file=sys.stderr)
        return 1
    for split, info in summary["splits"].items():
        print(f"demo corpus: {split}: {info['utterances']} utterances, {info['speakers']} speakers, "
              f"{info['hours']:.2f} h", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Paired bootstrap confidence intervals of a WER/CER difference between two systems scored on the
same test utterances (Bisani and Ney, "Bootstrap estimates for confidence intervals in ASR
performance evaluation", ICASSP 2004).

Each resample draws the utterances with replacement and scores both systems on that same draw; the
statistic is the difference of corpus-level rates (sum of edits / sum of reference length, as
bljust/scoring.py computes them). Drawing the same utterances for both removes the variance of
sentence difficulty that two separate intervals would carry, which is why the paired test separates
systems two independent intervals cannot.

Several seeds per method: each utterance's edit counts are summed over the method's seeds before
resampling (pooled), rather than pairing seed k with seed k. The pooled rate equals the mean over
seeds of each seed's corpus rate, the number the comparison table shows, so the interval is about
that number; it uses every run in one interval, and needs no common seed numbers between methods
(seed k of two methods shares nothing that would make them a pair). It resamples utterances, not
seeds: it says how the difference would move on other sentences like the test set's, and the
spread between training runs is the table's ± sd.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bljust.reporting.runs import HypsError, Run, read_hyps
from bljust.reporting.table import by_label
from bljust.scoring import utterance_edits

BASELINES = ("supervised", "ptft")
METRICS = {"wer": ("word_edits", "words"), "cer": ("char_edits", "chars")}


@dataclass(frozen=True)
class Counts:
    """One system's per-utterance errors, summed over its seeds: name -> array of shape (N,), in the
    order of the utterance ids it was built for."""
    arrays: dict[str, np.ndarray]

    def rate(self, metric: str, idx: np.ndarray | slice = slice(None)) -> np.ndarray | float:
        """Corpus rate in % over the utterances `idx` ((R, N) indices give R rates)."""
        edits, length = (self.arrays[k][idx] for k in METRICS[metric])
        return 100.0 * edits.sum(axis=-1) / length.sum(axis=-1)


@dataclass(frozen=True)
class Difference:
    """rate(a) - rate(b) in percentage points, negative when a makes fewer errors."""
    delta: float  # on all utterances
    low: float
    high: float
    p_lower: float  # share of resamples in which a's rate is below b's (Bisani and Ney's "probability of improvement")


def paired_counts(a_files: list[Path], b_files: list[Path]) -> tuple[list[str], Counts, Counts]:
    """The utterances every file scores (ids sorted) and each system's counts on them, pooled over its files.

    An utterance with an empty reference has nothing to score, as in evaluate.score; the
    references of one id must agree across files, or the two systems were not scored on one test set.
    """
    hyps = {p: read_hyps(p) for p in [*a_files, *b_files]}
    ids = sorted(set.intersection(*({u for u, (ref, _) in h.items() if ref} for h in hyps.values())))
    if not ids:
        raise HypsError(f"{', '.join(map(str, hyps))}: no scorable utterance id common to all these files")
    first, refs = a_files[0], [hyps[a_files[0]][u][0] for u in ids]
    for path, h in hyps.items():
        for u, ref in zip(ids, refs):
            if h[u][0] != ref:
                raise HypsError(f"{path}: reference of {u!r} differs from the one in {first}")

    def pooled(files: list[Path]) -> Counts:
        per_file = [utterance_edits(refs, [hyps[p][u][1] for u in ids]) for p in files]
        return Counts({k: np.sum([np.asarray(c[k], dtype=np.int64) for c in per_file], axis=0) for k in per_file[0]})

    return ids, pooled(a_files), pooled(b_files)


def paired_bootstrap(a: Counts, b: Counts, resamples: int = 1000, seed: int = 0,
                     level: float = 0.95) -> dict[str, Difference]:
    """{"wer", "cer"} -> the difference a - b with its percentile interval at `level`; both metrics
    from the same seeded draws, so a rerun gives the same interval."""
    n = len(a.arrays["words"])
    assert n == len(b.arrays["words"]) and n > 0 and resamples > 0 and 0 < level < 1
    rng = np.random.default_rng(seed)
    diffs: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    rows = max(1, 2_000_000 // n)  # draws per block, so a large test set does not need a (resamples, N) array
    for start in range(0, resamples, rows):
        idx = rng.integers(0, n, size=(min(rows, resamples - start), n))
        for m in METRICS:
            diffs[m].append(a.rate(m, idx) - b.rate(m, idx))
    out = {}
    for m in METRICS:
        d = np.concatenate(diffs[m])
        low, high = np.quantile(d, [(1 - level) / 2, (1 + level) / 2])
        out[m] = Difference(float(a.rate(m) - b.rate(m)), float(low), float(high), float(np.mean(d < 0)))
    return out


def bootstrap_section(runs: list[Run], baselines: tuple[str, ...] = BASELINES, resamples: int = 1000,
                      seed: int = 0, level: float = 0.95, split_prefix: str = "test") -> str:
    """Markdown: every method against each baseline present, on every split named `split_prefix...`
    (test, test+lm) that both have hypotheses for; "" when there is no baseline or no other method to
    compare. `split_prefix="dev"` is for discriminating runs, which never score test."""
    groups = by_label(runs)
    rows, missing = [], set()
    present = [b for b in baselines if b in groups]
    for i, base in enumerate(present):
        for label, rs in groups.items():
            if label == base or label in present[:i]:  # a mirror of a row already written
                continue
            for split in sorted({s for r in rs for s in r.splits} & {s for r in groups[base] for s in r.splits}):
                if not split.startswith(split_prefix):
                    continue
                a_files, b_files = _hyps_files(rs, split, missing), _hyps_files(groups[base], split, missing)
                if not a_files or not b_files:
                    continue
                ids, a, b = paired_counts(a_files, b_files)
                diff = paired_bootstrap(a, b, resamples, seed, level)
                rows.append([label, base, split, str(len(ids)),
                             *[cell for m in METRICS for cell in (_interval(diff[m]), f"{diff[m].p_lower:.2f}")]])
    if not rows and not missing:
        return ""
    pct = f"{100 * level:g} %"
    lines = [f"Paired bootstrap over {split_prefix} utterances ({resamples} resamples, seed {seed}; each method's "
             f"seeds pooled per utterance): corpus error rate of the method minus the baseline's, in points, "
             f"with its {pct} interval; negative means fewer errors. P(lower): share of resamples in which the "
             "method's rate is below the baseline's.", ""]
    if rows:
        head = ["method", "baseline", "split", "utterances", f"Δ WER [{pct}]", "P(WER lower)",
                f"Δ CER [{pct}]", "P(CER lower)"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    if missing:
        lines += ["", "No hypotheses file for " + ", ".join(sorted(missing)) + ": left out of the bootstrap."]
    return "\n".join(lines) + "\n"


def _hyps_files(runs: list[Run], split: str, missing: set[str]) -> list[Path]:
    """Every run's hypotheses for `split`, or [] (and the first absent file noted) if one lacks them:
    pooling a subset of seeds would no longer be the table's mean."""
    files = [r.hyps_path(split) for r in runs if split in r.scores]
    absent = [f for f in files if not f.is_file()]
    if absent:
        missing.add(str(absent[0]))
        return []
    return files


def _interval(d: Difference) -> str:
    return f"{d.delta:+.1f} [{d.low:+.1f}, {d.high:+.1f}]"

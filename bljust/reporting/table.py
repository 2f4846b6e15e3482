"""The comparison table: one row per method (run label), WER/CER per split as mean ± standard
deviation over its seeds, the share of empty hypotheses on each test split (a model still on
CTC's blank plateau outputs nothing), and what each row cost (compute in C, supervised updates,
minutes)."""

from __future__ import annotations

import statistics
from collections import defaultdict

from bljust.reporting.runs import Run, read_hyps


def by_label(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs grouped by label, each group in seed order."""
    groups: dict[str, list[Run]] = defaultdict(list)
    for r in sorted(runs, key=lambda r: r.seed):
        groups[r.label].append(r)
    return dict(sorted(groups.items()))


def fmt(values: list[float]) -> str:
    """Mean ± sample standard deviation; a single value alone, "–" for none."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def seeds_cell(runs: list[Run]) -> str:
    """`n=3 (0,1,2)`: the count first, so one seed numbered 0 does not read as zero seeds."""
    return f"n={len(runs)} ({','.join(str(r.seed) for r in runs)})"


def ordered_splits(runs: list[Run]) -> list[str]:
    """dev splits first (where choices are made), then the rest."""
    return sorted({s for r in runs for s in r.splits}, key=lambda s: (not s.startswith("dev"), s))


def method_table(runs: list[Run]) -> str:
    """The markdown table; a run still being scored may lack a split: its cell averages the others."""
    splits = ordered_splits(runs)
    tests = [s for s in splits if not s.startswith("dev")]
    head = ["method", "seeds", *[f"{s} WER" for s in splits], *[f"{s} CER" for s in splits],
            *[f"{s} empty %" for s in tests], "compute C", "supervised updates", "train min"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, rs in by_label(runs).items():
        cells = [label, seeds_cell(rs)]
        cells += [fmt([r.scores[s]["wer"] for r in rs if s in r.scores]) for s in splits]
        cells += [fmt([r.scores[s]["cer"] for r in rs if s in r.scores]) for s in splits]
        cells += [fmt([v for r in rs if (v := empty_share(r, s)) is not None]) for s in tests]
        cells += [fmt(_logged(rs, "compute_c")), fmt(_logged(rs, "supervised_updates")),
                  fmt([m / 60 for m in _logged(rs, "train_seconds")])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _logged(runs: list[Run], key: str) -> list[float]:
    """Each run's last value of `key`, over the runs that logged it (older runs lack compute_c)."""
    return [v for r in runs if (v := r.last(key)) is not None]


def empty_share(run: Run, split: str) -> float | None:
    """% of the split's hypotheses that are empty, from the run's hyps file (None without one)."""
    path = run.hyps_path(split)
    if split not in run.scores or not path.is_file():
        return None
    hyps = read_hyps(path)
    return 100 * sum(1 for _, hyp in hyps.values() if not hyp.strip()) / max(1, len(hyps))

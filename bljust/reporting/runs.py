"""Finished runs read back from their folders (config.yaml, metrics.jsonl, a scores file, hyps/), the
input of every report; nothing here trains or scores."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bljust.errors import UserError
from bljust.tracking.metrics import read_metrics


class RunFolderError(UserError):
    """A run folder whose files cannot be read as the trainer writes them."""


@dataclass
class Run:
    path: Path
    label: str  # the run's parent folder: the method name, or a variant's label such as supervised_1200
    seed: int
    scores_path: Path  # the wer.json the table reads (the run's own, or an evaluate output inside it)
    scores: dict[str, Any]  # split -> {"wer", "cer", "utterances"}, plus "checkpoint" and "step"
    records: list[dict[str, Any]] = field(repr=False)

    @property
    def splits(self) -> list[str]:
        return [s for s, v in self.scores.items() if isinstance(v, dict)]

    def last(self, key: str) -> float | None:
        """The last logged value of a cumulative counter (train_seconds, supervised_updates, compute_c)."""
        values = [r[key] for r in self.records if r.get(key) is not None]
        return float(values[-1]) if values else None

    def hyps_path(self, split: str) -> Path:
        """Where the hypotheses behind `scores[split]` are: hyps/<split>.txt beside the scores file,
        as both the trainer and `python -m bljust.evaluate` write them."""
        return self.scores_path.parent / "hyps" / f"{split}.txt"


def collect(roots: list[Path], wer_json: str = "wer.json") -> list[Run]:
    """Every run under `roots`: a folder holding config.yaml and `wer_json` (a path inside the run,
    e.g. eval_last/wer.json). Runs are grouped later by label, across all roots alike. Finding none is
    an error: a report of nothing is a wrong path or an unscored run."""
    runs, seen = [], set()
    for root in roots:
        if not root.exists():
            raise RunFolderError(f"{root}: no such folder")
        for scores_path in sorted(root.rglob(Path(wer_json).name)):
            run = _run_folder(scores_path, wer_json)
            if run is None or run in seen or not (run / "config.yaml").is_file():
                continue
            seen.add(run)
            runs.append(_read_run(run, scores_path))
    if not runs:
        raise RunFolderError(f"{' '.join(map(str, roots))}: no finished runs (config.yaml + {wer_json})")
    return runs


def _run_folder(scores_path: Path, wer_json: str) -> Path | None:
    """The folder `scores_path` is `wer_json` of, or None when it is some other file of that name."""
    parts = Path(wer_json).parts
    if scores_path.parts[-len(parts):] != parts:
        return None
    return Path(*scores_path.parts[:-len(parts)]) if len(scores_path.parts) > len(parts) else Path(".")


def _read_run(run: Path, scores_path: Path) -> Run:
    try:
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        seed = int(cfg["train"]["seed"])
    except (yaml.YAMLError, TypeError, KeyError, ValueError) as err:
        raise RunFolderError(f"{run / 'config.yaml'}: no readable train.seed ({type(err).__name__})") from None
    try:
        scores = json.loads(scores_path.read_text())
    except json.JSONDecodeError as err:
        raise RunFolderError(f"{scores_path}: not JSON ({err.msg}, line {err.lineno})") from None
    metrics = run / "metrics.jsonl"
    records = read_metrics(metrics) if metrics.is_file() else []
    return Run(run, run.resolve().parent.name, seed, scores_path, scores, records)


class HypsError(UserError):
    """A hypotheses file that is not one ID<TAB>REF<TAB>HYP line per utterance."""


def read_hyps(path: Path) -> dict[str, tuple[str, str]]:
    """utterance id -> (reference, hypothesis) from a file evaluate.write_hyps wrote."""
    if not path.is_file():
        raise HypsError(f"{path}: no such file")
    out: dict[str, tuple[str, str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split("\t")
        if len(parts) != 3:
            raise HypsError(f"{path}:{n}: expected ID<TAB>REF<TAB>HYP, found {len(parts)} field(s)")
        if parts[0] in out:
            raise HypsError(f"{path}:{n}: utterance {parts[0]!r} appears twice")
        out[parts[0]] = (parts[1], parts[2])
    return out

"""A protocol's trial file, conf/protocol/<group>.yaml: per method, the same number of trials, each
a list of Hydra overrides over that method's experiment file conf/experiment/<group>/<method>.yaml.
A row may also be a variant of a method with its own experiment file (supervised_aug). Optional:
`source:` an experiment trained once before anything else, whose best.pt every run starts from
(init_from); `fixed:` rows with nothing to tune (the source model as it is), run at one seed;
`baselines:` the rows the report's paired intervals compare against (default supervised, ptft).

    trials:
      supervised:
        - [optim.lr=1e-3]
        - [optim.lr=3e-3]
      bljust:
        - []                        # the experiment file as it is
        - [method.gamma_max=1.0]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from bljust.cli import CONF_DIR
from bljust.errors import UserError
from bljust.methods import METHODS

# Keys the protocol sets itself on every run: a trial or an extra override naming one would
# change the seed, the folder or whether test is seen behind the protocol's back.
OWNED_KEYS = ("seed", "train.seed", "run_dir", "eval.score_test")


class ProtocolError(UserError):
    """A trial file, a protocol folder or a run that the protocol cannot use."""


@dataclass(frozen=True)
class TrialPlan:
    group: str  # conf/experiment/<group>/
    path: Path  # the trial file
    trials: dict[str, list[list[str]]]  # row (a method or a variant) -> trial k -> overrides, in the file's order
    source: str | None = None  # experiment trained once first; its best.pt is every run's init_from
    fixed: tuple[str, ...] = ()  # rows with nothing to tune: their experiment file as it is, at one seed
    baselines: tuple[str, ...] = ("supervised", "ptft")  # what the report's bootstrap rows compare against

    @property
    def count(self) -> int:
        return len(next(iter(self.trials.values())))

    def experiment(self, method: str) -> str:
        return f"+experiment={self.group}/{method}"


def check_overrides(where: str, overrides: list[str]) -> None:
    """Each override is key=value and none sets a key the protocol owns."""
    for item in overrides:
        key, sep, _ = str(item).lstrip("+~").partition("=")
        if not sep or not key:
            raise ProtocolError(f"{where}: {item!r} is not a key=value override")
        if key in OWNED_KEYS:
            raise ProtocolError(f"{where}: {key} is set by the protocol itself (it owns {', '.join(OWNED_KEYS)})")


def load_trials(path: Path, group: str) -> TrialPlan:
    """Read and check a trial file: known methods with an experiment file in the group, lists of
    key=value overrides, and the same number of trials for every method (the equal tuning budget)."""
    if not path.is_file():
        raise ProtocolError(f"{path}: no such trial file (one per group: conf/protocol/<group>.yaml)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ProtocolError(f"{path}: not YAML ({str(err).splitlines()[0]})") from None
    data = data if isinstance(data, dict) else {}
    trials = data.get("trials")
    if not isinstance(trials, dict) or not trials:
        raise ProtocolError(f"{path}: expected a 'trials' mapping of method -> list of trials")
    plan: dict[str, list[list[str]]] = {}
    for method, items in trials.items():
        # a row is a method, or a variant of one (supervised_aug) with an experiment file of its own
        if not (CONF_DIR / "experiment" / group / f"{method}.yaml").is_file():
            kind = "" if method in METHODS else f" (a row is a method, {', '.join(sorted(METHODS))}, or a variant with its own file)"
            raise ProtocolError(f"{path}: trials.{method}: no conf/experiment/{group}/{method}.yaml{kind}")
        if not isinstance(items, list) or not items or not all(isinstance(t, list) for t in items):
            raise ProtocolError(f"{path}: trials.{method}: expected a non-empty list of trials, each a list of overrides")
        for k, overrides in enumerate(items):
            check_overrides(f"{path}: trials.{method}[{k}]", overrides)
        plan[method] = [[str(o) for o in t] for t in items]
    counts = {m: len(t) for m, t in plan.items()}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{m} {n}" for m, n in counts.items())
        raise ProtocolError(f"{path}: methods have unequal trial counts ({listed}): every method gets the same tuning budget")
    source, fixed = data.get("source"), data.get("fixed") or []
    baselines = data.get("baselines") or ["supervised", "ptft"]
    for key, names in (("source", [source] if source else []), ("fixed", fixed)):
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ProtocolError(f"{path}: {key}: expected experiment names of conf/experiment/{group}/")
        for name in names:
            if not (CONF_DIR / "experiment" / group / f"{name}.yaml").is_file():
                raise ProtocolError(f"{path}: {key}: no conf/experiment/{group}/{name}.yaml")
            if name in plan:
                raise ProtocolError(f"{path}: {key}: {name} also has trials")
    return TrialPlan(group, path, plan, source, tuple(fixed), tuple(baselines))

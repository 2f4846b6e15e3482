"""Per method, the tuning trial with the best dev score, written once to ROOT/choices.json and
then frozen: a later call reuses every choice in the file and only adds methods it lacks.

The score is the one the run itself selects checkpoints by: its eval.select_metric on its first
dev split, from the run's wer.json (the best-on-dev checkpoint, the rule every method shares).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from bljust.prepare import split_name
from bljust.protocol.trials import ProtocolError, TrialPlan
from bljust.tracking.disk import write_text_atomic
from bljust.tracking.metrics import read_metrics


def tune_dir(root: Path, method: str, k: int) -> Path:
    return root / "tune" / method / f"t{k}"


def dev_score(run: Path) -> tuple[float, str, str]:
    """(score, metric, dev split) of a finished run, read from its config.yaml and wer.json."""
    try:
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        metric, dev = str(cfg["eval"]["select_metric"]), split_name(cfg["recipe"]["dev"][0])
        scores = json.loads((run / "wer.json").read_text())
        return float(scores[dev][metric]), metric, dev
    except (OSError, yaml.YAMLError, json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as err:
        raise ProtocolError(f"{run}: no dev score to choose by ({type(err).__name__}: {err})") from None


def choose_method(plan: TrialPlan, root: Path, method: str) -> dict[str, Any]:
    """The method's trial with the lowest dev score (the first of equal ones), with every trial's score."""
    runs = [tune_dir(root, method, k) for k in range(plan.count)]
    for run in runs:
        if not (run / "wer.json").is_file():
            raise ProtocolError(f"{run}: tuning run not finished (run --phase tune first)")
    scored = [dev_score(run) for run in runs]
    best = min(range(plan.count), key=lambda k: (scored[k][0], k))
    _, metric, split = scored[best]
    return {"trial": best, "overrides": plan.trials[method][best], "metric": metric, "split": split,
            "dev": [s for s, _, _ in scored]}


def freeze_choices(plan: TrialPlan, root: Path, methods: list[str]) -> dict[str, dict[str, Any]]:
    """The choices of `methods`: those already in ROOT/choices.json as they are there, the others
    made now from their tuning runs and added to the file."""
    path = root / "choices.json"
    frozen: dict[str, Any] = {"group": plan.group, "trial_file": str(plan.path), "methods": {}}
    if path.is_file():
        try:
            frozen = json.loads(path.read_text())
            known = frozen["methods"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ProtocolError(f"{path}: not a choices file (delete it to choose again)") from None
        if frozen.get("group") != plan.group:
            raise ProtocolError(f"{path}: made for group {frozen.get('group')!r}, not {plan.group!r}")
        reused = [m for m in methods if m in known]
        if reused:
            print(f"protocol: choices frozen in {path}, reused for {', '.join(reused)}", flush=True)
    new = [m for m in methods if m not in frozen["methods"]]
    for m in new:
        frozen["methods"][m] = choose_method(plan, root, m)
    if new:
        write_text_atomic(path, json.dumps(frozen, indent=1) + "\n")
        print(f"protocol: chose on dev for {', '.join(new)} -> {path}", flush=True)
    return {m: frozen["methods"][m] for m in methods}


def tuning_table(choices: dict[str, dict[str, Any]]) -> str:
    """Markdown: each method's dev score per trial, the chosen one in bold, and its overrides."""
    count = max(len(c["dev"]) for c in choices.values())
    head = "| method | " + " | ".join(f"t{k}" for k in range(count)) + " | chosen | overrides |"
    rows = [head, "|" + "---|" * (count + 3)]
    for m, c in choices.items():
        cells = [f"**{v:.2f}**" if k == c["trial"] else f"{v:.2f}" for k, v in enumerate(c["dev"])]
        rows.append(f"| {m} | " + " | ".join(cells) + f" | t{c['trial']} ({c['split']} {c['metric'].upper()}) | "
                    + (" ".join(f"`{o}`" for o in c["overrides"]) or "(none)") + " |")
    return "\n".join(rows) + "\n"


def reuse_tuning_run(tune: Path, final: Path) -> None:
    """Start the seed-0 final run from the chosen tuning run (same config, same seed): its
    checkpoints, config and records without the final scores, so the trainer resumes at the last
    step and only scores. Retraining it would repeat the same run bit for bit at full cost."""
    if final.exists():
        return  # done before, or a run of its own under way: the trainer resumes either
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    shutil.copytree(tune / "checkpoints", partial / "checkpoints")
    shutil.copy2(tune / "config.yaml", partial / "config.yaml")
    records = [r for r in read_metrics(tune / "metrics.jsonl") if not r.get("final")]
    (partial / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (partial / "reused_from").write_text(f"{tune}\n")
    partial.rename(final)
    print(f"protocol: {final} starts from the chosen tuning run {tune}", flush=True)

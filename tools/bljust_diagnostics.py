"""Why a BL-JUST run did what it did: per run, what its logs say about the two levels.

    python tools/bljust_diagnostics.py RUN_OR_ROOT... [--split dev] [--out docs/results/bljust_why.md]

One row per BL-JUST run folder (method.name bljust in its config.yaml): its final score on
--split (wer.json), the overrides that set it apart (read from its config against the others'),
and from metrics.jsonl, over the joint steps' log records: the mean cosine between the encoder
gradients of L_s and L_u (`grad_cos_sup_unsup`, > 0: the levels pull together), the lower
level's gap L_u - v̂ (`penalty`) at the first and last joint log step, the last γ, and the last
L_u of exploration and of the joint steps. The gradient cosine costs two backward passes at log
steps that are not counted in the run's compute C.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import yaml

from bljust.tracking.metrics import read_metrics
from bljust.tracking.run_config import flatten

JOINT, EXPLORE = 1.0, 0.0  # the `phase` value BL-JUST logs (2.0 = the final CTC fine-tune)
WATCHED = ("optim.lr", "method.encoder_lr", "method.explore", "method.explore_first", "method.gamma_max",
           "method.ramp_length", "method.finetune", "method.joint_schedule", "objective.unsup", "train.max_steps")


def bljust_runs(paths: list[Path]) -> list[Path]:
    found = []
    for p in paths:
        for cfg in ([p / "config.yaml"] if (p / "config.yaml").is_file() else sorted(p.rglob("config.yaml"))):
            if (yaml.safe_load(cfg.read_text()) or {}).get("method", {}).get("name") == "bljust":
                found.append(cfg.parent)
    return sorted(set(found))


def summarise(run: Path, split: str) -> dict[str, object]:
    records = [r for r in read_metrics(run / "metrics.jsonl") if not r.get("final")]
    joint = [r for r in records if r.get("phase") == JOINT]
    explore = [r for r in records if r.get("phase") == EXPLORE and "loss_unsup" in r]
    cos = [r["grad_cos_sup_unsup"] for r in joint if "grad_cos_sup_unsup" in r]
    gap = [r["penalty"] for r in joint if _finite(r.get("penalty"))]  # NaN (null) without exploration
    wer_path = run / "wer.json"
    score = json.loads(wer_path.read_text()).get(split, {}) if wer_path.is_file() else {}
    return {"run": run, "config": flatten(yaml.safe_load((run / "config.yaml").read_text())),
            "cer": score.get("cer", math.nan), "wer": score.get("wer", math.nan),
            "grad_cos": statistics.mean(cos) if cos else math.nan, "cos_n": len(cos),
            "gap_first": gap[0] if gap else math.nan, "gap_last": gap[-1] if gap else math.nan,
            "gamma": joint[-1].get("gamma", math.nan) if joint else math.nan,
            "lu_explore": explore[-1]["loss_unsup"] if explore else math.nan,
            "lu_joint": joint[-1].get("loss_unsup", math.nan) if joint else math.nan}


def differing(rows: list[dict]) -> list[str]:
    """The watched keys whose value is not the same in every run."""
    return [k for k in WATCHED if len({str(r["config"].get(k)) for r in rows}) > 1]


def markdown(rows: list[dict], split: str) -> str:
    keys = differing(rows)
    head = ["run", *keys, f"{split} CER", f"{split} WER", "cos(∇L_s, ∇L_u) (n)", "gap L_u − v̂ first → last",
            "γ last", "L_u explore → joint"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            str(r["run"]), *(str(r["config"].get(k)) for k in keys), _f(r["cer"], 1), _f(r["wer"], 1),
            f"{_f(r['grad_cos'], 3)} ({r['cos_n']})", f"{_f(r['gap_first'], 3)} → {_f(r['gap_last'], 3)}",
            _f(r["gamma"], 2), f"{_f(r['lu_explore'], 2)} → {_f(r['lu_joint'], 2)}"]) + " |")
    return "\n".join(lines) + "\n"


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _f(v: float, digits: int) -> str:
    return "–" if not isinstance(v, (int, float)) or math.isnan(v) else f"{v:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    runs = bljust_runs(args.runs)
    if not runs:
        print(f"bljust_diagnostics: no BL-JUST run (config.yaml with method.name bljust) under "
              f"{' '.join(map(str, args.runs))}", file=sys.stderr)
        return 1
    table = markdown([summarise(r, args.split) for r in runs], args.split)
    print(table, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The fair protocol end to end: equal tuning on dev, choices frozen, seeds, test once, one report.

    python -m bljust.protocol --group bench [--root runs/protocol/bench] [--jobs 2]
        [--methods supervised,bljust] [--phase tune|seeds|test|all] [--seeds 0,1,2] [--dry-run] [overrides...]

tune:  every trial of conf/protocol/<group>.yaml at seed 0 into ROOT/tune/<method>/t<k>/, test not
       scored (eval.score_test=false); per method the trial with the best dev score (the run's
       eval.select_metric on its best-on-dev checkpoint) goes into ROOT/choices.json, which is
       frozen: when it exists its choices are reused, never recomputed.
seeds: each method's chosen trial at every seed into ROOT/final/<method>/seed<s>/, runs that score
       test at their end (the only time test is scored). Seed 0 is the chosen tuning run itself,
       not trained again: its checkpoints and records are copied (without its scores) and the
       run resumes at its last step, so it only scores dev and test with its best-on-dev
       checkpoint; the other seeds are fresh runs.
test:  checks that every final run scored test, then writes ROOT/report.md: the tuning table and
       python -m bljust.compare over ROOT/final (mean ± sd over seeds, compute C, paired bootstrap
       intervals against supervised and ptft). With --lm LM.arpa every final run is first also
       scored with beam search and that word n-gram LM, its lm_weight and word_score chosen on dev
       over one fixed grid (the same for every run: bljust.evaluate tune_on=dev; LibriSpeech's
       test-other is tuned on dev-other), so the report has test+lm beside greedy test; greedy
       WERs near 100 % compare nothing.

Each run is `python -m bljust.train +experiment=<group>/<method> [overrides] <trial overrides>
train.seed=S eval.score_test=... run_dir=...`: the extra overrides (corpus paths, model size) go to
every run, a trial's own come after them. A run with wer.json is skipped and a killed one resumes
from its checkpoint, so running the same command again continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from bljust import compare
from bljust.cli import CONF_DIR, compose_config, first_line
from bljust.errors import UserError
from bljust.prepare import prepare, split_name
from bljust.protocol.choices import freeze_choices, reuse_tuning_run, tune_dir, tuning_table
from bljust.protocol.launch import Job, run_jobs, show
from bljust.protocol.trials import ProtocolError, TrialPlan, check_overrides, load_trials

PHASES = ("tune", "seeds", "test", "all")
TUNE_SEED = 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--group", required=True, help="conf/experiment/<group>/ and conf/protocol/<group>.yaml")
    ap.add_argument("--trials", type=Path, default=None, help="trial file (default: conf/protocol/<group>.yaml)")
    ap.add_argument("--root", type=Path, default=None, help="protocol folder (default: runs/protocol/<group>)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time")
    ap.add_argument("--methods", default=None, help="a subset of the trial file's methods, e.g. supervised,bljust")
    ap.add_argument("--phase", choices=PHASES, default="all")
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the final runs (default 0,1,2)")
    ap.add_argument("--lm", type=Path, default=None,
                    help="word n-gram LM (ARPA or KenLM binary): the test phase also scores test+lm, weights chosen on dev")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. model=small")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        ap.error(f"--seeds {args.seeds!r}: expected comma-separated integers")
    if not args.seeds:
        ap.error("--seeds: at least one seed")
    args.trials = args.trials or CONF_DIR / "protocol" / f"{args.group}.yaml"
    args.root = args.root or Path("runs") / "protocol" / args.group
    return args


def pick_methods(plan: TrialPlan, wanted: str | None) -> list[str]:
    if wanted is None:
        return list(plan.trials)
    methods = [m for m in wanted.split(",") if m]
    for m in methods:
        if m not in plan.trials:
            raise ProtocolError(f"--methods: {m!r} has no trials in {plan.path} (it has {', '.join(plan.trials)})")
    return methods


def train_cmd(plan: TrialPlan, method: str, extra: list[str], trial: list[str], seed: int, score_test: bool,
              run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "bljust.train", plan.experiment(method), *extra, *trial, f"train.seed={seed}",
            f"eval.score_test={str(score_test).lower()}", f"run_dir={run_dir}"]


def check_composes(plan: TrialPlan, methods: list[str], extra: list[str]) -> None:
    """Every trial's config composes and validates before anything runs; the first that does not, in one line."""
    for m in methods:
        for k, trial in enumerate(plan.trials[m]):
            try:
                compose_config([plan.experiment(m), *extra, *trial])
            except UserError as err:
                raise ProtocolError(f"{plan.path}: trials.{m}[{k}]: {first_line(err)}") from None


def prepare_data(plan: TrialPlan, methods: list[str], extra: list[str]) -> None:
    """Build each experiment's corpus and prepared files once, before parallel runs would race to."""
    for m in methods:
        prepare(compose_config([plan.experiment(m), *extra]), verbose=False)


def tune_jobs(plan: TrialPlan, root: Path, methods: list[str], extra: list[str]) -> list[Job]:
    return [Job(f"tune/{m}/t{k}", tune_dir(root, m, k),
                train_cmd(plan, m, extra, trial, TUNE_SEED, False, tune_dir(root, m, k)))
            for m in methods for k, trial in enumerate(plan.trials[m])]


def final_jobs(plan: TrialPlan, root: Path, choices: dict[str, Any], seeds: list[int], extra: list[str]) -> list[Job]:
    """Each chosen trial at every seed, then each fixed row once (at the tuning seed: nothing was tuned)."""
    jobs = [Job(f"final/{m}/seed{s}", root / "final" / m / f"seed{s}",
                train_cmd(plan, m, extra, c["overrides"], s, True, root / "final" / m / f"seed{s}"))
            for m, c in choices.items() for s in seeds]
    return jobs + [Job(f"final/{m}/seed{TUNE_SEED}", root / "final" / m / f"seed{TUNE_SEED}",
                       train_cmd(plan, m, extra, [], TUNE_SEED, True, root / "final" / m / f"seed{TUNE_SEED}"))
                   for m in plan.fixed]


def source_job(plan: TrialPlan, root: Path, extra: list[str]) -> Job:
    """The source model, trained once (seed 0, test scored: its own dev/test are its record)."""
    return Job("source", root / "source", train_cmd(plan, plan.source, extra, [], TUNE_SEED, True, root / "source"))


def with_source(plan: TrialPlan, root: Path, extra: list[str]) -> list[str]:
    """The overrides of every run: the command line's, plus init_from the source model's best.pt."""
    return [*extra, f"init_from={root / 'source' / 'checkpoints' / 'best.pt'}"] if plan.source else list(extra)


def dry_run_choices(root: Path, methods: list[str]) -> dict[str, Any]:
    """What --dry-run shows for the final runs: the frozen choice where there is one, else a placeholder."""
    path = root / "choices.json"
    known = json.loads(path.read_text())["methods"] if path.is_file() else {}
    return {m: known.get(m, {"overrides": [f"<chosen trial of tune/{m}>"]}) for m in methods}


def execute(jobs: list[Job], args: argparse.Namespace, phase: str, plan: TrialPlan, methods: list[str]) -> None:
    if args.dry_run:
        print(f"# phase {phase}: {len(jobs)} runs")
        print("\n".join(show(j) for j in jobs))
        return
    if not all(j.finished for j in jobs):
        prepare_data(plan, methods, args.overrides)
    print(f"protocol: phase {phase}: {len(jobs)} runs under {args.root}, {args.jobs} at a time", flush=True)
    failed = run_jobs(jobs, args.jobs)
    if failed:
        raise ProtocolError(f"{len(failed)} run(s) of phase {phase} did not finish, first {failed[0].run_dir}: "
                            f"see its protocol.log, then run the same command again to resume")


def tuning_split(test: str, devs: list[str]) -> str:
    """The dev split whose name matches `test`'s (test-other -> dev-other), else the recipe's first."""
    twin = "dev" + test[len("test"):] if test.startswith("test") else None
    return twin if twin in devs else devs[0]


def lm_jobs(finals: list[Job], lm: Path) -> list[Job]:
    """One job per final run: each test split of its recipe decoded by beam search with `lm`, the
    weights chosen on its dev split (`bljust.evaluate tune_on=...`, tuning_split), into the run's
    own wer.json and hyps/ beside greedy's."""
    jobs = []
    for j in finals:
        recipe = yaml.safe_load((j.run_dir / "config.yaml").read_text())["recipe"]
        tests, devs = ([split_name(s) for s in recipe[k]] for k in ("test", "dev"))
        # one job per run, its splits one after another: each evaluate rewrites the run's wer.json
        cmds = [[sys.executable, "-m", "bljust.evaluate", f"ckpt={j.run_dir / 'checkpoints' / 'best.pt'}",
                 f"split={t}", f"out={j.run_dir}", "decode=beam", f"lm={lm}", f"tune_on={tuning_split(t, devs)}"]
                for t in tests]
        jobs.append(Job(f"{j.name}+lm", j.run_dir, ["sh", "-c", " && ".join(shlex.join(c) for c in cmds)],
                        done=f"hyps/{tests[-1]}+lm.txt"))
    return jobs


def check_test_scored(jobs: list[Job]) -> None:
    """Each final run finished and its wer.json scores every test split of its recipe."""
    for j in jobs:
        if not j.finished:
            raise ProtocolError(f"{j.run_dir}: final run not finished (run --phase seeds first)")
        tests = [split_name(t) for t in yaml.safe_load((j.run_dir / "config.yaml").read_text())["recipe"]["test"]]
        missing = [t for t in tests if t not in json.loads((j.run_dir / "wer.json").read_text())]
        if missing:
            raise ProtocolError(f"{j.run_dir / 'wer.json'}: test split(s) {', '.join(missing)} not scored")


def write_report(args: argparse.Namespace, plan: TrialPlan, choices: dict[str, Any]) -> Path:
    comparison = args.root / "comparison.md"
    if compare.main([str(args.root / "final"), "--out", str(comparison), "--baselines", ",".join(plan.baselines)]):
        raise ProtocolError(f"{args.root / 'final'}: the comparison failed (its reason is above)")
    report = args.root / "report.md"
    report.write_text(
        f"# Protocol: group {plan.group}\n\n"
        f"{plan.count} trials per method from {plan.path}, tuned at seed {TUNE_SEED} on dev (test not scored); "
        f"choices frozen in {args.root / 'choices.json'}; final runs at seeds {', '.join(map(str, args.seeds))}, "
        f"best-on-dev checkpoint for every method, test scored once.\n\n## Tuning (dev)\n\n"
        f"{tuning_table(choices)}\n## Test\n\n{comparison.read_text()}")
    return report


def run_protocol(args: argparse.Namespace) -> None:
    check_overrides("command line", args.overrides)
    if args.lm is not None and not args.lm.is_file():
        raise ProtocolError(f"--lm {args.lm}: file not found")
    plan = load_trials(args.trials, args.group)
    methods = pick_methods(plan, args.methods)
    if plan.source and any(str(o).lstrip("+~").startswith("init_from=") for o in args.overrides):
        raise ProtocolError(f"init_from is set by the protocol: {plan.path} trains the source model {plan.source}")
    extra = with_source(plan, args.root, args.overrides)
    check_composes(plan, methods, extra)
    if plan.source and args.phase in ("tune", "all"):
        execute([source_job(plan, args.root, args.overrides)], args, "source", plan, [plan.source])
    args.overrides = extra  # every later run starts from the source model
    if args.phase in ("tune", "all"):
        execute(tune_jobs(plan, args.root, methods, args.overrides), args, "tune", plan, methods)
    if args.phase == "tune" and args.dry_run:
        return
    choices = dry_run_choices(args.root, methods) if args.dry_run else freeze_choices(plan, args.root, methods)
    if args.phase == "tune":
        return
    finals = final_jobs(plan, args.root, choices, args.seeds, args.overrides)
    if args.phase in ("seeds", "all"):
        if not args.dry_run and TUNE_SEED in args.seeds:
            for m, c in choices.items():
                reuse_tuning_run(tune_dir(args.root, m, c["trial"]), args.root / "final" / m / f"seed{TUNE_SEED}")
        execute(finals, args, "seeds", plan, methods)
    if args.phase in ("test", "all") and args.dry_run:
        lm = f", score each on test+lm with {args.lm} (weights chosen on dev)" if args.lm is not None else ""
        print(f"# phase test: check that the {len(finals)} final runs scored test{lm}, write {args.root / 'report.md'}")
    elif args.phase in ("test", "all"):
        check_test_scored(finals)
        if args.lm is not None:
            execute(lm_jobs(finals, args.lm), args, "test+lm", plan, methods)
        print(f"protocol: report -> {write_report(args, plan, choices)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run_protocol(args)
    except UserError as err:
        print(f"error: {first_line(err)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training runs (and LM scorings) as subprocesses, N at a time, each resumable: a run whose folder
holds wer.json (a scoring: its hyps file) is finished and skipped; any other is (re)started, and
the trainer resumes it from its checkpoint."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Job:
    name: str  # the run folder relative to the protocol root, e.g. tune/bljust/t0
    run_dir: Path
    cmd: list[str]
    done: str = "wer.json"  # the file, inside run_dir, whose presence says the job is finished

    @property
    def finished(self) -> bool:
        return (self.run_dir / self.done).is_file()


def show(job: Job) -> str:
    return ("# finished, skipped: " if job.finished else "") + shlex.join(job.cmd)


def run_job(job: Job, env: dict[str, str]) -> tuple[Job, int, float]:
    """Run one job, its output appended to RUN/protocol.log; (job, exit status, seconds)."""
    job.run_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(job.run_dir / "protocol.log", "a") as log:
        log.write("$ " + shlex.join(job.cmd) + "\n")
        log.flush()
        rc = subprocess.call(job.cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    return job, rc, time.time() - start


def run_jobs(jobs: list[Job], parallel: int) -> list[Job]:
    """Run the unfinished jobs, `parallel` at a time on cpus/parallel threads each; the failed ones."""
    todo = [j for j in jobs if not j.finished]
    for j in jobs:
        if j.finished:
            print(f"protocol: {j.name} finished, skipped", flush=True)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // parallel)))
    env.setdefault("WANDB_SILENT", "true")
    failed = []
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        for job, rc, seconds in pool.map(lambda j: run_job(j, env), todo):
            state = "done" if rc == 0 and job.finished else f"FAILED (exit {rc}), see {job.run_dir / 'protocol.log'}"
            print(f"protocol: {job.name} {state} ({seconds:.0f} s)", flush=True)
            if state != "done":
                failed.append(job)
    return failed

"""Run under `torchrun` by tests/test_distributed.py: train each given run, record what every rank ends with.

    torchrun --nproc_per_node=2 tests/ddp_worker.py DEMO_ROOT OUT_DIR RUNS_JSON

RUNS_JSON is a list of {"name": ..., "overrides": [...]}. For each run and rank, OUT_DIR/<name>/
gets rank<r>.pt: the trained parameters (model and L_u head, taken before the final evaluation
loads best.pt) and the data streams' positions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from conftest import compose  # tests/ is this script's folder, hence on sys.path

from bljust import distributed
from bljust.train import Trainer


def main(root: str, out: str, runs_json: str) -> None:
    torch.set_num_threads(1)
    for run in json.loads(runs_json):
        run_dir = Path(out) / run["name"]
        trainer = Trainer(compose(Path(root), [*run["overrides"], f"run_dir={run_dir}"]), run_dir)
        evaluate = trainer.final_evaluation

        def record_then_evaluate(trainer=trainer, evaluate=evaluate, run_dir=run_dir):
            state = {f"model.{k}": v.clone() for k, v in trainer.model.state_dict().items()}
            for name, module in trainer.method.modules.items():
                state.update({f"{name}.{k}": v.clone() for k, v in module.state_dict().items()})
            streams = {"labelled": trainer.labelled.state_dict()}
            if trainer._unlabelled is not None:
                streams["unlabelled"] = trainer._unlabelled.state_dict()
            torch.save({"params": state, "streams": streams, "step": trainer.step},
                       run_dir / f"rank{trainer.dist.rank}.pt")
            return evaluate()

        trainer.final_evaluation = record_then_evaluate
        trainer.run()
    distributed.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:4])

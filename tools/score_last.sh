#!/usr/bin/env bash
# Score each finished run's final checkpoint (last.pt) on every dev/test split into RUN/eval_last/.
# Usage: tools/score_last.sh RUN_DIR [RUN_DIR ...]
set -euo pipefail
py=${PYTHON:-.venv/bin/python}
for run in "$@"; do
  for split in dev test; do
    $py -m bljust.evaluate ckpt="$run/checkpoints/last.pt" split=$split out="$run/eval_last" | sed "s|^|$run |"
  done
done

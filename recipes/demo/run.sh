#!/usr/bin/env bash
# The demo recipe as numbered stages; each stage is one call of the package's own commands.
# Usage: recipes/demo/run.sh [first_stage] [last_stage]   (run from the repository root)
set -euo pipefail
stage=${1:-1}
stop=${2:-3}
py=${PYTHON:-.venv/bin/python}
run=runs/demo/supervised/seed0

if [ "$stage" -le 1 ] && [ "$stop" -ge 1 ]; then
  echo "stage 1: synthesise the demo corpus, manifests, CMVN, tokenizer"
  $py -m bljust.prepare recipe=demo
fi
if [ "$stage" -le 2 ] && [ "$stop" -ge 2 ]; then
  echo "stage 2: train"
  $py -m bljust.train recipe=demo method=supervised
fi
if [ "$stage" -le 3 ] && [ "$stop" -ge 3 ]; then
  echo "stage 3: evaluate the best checkpoint on test"
  $py -m bljust.evaluate ckpt=$run/checkpoints/best.pt split=test
fi

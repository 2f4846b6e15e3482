#!/usr/bin/env bash
# The early-prediction sweep of docs/monitors.md: 8 short JUST runs on the demo corpus that differ
# in batch size (train.max_duration), BEST-RQ mask probability and learning rate, monitors every
# 20 % of training; then tools/early_prediction.py over them. Sized for a shared 2-core CPU: 60
# steps, and a smaller probe (3 min of audio, 50 clusters) than the demo default.
# Usage: recipes/demo/monitor_sweep.sh [extra overrides]   (two runs at a time, one thread each)
set -euo pipefail
py=${PYTHON:-.venv/bin/python}
root=${ROOT:-runs/demo_monitor_sweep}
steps=${STEPS:-60}
export OMP_NUM_THREADS=1
common=(recipe=demo method=just train.max_steps=$steps optim.warmup_steps=$((steps / 5)) train.eval_every=$steps
        train.ckpt_every=$steps train.log_every=$((steps / 10)) monitor.every_steps=$((steps / 5))
        monitor.probe_hours=0.05 monitor.num_clusters=50 eval.max_dev_utts=20
        train.num_workers=0 train.progress=false logging.wandb=${WANDB_MODE_DEMO:-offline}
        logging.group=demo_monitor_sweep "$@")
# label: max_duration mask_prob lr
configs=("a 40 0.04 2e-3" "b 20 0.04 2e-3" "c 40 0.01 2e-3" "d 40 0.10 2e-3"
         "e 40 0.04 5e-4" "f 40 0.04 5e-3" "g 20 0.10 5e-4" "h 30 0.01 5e-3")
$py -m bljust.prepare recipe=demo
one() { read -r label md mp lr <<<"$1"
        $py -m bljust.train "${common[@]}" train.max_duration=$md objective.bestrq.mask_prob=$mp optim.lr=$lr \
            run_dir=$root/${label}_md${md}_mp${mp}_lr${lr} > $root/${label}.log 2>&1; }
mkdir -p $root
for ((i = 0; i < ${#configs[@]}; i += 2)); do
  one "${configs[i]}" & one "${configs[i + 1]}" & wait
done
$py tools/early_prediction.py $root --fractions 0.2 0.4 0.6 --out docs/monitors_sweep
$py tools/early_prediction.py $root --fractions 0.2 0.4 0.6 --metric cer --out docs/monitors_sweep_cer

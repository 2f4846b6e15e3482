#!/usr/bin/env bash
# The BL-JUST tuning sweep of docs/demo_comparison.md, which is also the early-prediction sweep of
# docs/monitors.md: BL-JUST runs on the demo corpus (15 min labelled, 2 h unlabelled), seed 0, each
# at the comparison's compute budget (1200 forward/backward passes over a 40 s batch, as ptft and
# just in compare.sh), label-free monitors every 10 % of training.
#   a-h vary the knobs the monitor paper varied: batch size (train.max_duration), BEST-RQ mask
#       probability, learning rate (all three BL-JUST groups);
#   i-k vary BL-JUST's own knobs: gamma_max, a lower-level warm start, no exploration.
# The BL-JUST point of the comparison table is chosen on dev CER only; test scores of the sweep runs
# exist for the early-prediction study (final test WER across runs).
# Usage: recipes/demo/bljust_sweep.sh [labels...]   (two runs at a time, one thread each)
set -euo pipefail
py=${PYTHON:-.venv/bin/python}
root=${ROOT:-runs/demo_bljust_sweep}
export OMP_NUM_THREADS=1
common=(recipe=demo method=bljust train.seed=0 optim.warmup_steps=100 train.eval_every=100
        train.ckpt_every=100 train.log_every=10 train.num_workers=0 train.progress=false
        monitor.every_steps=70 logging.wandb=${WANDB_MODE_DEMO:-offline} logging.group=demo_bljust_sweep)
# 10 outer epochs x (20 exploration + 50 joint steps) = 200 x 1 C + 500 x 2 C = 1200 C
base=(train.max_steps=500 method.joint_steps_per_epoch=50 method.explore=20 method.ramp_length=5
      method.explore_lr=1e-3)
lr() { echo method.encoder_lr=$1 method.ctc_head_lr=$1 method.unsup_head_lr=$1; }
declare -A cfg=(
  [a]="${base[*]} train.max_duration=40 objective.bestrq.mask_prob=0.10 $(lr 2e-3)"
  [b]="${base[*]} train.max_duration=20 objective.bestrq.mask_prob=0.10 $(lr 2e-3)"
  [c]="${base[*]} train.max_duration=40 objective.bestrq.mask_prob=0.05 $(lr 2e-3)"
  [d]="${base[*]} train.max_duration=40 objective.bestrq.mask_prob=0.20 $(lr 2e-3)"
  [e]="${base[*]} train.max_duration=40 objective.bestrq.mask_prob=0.10 $(lr 1e-3)"
  [f]="${base[*]} train.max_duration=40 objective.bestrq.mask_prob=0.10 $(lr 4e-3)"
  [g]="${base[*]} train.max_duration=20 objective.bestrq.mask_prob=0.20 $(lr 1e-3)"
  [h]="${base[*]} train.max_duration=30 objective.bestrq.mask_prob=0.05 $(lr 4e-3)"
  # a small penalty: closer to supervised training plus exploration
  [i]="${base[*]} train.max_duration=40 $(lr 2e-3) method.gamma_max=0.1"
  # a lower-level warm start (300 steps on L_u, like ptft's pre-training), then joint steps only:
  # 300 + 450 x 2 = 1200 C
  [j]="train.max_steps=450 method.joint_steps_per_epoch=50 method.explore=0 method.explore_first=300
       method.ramp_length=3 method.explore_lr=1e-3 train.max_duration=40 $(lr 2e-3)"
  # no exploration, the penalty only: 600 joint steps = 1200 C
  [k]="train.max_steps=600 method.joint_steps_per_epoch=50 method.explore=0 method.ramp_length=5
       train.max_duration=40 $(lr 2e-3)"
)
labels=("$@")
[ ${#labels[@]} -gt 0 ] || labels=(a b c d e f g h i j k)
$py -m bljust.prepare recipe=demo
mkdir -p $root
one() { local dir=$root/$1/seed0
        # shellcheck disable=SC2086  # the config strings are word lists on purpose
        $py -m bljust.train "${common[@]}" ${cfg[$1]} run_dir=$dir > $root/$1.log 2>&1
        tools/score_last.sh $dir >> $root/$1.log 2>&1; }
for ((i = 0; i < ${#labels[@]}; i += 2)); do
  one "${labels[i]}" & { [ $((i + 1)) -lt ${#labels[@]} ] && one "${labels[i + 1]}"; } & wait
done
$py -m bljust.compare $root --wer-json eval_last/wer.json --out $root/table.md --html $root/report.html

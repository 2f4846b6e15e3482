#!/usr/bin/env bash
# Method comparison on the default demo corpus (15 min labelled, 2 h unlabelled), as in
# docs/demo_comparison.md. Each seed is one chain of runs; chains can run in parallel
# (one CPU thread each): SEEDS="0" recipes/demo/compare.sh & SEEDS="1" recipes/demo/compare.sh
#
# Budgets, in forward/backward passes over one 40 s batch ("C"):
#   supervised  600 supervised steps                                  =  600 C
#   supervised_1200  1200 supervised steps (equal compute to the rest)  = 1200 C
#   ptft        600 pre-training + 600 fine-tuning steps               = 1200 C
#   just        600 joint steps (labelled + unlabelled batch)          = 1200 C
#   bljust      10 outer epochs x (20 exploration + 50 joint) steps    = 1200 C
#   pseudo_label  500 supervised warm-up steps, then 700 steps of slimIPL cycles (1 supervised :
#               2 pseudo-labelled): 1160 updates + ~125 labelling forward passes (~1/3 C each:
#               40 to fill the cache, ~0.2 x 427 replacements)                    ~ 1200 C
# ptft and just have as many supervised updates as supervised; bljust has the same total compute
# as ptft and just (500 supervised updates); pseudo_label too (~733 supervised updates).
set -euo pipefail
py=${PYTHON:-.venv/bin/python}
root=${ROOT:-runs/demo_compare}
seeds=${SEEDS:-0 1}
methods=" ${METHODS:-supervised supervised_1200 ptft just bljust} "  # labels to run
common=(recipe=demo train.max_duration=40 optim.lr=2e-3 optim.warmup_steps=100 train.eval_every=100
        train.ckpt_every=100 train.log_every=25 train.num_workers=0
        train.progress=false logging.wandb=${WANDB_MODE_DEMO:-offline} logging.group=demo_compare "$@")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

$py -m bljust.prepare recipe=demo
for seed in $seeds; do
  # run LABEL METHOD [overrides]: train, then score the final checkpoint (the budget's end)
  run() { local label=$1 m=$2; shift 2; local dir=$root/$label/seed$seed
          [[ $methods == *" $label "* ]] || return 0
          $py -m bljust.train method=$m train.seed=$seed "${common[@]}" "$@" run_dir=$dir
          tools/score_last.sh $dir; }
  run supervised supervised train.max_steps=600
  run supervised_1200 supervised train.max_steps=1200
  run ptft ptft train.max_steps=600 method.pretrain_steps=600 method.pretrain_warmup_steps=100
  run just just train.max_steps=600 method.alpha=0.5
  run bljust bljust train.max_steps=500 method.joint_steps_per_epoch=50 method.explore=20 method.ramp_length=5 \
      method.encoder_lr=2e-3 method.ctc_head_lr=2e-3 method.unsup_head_lr=2e-3 method.explore_lr=1e-3
  run pseudo_label pseudo_label train.max_steps=1200 method.start_step=500 method.sup_updates=1 \
      method.pl_updates=2 method.cache_size=40 method.replace_prob=0.2
done
$py -m bljust.compare $root --wer-json eval_last/wer.json --out $root/table.md --html $root/report.html

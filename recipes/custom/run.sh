#!/usr/bin/env bash
# Worked example of recipe=custom: fine-tune a checkpoint on "company data". The built-in demo
# corpus plays both parts: a model trained on its labelled split is the checkpoint, and sentences
# from its unlabelled split (never heard with labels) are exported as the company's CSV tables.
# With your own data skip stages 1-3: point init_from at your checkpoint and recipe.* at your tables.
#
#   recipes/custom/run.sh [first_stage] [last_stage] [extra hydra overrides for stage 5...]
#
# Environment: PYTHON [.venv/bin/python], METHOD (fine-tuning method) [supervised],
#   BASE_STEPS [600], FT_STEPS [300], OUT [runs/custom_example], ACME [data/acme]
set -euo pipefail
stage=${1:-1}
stop=${2:-6}
shift $(( $# < 2 ? $# : 2 ))
py=${PYTHON:-.venv/bin/python}
method=${METHOD:-supervised}
out=${OUT:-runs/custom_example}
acme=${ACME:-data/acme}
demo=data/demo/l15.0-u120.0-d10.0-t10.0-s0/corpus  # where recipe=demo keeps its default corpus
base=$out/base/checkpoints/best.pt

if [ "$stage" -le 1 ] && [ "$stop" -ge 1 ]; then
  echo "stage 1: the demo corpus, manifests, CMVN, tokenizer"
  $py -m bljust.prepare recipe=demo
fi
if [ "$stage" -le 2 ] && [ "$stop" -ge 2 ]; then
  echo "stage 2: the checkpoint to start from (any method's checkpoint works)"
  $py -m bljust.train recipe=demo method=supervised train.max_steps=${BASE_STEPS:-600} run_dir=$out/base
fi
if [ "$stage" -le 3 ] && [ "$stop" -ge 3 ]; then
  echo "stage 3: 'company data' as CSV tables with audio beside them, plus untranscribed audio"
  $py tools/export_table.py $demo/unlabelled $acme/train.csv --minutes 10 --copy-audio
  $py tools/export_table.py $demo/unlabelled $acme/dev.csv --skip-minutes 10 --minutes 5 --copy-audio
  $py tools/export_table.py $demo/unlabelled $acme/test.csv --skip-minutes 15 --minutes 5 --copy-audio
  $py tools/export_table.py $demo/unlabelled $acme/untranscribed/list.csv --skip-minutes 20 --minutes 30 --copy-audio
fi
if [ "$stage" -le 4 ] && [ "$stop" -ge 4 ]; then
  echo "stage 4: the checkpoint on the company's test set, before fine-tuning"
  $py -m bljust.evaluate ckpt=$base data=$acme/test.csv out=$out/base/eval_acme
fi
if [ "$stage" -le 5 ] && [ "$stop" -ge 5 ]; then
  echo "stage 5: fine-tune with method=$method"
  $py -m bljust.train recipe=custom recipe.name=acme recipe.corpus_dir=$acme \
      recipe.labelled=[train.csv] recipe.dev=[dev.csv] recipe.test=[test.csv] \
      recipe.unlabelled=[untranscribed/audio] init_from=$base method=$method \
      train.max_steps=${FT_STEPS:-300} run_dir=$out/ft_$method \
      train.max_duration=40 eval.select_metric=cer "$@"  # CPU-sized batches; CER: demo WER sits near 100 %
fi
if [ "$stage" -le 6 ] && [ "$stop" -ge 6 ]; then
  echo "stage 6: the fine-tuned model on the company's test set"
  $py -m bljust.evaluate ckpt=$out/ft_$method/checkpoints/best.pt data=$acme/test.csv out=$out/ft_$method/eval_acme
fi

#!/usr/bin/env bash
# Libri-light 10 h labelled + LibriSpeech 960 h unlabelled: every method, then one WER table.
# Each stage is one call of the package's own commands; README.md says what each needs.
#
#   recipes/librispeech_10h/run.sh [first_stage] [last_stage] [extra hydra overrides...]
#
# Environment (defaults in brackets):
#   LIBRISPEECH   LibriSpeech root with train-*/ dev-*/ test-*/            [data/LibriSpeech]
#   FINETUNING    Libri-light librispeech_finetuning root with 1h/ 9h/      [data/librispeech_finetuning]
#   RECIPE        librispeech_10h | librispeech_1h | librispeech_10min | librispeech_100h  [librispeech_10h]
#                 (for each, conf/experiment/librispeech_10h/ holds the method settings)
#   METHODS       methods to train                                          [supervised ptft just bljust]
#   SEEDS         seeds per method                                          [0]
#   LAUNCHER      empty: train here, one run after another; submitit_slurm: submit every
#                 method x seed to SLURM at once (hydra/launcher=submitit_slurm, see README)
#   SLURM_ARGS    hydra.launcher.* overrides, e.g. "hydra.launcher.partition=gpu hydra.launcher.gpus_per_node=1"
#   PYTHON        interpreter                                               [.venv/bin/python]
set -euo pipefail
stage=${1:-1}
stop=${2:-4}
shift $(( $# < 2 ? $# : 2 ))
extra=("$@")
py=${PYTHON:-.venv/bin/python}
recipe=${RECIPE:-librispeech_10h}
methods=${METHODS:-supervised ptft just bljust}
seeds=${SEEDS:-0}
root=runs/$recipe
data=(recipe=$recipe recipe.corpus_dir=${LIBRISPEECH:-data/LibriSpeech})
[ "$recipe" = librispeech_100h ] || data+=(recipe.labelled_dir=${FINETUNING:-data/librispeech_finetuning})
splits="dev-clean dev-other test-clean test-other"

# Method settings live in conf/experiment/librispeech_10h/<method>.yaml (+experiment=...): equal
# compute, and which values are the authors' and which ours, are written there.
if [ "$stage" -le 1 ] && [ "$stop" -ge 1 ]; then
  echo "stage 1: manifests, CMVN statistics and the tokenizer (one idempotent command)"
  $py -m bljust.prepare "${data[@]}" "${extra[@]}"
fi

if [ "$stage" -le 2 ] && [ "$stop" -ge 2 ]; then
  echo "stage 2: train $methods (seeds $seeds)"
  for m in $methods; do
    if [ -z "${LAUNCHER:-}" ]; then
      for seed in $seeds; do
        $py -m bljust.train "${data[@]}" +experiment=librispeech_10h/$m train.seed=$seed "${extra[@]}" \
            run_dir=$root/$m/seed$seed
      done
    else  # one SLURM job per seed; the sweep folder layout equals the local one
      $py -m bljust.train -m hydra/launcher=$LAUNCHER ${SLURM_ARGS:-} "${data[@]}" +experiment=librispeech_10h/$m \
          train.seed=$(echo $seeds | tr ' ' ,) "${extra[@]}" \
          hydra.sweep.dir=$root 'hydra.sweep.subdir=${method.name}/seed${train.seed}' &
    fi
  done
  wait
fi

if [ "$stage" -le 3 ] && [ "$stop" -ge 3 ]; then
  echo "stage 3: score each run's best-on-dev checkpoint on every dev/test split"
  for m in $methods; do
    for seed in $seeds; do
      for split in $splits; do
        $py -m bljust.evaluate ckpt=$root/$m/seed$seed/checkpoints/best.pt split=$split out=$root/$m/seed$seed/eval_best
      done
    done
  done
fi

if [ "$stage" -le 4 ] && [ "$stop" -ge 4 ]; then
  echo "stage 4: compare -> $root/compare.md"
  $py -m bljust.compare $root --wer-json eval_best/wer.json --out $root/compare.md
fi

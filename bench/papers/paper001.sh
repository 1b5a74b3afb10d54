#!/bin/sh
# Paper 001 (Joel et al. 2022) on the real sets: standard ResNet-20, the
# FGSM/BIM/PGD sweep at eps 0.001-0.006 (plus 0.01 and 0.03, where the
# non-medical control breaks), PGD adversarial training with 50% clean / 50%
# adversarial batches (fine-tuned from the standard model), triage of the 20%
# most fragile images. Fashion-MNIST is the non-medical control (3 epochs, the
# sweep on the first 2000 test images). usage: sh bench/papers/paper001.sh [SET]
# with SET one of breastmnist pneumoniamnist brainmri fashion (default: all).
. "$(dirname "$0")/common.sh"
out_dir="$root/bench/out/papers/p001"
mkdir -p "$out_dir"
eps=0.001,0.002,0.004,0.006,0.01,0.03

run_set() {
  name=$1 data=$2 epochs=$3 at_epochs=$4 limit=$5
  shift 5
  d="$out_dir/$name"
  mkdir -p "$d"
  train "$d/standard.safetensors" --data "$data" --model resnet20 --epochs "$epochs" "$@"
  train "$d/adversarial.safetensors" --data "$data" --init "$d/standard.safetensors" \
    --epochs "$at_epochs" --lr 3e-4 --adv pgd --eps 0.004 --adv-iters 7 --adv-ratio 0.5 "$@"
  compare "$d/compare" --models "$d/standard.safetensors,$d/adversarial.safetensors" \
    --data "$data" --attacks fgsm,bim,pgd --eps $eps --limit "$limit" --transfer-eps 0.004 > "$d/compare.txt"
}

sets=${1:-breastmnist pneumoniamnist brainmri fashion}
for s in $sets; do
  case $s in
    breastmnist) timed run_set breastmnist "$shared/breastmnist/breastmnist.npz" 30 10 0 ;;
    pneumoniamnist) timed run_set pneumoniamnist "$shared/pneumoniamnist/pneumoniamnist_recombined.npz" 10 3 0 ;;
    brainmri) timed run_set brainmri "$shared/brain_tumor_mri_yes_no" 30 10 0 --size 28 ;;
    fashion) timed run_set fashion fashion-mnist 3 1 2000 ;;
    *) echo "unknown set $s" >&2; exit 2 ;;
  esac
done
python3 "$root/bench/papers/summarize.py" "$root/bench/out/papers"

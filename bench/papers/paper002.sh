#!/bin/sh
# Paper 002 (Paschali et al., MICCAI 2018) on real sets.
# Segmentation (its second half): SegNet (no skips), U-Net (long skips) and
# FC-DenseNet (long and short skips) of comparable parameter counts, trained
# with the composite loss (median-frequency weighted cross-entropy + Dice),
# Adam, on HC18 fetal-head ultrasound; white-box DAG toward target types A, B
# and C and the black-box transfer matrices between the three (Table 2),
# Rician noise at the SSIM of the DAG examples (Table 1), gradient attacks.
# Classification (its first half): MobileNet (its compact model), DenseNet and
# ResNet-20 on BreastMNIST under FGSM, DeepFool and the saliency-map attack,
# with Gaussian noise at matched SSIM and the FGSM transfer matrix.
# Scaled down to fit about 30 minutes on 2 cores: HC18 at 64x64 (stored
# 128x128), width multipliers for ~0.1M parameters, 40 test images attacked
# by DAG (200 iterations, the reference default); classification at 28x28.
# usage: sh bench/papers/paper002.sh [segment|classify|all]
. "$(dirname "$0")/common.sh"
out_dir="$root/bench/out/papers/p002"
mkdir -p "$out_dir"
what=${1:-all}

segment() {
  data="$shared/hc18_fetal_head"
  d="$out_dir/hc18"
  mkdir -p "$d"
  common="--data $data --size 64 --epochs 20 --lr 0.01 --batch 16"
  train "$d/segnet.safetensors" $common --model segnet --width 0.25
  train "$d/unet.safetensors" $common --model unet --width 0.25
  train "$d/fc-densenet.safetensors" $common --model fc-densenet --width 0.4
  [ -f "$d/compare/seg_compare.json" ] && return
  echo "== compare $d/compare"
  "$mr" --threads "$threads" compare --models "$d/segnet.safetensors,$d/unet.safetensors,$d/fc-densenet.safetensors" \
    --data "$data" --attacks fgsm,pgd --eps 1/255,2/255 --limit 40 --out "$d/compare" --quiet \
    > "$d/compare.txt"
  cat "$d/compare.txt"
}

classify() {
  data="$shared/breastmnist/breastmnist.npz"
  d="$out_dir/breastmnist"
  mkdir -p "$d"
  list=""
  for m in mobilenet densenet resnet20; do
    train "$d/$m.safetensors" --data "$data" --model "$m" --epochs 30
    list="$list,$d/$m.safetensors"
  done
  compare "$d/compare" --models "${list#,}" --data "$data" --attacks fgsm,deepfool,jsma \
    --eps 1/255,2/255,4/255 --no-triage --transfer-attack fgsm --transfer-eps 2/255 > "$d/compare.txt"
  cat "$d/compare.txt"
  for m in mobilenet densenet resnet20; do
    [ -f "$d/eval-$m/results.json" ] || "$mr" --threads "$threads" eval --model "$d/$m.safetensors" \
      --data "$data" --attacks fgsm,deepfool,jsma --eps 2/255 --no-checks --examples 0 --quiet \
      --out "$d/eval-$m" > "$d/eval-$m.txt"
  done
}

case $what in
  segment) timed segment ;;
  classify) timed classify ;;
  all) timed segment; timed classify ;;
  *) echo "usage: $0 [segment|classify|all]" >&2; exit 2 ;;
esac

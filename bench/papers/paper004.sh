#!/bin/sh
# Paper 004 (Rodriguez et al. 2022) on a real set: CBR-LargeT and ResNet-8/20/32
# (and ResNet-50 on the small BreastMNIST), standard-trained, attacked with
# targeted least-likely FGSM and PGD (20 iterations, step 0.1 eps) at eps
# 0.5-4/255; then each adversarially trained from its standard model (PGD,
# eps 3/255, step eps/10, 7 steps, as the paper's chest X-ray setting) and
# compared again, with the transfer matrix between the standard models; then
# saliency maps and feature embeddings of CBR-LargeT and the deepest ResNet.
# usage: sh bench/papers/paper004.sh [breastmnist|pneumoniamnist]
. "$(dirname "$0")/common.sh"
out_dir="$root/bench/out/papers/p004"
mkdir -p "$out_dir"
set_name=${1:-breastmnist}
case $set_name in
  breastmnist) data="$shared/breastmnist/breastmnist.npz" epochs=30 at_epochs=10
    models="cbr-larget resnet8 resnet20 resnet32 resnet50" ;;
  pneumoniamnist) data="$shared/pneumoniamnist/pneumoniamnist_recombined.npz" epochs=8 at_epochs=2
    models="cbr-larget resnet8 resnet20 resnet32" ;;
  *) echo "unknown set $set_name" >&2; exit 2 ;;
esac
d="$out_dir/$set_name"
mkdir -p "$d"
eps=0.5/255,1/255,2/255,4/255

run_all() {
  std="" at=""
  for m in $models; do
    train "$d/$m.safetensors" --data "$data" --model "$m" --epochs "$epochs"
    std="$std,$d/$m.safetensors"
  done
  compare "$d/standard" --models "${std#,}" --data "$data" --attacks fgsm,pgd --target least-likely \
    --iters 20 --step-rel 0.1 --eps $eps --transfer-eps 2/255 > "$d/standard.txt"
  for m in $models; do
    train "$d/$m-at.safetensors" --data "$data" --init "$d/$m.safetensors" --epochs "$at_epochs" \
      --lr 3e-4 --adv pgd --eps 3/255 --adv-step 0.3/255 --adv-iters 7
    at="$at,$d/$m-at.safetensors"
  done
  compare "$d/adversarial" --models "${at#,}" --data "$data" --attacks pgd --target least-likely \
    --iters 20 --step-rel 0.1 --eps $eps --no-transfer > "$d/adversarial.txt"
  # Figs 3-5: saliency and feature maps of the shallowest and the deepest model, both trainings
  for m in ${models%% *} ${models##* }; do
    for kind in "" -at; do
      s="$d/saliency-$m$kind"
      [ -f "$s/embedding.json" ] || "$mr" --threads "$threads" saliency --model "$d/$m$kind.safetensors" \
        --data "$data" --eps 2/255 --out "$s" > /dev/null
    done
  done
}
timed run_all
python3 "$root/bench/papers/summarize.py" "$root/bench/out/papers"

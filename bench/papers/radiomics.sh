#!/bin/sh
# CNN vs radiomics under the same attack (issue 14; the perspective paper,
# 000, asks whether "traditional radiomics" is less subject to adversarial
# examples). On each set: a small CNN and a radiomics model (IBSI features of
# the whole image, correlation-filtered, L2 logistic regression) are trained
# on the same training images; then the same query-only attack (Square,
# Andriushchenko et al. 2020, L-inf, the same query budget) runs on each at
# the same eps on the same test images; PGD (white-box) on the CNN for scale.
# Sets: the built-in lesion phantom, BreastMNIST (ultrasound, 28x28).
# usage: sh bench/papers/radiomics.sh [phantom|breastmnist|all]   (about 15 min here)
. "$(dirname "$0")/common.sh"
out_dir="$root/bench/out/papers/radiomics"
mkdir -p "$out_dir"
what=${1:-all}
eps="0.005,0.01,0.02,0.04"
limit=${LIMIT:-100}
queries=${QUERIES:-500}

run_set() {
  name=$1
  data=$2
  d="$out_dir/$name"
  mkdir -p "$d"
  train "$d/cnn.safetensors" --data "$data" --model cnn --depth 3 --base 16 --epochs 30 --seed 1
  if [ ! -f "$d/radiomics.json" ]; then
    echo "== radiomics train $d/radiomics.json"
    "$mr" --threads "$threads" radiomics train --data "$data" --out "$d/radiomics.json" --quiet \
      > "$d/radiomics_train.txt"
  fi
  cat "$d/radiomics_train.txt"
  if [ ! -f "$d/radiomics_square/radiomics_attack.json" ]; then
    echo "== radiomics attack (square, $queries queries, $limit images)"
    "$mr" --threads "$threads" radiomics attack --model "$d/radiomics.json" --data "$data" \
      --attack square --eps "$eps" --queries "$queries" --limit "$limit" --quiet \
      --out "$d/radiomics_square" > "$d/radiomics_square.txt"
  fi
  cat "$d/radiomics_square.txt"
  : > "$d/cnn_attacks.txt"
  for e in $(echo "$eps" | tr ',' ' '); do
    for a in square pgd; do
      extra=""
      [ "$a" = square ] && extra="--queries $queries"
      printf "%s eps %s: " "$a" "$e" >> "$d/cnn_attacks.txt"
      "$mr" --threads "$threads" attack --model "$d/cnn.safetensors" --data "$data" --attack "$a" \
        --eps "$e" --limit "$limit" $extra --out "$d/cnn_${a}_$e.npz" | head -1 >> "$d/cnn_attacks.txt"
    done
  done
  cat "$d/cnn_attacks.txt"
}

case "$what" in
  phantom | all)
    [ -f "$out_dir/phantom.npz" ] || "$mr" data phantom --n 2000 --out "$out_dir/phantom.npz" > /dev/null
    run_set phantom "$out_dir/phantom.npz"
    ;;
esac
case "$what" in
  breastmnist | all) run_set breastmnist "$shared/breastmnist/breastmnist.npz" ;;
esac

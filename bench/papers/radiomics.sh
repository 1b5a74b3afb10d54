#!/bin/sh
# CNN vs radiomics under the same attack (issue 14; the perspective paper,
# 000, asks whether "traditional radiomics" is less subject to adversarial
# examples). On each set: a small CNN and a radiomics model (IBSI features of
# the whole image, correlation-filtered, L2 logistic regression) are trained
# on the same training images; then the same query-only attack (Square,
# Andriushchenko et al. 2020, L-inf, the same query budget) runs on each at
# the same eps on the same test images; PGD (white-box) on the CNN for scale. A third
# radiomics model reads only the families the white-box surrogate follows (morphology,
# intensity, GLCM): it is attacked by Square and by PGD through the surrogate (issue 14,
# item 5a), so that white-box meets white-box.
# Every stage is skipped when its output exists (delete bench/out/papers/radiomics to redo).
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
  # two discretisations: a fixed bin number (32 bins between each ROI's own minimum and
  # maximum, IBSI's choice for uncalibrated intensities) and a fixed bin size (1/32 of the
  # [0,1] range from 0, the same bins for every image)
  for disc in fbn fbs; do
    opts=""
    [ "$disc" = fbs ] && opts="--bin-width 0.03125 --bin-min 0"
    if [ ! -f "$d/radiomics_$disc.json" ]; then
      echo "== radiomics train $d/radiomics_$disc.json"
      "$mr" --threads "$threads" radiomics train --data "$data" --out "$d/radiomics_$disc.json" \
        $opts --quiet > "$d/radiomics_${disc}_train.txt"
    fi
    cat "$d/radiomics_${disc}_train.txt"
    if [ ! -f "$d/radiomics_${disc}_square/radiomics_attack.json" ]; then
      echo "== radiomics attack ($disc, square, $queries queries, $limit images)"
      "$mr" --threads "$threads" radiomics attack --model "$d/radiomics_$disc.json" --data "$data" \
        --attack square --eps "$eps" --queries "$queries" --limit "$limit" --quiet \
        --out "$d/radiomics_${disc}_square" > "$d/radiomics_${disc}_square.txt"
    fi
    cat "$d/radiomics_${disc}_square.txt"
  done
  # white-box on radiomics: a model restricted to what the surrogate differentiates
  if [ ! -f "$d/radiomics_wb.json" ]; then
    echo "== radiomics train $d/radiomics_wb.json (morphology, intensity, glcm)"
    "$mr" --threads "$threads" radiomics train --data "$data" --out "$d/radiomics_wb.json" \
      --families morphology,intensity,glcm --quiet > "$d/radiomics_wb_train.txt"
  fi
  cat "$d/radiomics_wb_train.txt"
  for a in square surrogate; do
    q=$queries
    [ "$a" = surrogate ] && q=${SURROGATE_QUERIES:-50}
    if [ ! -f "$d/radiomics_wb_$a/radiomics_attack.json" ]; then
      echo "== radiomics attack (restricted model, $a, $q queries, $limit images)"
      "$mr" --threads "$threads" radiomics attack --model "$d/radiomics_wb.json" --data "$data" \
        --attack "$a" --eps "$eps" --queries "$q" --limit "$limit" --quiet \
        --out "$d/radiomics_wb_$a" > "$d/radiomics_wb_$a.txt"
    fi
    cat "$d/radiomics_wb_$a.txt"
  done
  if [ -s "$d/cnn_attacks.txt" ]; then
    cat "$d/cnn_attacks.txt"
    return
  fi
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

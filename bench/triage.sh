#!/bin/sh
# Issue 16, item 4: triage at the cost of one attack. PneumoniaMNIST's 624 test
# images with ResNet-20 (paper 001's model), triaged by the 10-step PGD bisection
# (--attack pgd) and by one FMN run (the default), twice each, interleaved so
# both see the same machine. Prints each time, the speed-up and how many images
# FMN bounds no higher than the bisection. usage: sh bench/triage.sh
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/papers/common.sh"
dir="$root/bench/out/triage"
mkdir -p "$dir"
data="$shared/pneumoniamnist/pneumoniamnist_recombined.npz"
train "$dir/resnet20.safetensors" --data "$data" --model resnet20 --epochs 10
run() { # NAME ARGS...: seconds into $dir/NAME.seconds
  name=$1
  shift
  t0=$(date +%s.%N)
  "$mr" --threads "$threads" triage --model "$dir/resnet20.safetensors" --data "$data" \
    --out "$dir/$name" --quiet "$@" > "$dir/$name.txt"
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc >> "$dir/$name.seconds"
}
rm -f "$dir"/*.seconds
for round in 1 2; do
  run bisect --attack pgd
  run fmn
done
python3 "$root/bench/triage_compare.py" "$dir"

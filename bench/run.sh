#!/bin/sh
# Engine speed beside PyTorch on this machine: same models, batch 128, same
# thread count; prints a markdown table with ratios (ours / PyTorch > 1 is
# faster). usage: sh bench/run.sh [THREADS] [--quick] [MODEL[:SIZE]]
# LARGE=1 adds the 224x224x3 rows (resnet50, vgg16, mobilenet, densenet121; batch 32).
# Each row alternates the two sides, three rounds of one timed run each (one round with
# --quick), and the table takes each side's median: this machine's speed drifts by up to 25%
# over minutes (PyTorch's ResNet-20 64x64 training step measured 156, 173, 211 and 214 img/s
# in four processes in a row), and a whole-table run of one side, then the other, moved ratios
# by 30%.
set -e
threads=${1:-2}
quick=${2:-}
only=${3:-}
cd "$(dirname "$0")/.."
mkdir -p bench/out
make -s build/bench_engine
rows="cbr-larget:28 cnn:28 resnet8:28 resnet20:28 cbr-larget:64 cnn:64 resnet8:64 resnet20:64
mobilenet:64 densenet:64 unet:64 mobilenet:128 densenet:128 unet:128"
[ -n "$LARGE" ] && rows="$rows resnet50:224 vgg16:224 mobilenet:224 densenet121:224"
build/bench_engine --threads "$threads" --only none:0 >bench/out/ours.csv # ceilings, header
echo "model,size,channels,op,config,images_per_s" >bench/out/torch.csv
for row in $rows; do
  case "$only" in "" | "$row" | "${row%%:*}") ;; *) continue ;; esac
  large=""
  [ "${row#*:}" = 224 ] && large=--large
  rounds=3
  [ -n "$quick" ] && rounds=1
  for round in $(seq "$rounds"); do
    # OpenMP's default wait policy, as a user runs medrobust (passive cost small models 15-20%)
    build/bench_engine --threads "$threads" --no-ceiling --quick $large --only "$row" |
      tail -n +2 | tee -a bench/out/ours.csv
    # PERF-NOTES: PyTorch loses up to 2.5x to mmap/munmap page faults without this
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=17179869184 \
      OMP_NUM_THREADS="$threads" /usr/bin/python3 bench/torch_bench.py "$threads" 128 --quick \
      $large --only="$row" | tail -n +2 | tee -a bench/out/torch.csv
  done
done
/usr/bin/python3 bench/compare.py bench/out/ours.csv bench/out/torch.csv

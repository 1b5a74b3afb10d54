#!/bin/sh
# Engine speed beside PyTorch on this machine: same models, batch 128, same
# thread count; prints a markdown table with ratios (ours / PyTorch > 1 is
# faster). usage: sh bench/run.sh [THREADS] [--quick] [MODEL[:SIZE]]
# LARGE=1 adds the 224x224x3 rows (resnet50, vgg16, mobilenet, densenet121; batch 32).
set -e
threads=${1:-2}
quick=${2:-}
only=${3:-}
cd "$(dirname "$0")/.."
mkdir -p bench/out
make -s build/bench_engine
large=${LARGE:+--large}
# OpenMP's default wait policy, as a user runs medrobust (passive cost the small models 15-20%)
build/bench_engine --threads "$threads" $quick $large ${only:+--only "$only"} | tee bench/out/ours.csv
# PERF-NOTES: PyTorch loses up to 2.5x to mmap/munmap page faults without this
GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=17179869184 \
  OMP_NUM_THREADS="$threads" /usr/bin/python3 bench/torch_bench.py "$threads" 128 $quick $large ${only:+--only="$only"} | tee bench/out/torch.csv
/usr/bin/python3 bench/compare.py bench/out/ours.csv bench/out/torch.csv

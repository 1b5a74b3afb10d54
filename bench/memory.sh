#!/bin/sh
# Peak memory (RSS) of one operation in a fresh process, medrobust beside PyTorch
# (default and channels_last), for the main rows of bench/run.sh and the ResNet-50
# row at 224x224x3, batch 32 (issue 16, item 5: no more than PyTorch; ResNet-50 PGD
# within 4 GiB). Prints a markdown table in MiB. usage: sh bench/memory.sh [THREADS]
set -e
threads=${1:-2}
cd "$(dirname "$0")/.."
make -s build/bench_engine
rss() { # command...: its peak RSS in MiB
  /usr/bin/time -f "%M" "$@" 2>&1 >/dev/null | tail -1 | awk '{printf "%.0f", $1 / 1024}'
}
torch() {
  GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=17179869184 \
    OMP_NUM_THREADS="$threads" rss /usr/bin/python3 bench/torch_bench.py "$threads" 128 --quick "$@"
}
echo "| model | input | batch | operation | medrobust MiB | PyTorch default MiB | channels_last MiB | ratio to the smaller |"
echo "|---|---|---:|---|---:|---:|---:|---:|"
for row in resnet20:28:128:1 resnet20:64:128:1 mobilenet:128:32:1 unet:64:32:1 densenet:128:32:1 \
  resnet50:224:32:3; do
  model=${row%%:*}
  rest=${row#*:}
  size=${rest%%:*}
  rest=${rest#*:}
  batch=${rest%%:*}
  channels=${rest#*:}
  large=""
  [ "$channels" = 3 ] && large=--large
  for op in pgd_step train_step; do
    ours=$(rss build/bench_engine --threads "$threads" --quick $large \
      --only "$model:$size" --op "$op")
    def=$(torch $large --only="$model:$size" --op="$op" --config=default)
    cl=$(torch $large --only="$model:$size" --op="$op" --config=channels_last)
    small=$def
    [ "$cl" -lt "$small" ] && small=$cl
    input="${size}x$size"
    [ "$channels" = 3 ] && input="${input}x3"
    echo "| $model | $input | $batch | $op | $ours | $def | $cl | $(awk "BEGIN { printf \"%.2f\", $ours / $small }") |"
  done
done

#!/bin/sh
# Issue 12 item 6: an imported model runs as fast as the built-in family. torchvision's
# resnet18, mobilenet_v2 and resnet50 at 64x64 (batch 32) and 224x224 (batch 8), exported by
# torch.onnx and imported by medrobust, beside PyTorch on the same model, batch and threads;
# resnet50 also beside medrobust's built-in resnet50 (the same torchvision layout).
# usage: sh bench/onnx/speed.sh [THREADS]   (needs python3-torch, python3-torchvision)
set -e
root=$(cd "$(dirname "$0")/../.." && pwd)
threads=${1:-2}
out=$root/bench/out/onnx-speed
mkdir -p "$out"
make -s -C "$root" build/bench_engine
rows="resnet18:64:32 mobilenet_v2:64:32 resnet50:64:32 resnet18:224:8 mobilenet_v2:224:8 resnet50:224:8"
# PERF-NOTES: PyTorch loses up to 2.5x to mmap/munmap page faults without the malloc tuning
GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=17179869184 \
  OMP_NUM_THREADS=$threads /usr/bin/python3 "$root/bench/onnx/speed.py" "$out" "$threads" $rows \
  > "$out/torch.csv"
echo "model,size,op,images_per_s" > "$out/ours.csv"
for row in $rows; do
  name=${row%%:*}; rest=${row#*:}; size=${rest%%:*}; batch=${rest#*:}
  OMP_WAIT_POLICY=passive "$root/build/bench_engine" --threads "$threads" --batch "$batch" \
    --model "$out/tv_${name}_${size}.onnx" --label "tv_$name" | tail -n +2 >> "$out/ours.csv"
  if [ "$name" = resnet50 ]; then
    OMP_WAIT_POLICY=passive "$root/build/bench_engine" --threads "$threads" --batch "$batch" \
      --family resnet50 --channels 3 --size "$size" --label "builtin_resnet50" | tail -n +2 \
      >> "$out/ours.csv"
  fi
done
/usr/bin/python3 - "$out" "$threads" <<'PY'
import csv, sys
out, threads = sys.argv[1], sys.argv[2]
ours = {(r["model"], r["size"], r["op"]): float(r["images_per_s"]) for r in csv.DictReader(open(out + "/ours.csv"))}
torch = {(r["model"], r["size"], r["op"]): (float(r["images_per_s"]), r["format"]) for r in csv.DictReader(open(out + "/torch.csv"))}
print("%s threads; images/s (median of 3); ratio = medrobust / PyTorch (> 1: medrobust faster)" % threads)
print("| model | size | op | PyTorch (format) | medrobust, imported .onnx | ratio | medrobust, built-in |")
print("|---|---:|---|---:|---:|---:|---:|")
for (model, size, op), (rate, fmt) in torch.items():
    mine = ours.get((model, size, op))
    built = ours.get(("builtin_resnet50", size, op)) if model == "tv_resnet50" else None
    print("| %s | %s | %s | %.1f (%s) | %.1f | %.2f | %s |" % (model[3:], size, op, rate, fmt, mine,
          mine / rate, "%.1f" % built if built else ""))
PY

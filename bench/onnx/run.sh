#!/bin/sh
# Issue 12 item 4: a torchvision resnet18 trained in PyTorch on BreastMNIST, exported to
# ONNX, attacked by PyTorch PGD and by medrobust PGD (same settings, weights and images):
# robust accuracies side by side, and the time each took.
# usage: sh bench/onnx/run.sh   (needs python3-torch, python3-torchvision, python3-onnx)
set -e
root=$(cd "$(dirname "$0")/../.." && pwd)
data=${DATA:-$root/../shared/data/breastmnist/breastmnist.npz}
out=$root/bench/out/onnx
threads=${THREADS:-2}
mkdir -p "$out"
make -s -C "$root" build/medrobust
[ -f "$data" ] || { echo "skipped: $data is absent"; exit 0; }
# PERF-NOTES: PyTorch loses up to 2.5x to mmap/munmap page faults without the malloc tuning
GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=17179869184 \
  THREADS=$threads OMP_NUM_THREADS=$threads /usr/bin/python3 "$root/bench/onnx/parity.py" \
  "$data" "$out" > /dev/null
"$root/build/medrobust" --threads "$threads" eval --model "$out/resnet18.onnx" --data "$data" \
  --attacks pgd --eps 1/255,2/255,4/255 --no-noise --no-checks --examples 0 --quiet \
  --allow-mismatch --out "$out/medrobust" > "$out/medrobust.txt"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
t = json.load(open(out + "/pytorch.json"))
m = json.load(open(out + "/medrobust/results.json"))
print("resnet18 (torchvision) on BreastMNIST test, %d images; PGD L-inf, 10 iterations" % m["n"])
print("%-10s %12s %12s %8s %10s %10s" % ("eps", "PyTorch", "medrobust", "gap pp", "PyTorch s", "ours s"))
print("%-10s %11.2f%% %11.2f%%" % ("clean", 100 * t["clean"], 100 * m["clean_accuracy"]))
for r in m["rows"]:
    p = t["pgd"].get("%.6f" % r["eps"])
    if p:
        print("%-10.5f %11.2f%% %11.2f%% %8.2f %10.2f %10.2f" % (r["eps"], 100 * p["accuracy"],
              100 * r["accuracy"], 100 * (r["accuracy"] - p["accuracy"]), p["seconds"], r["seconds"]))
PY

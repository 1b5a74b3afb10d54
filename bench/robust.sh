#!/bin/sh
# PGD-10 robust accuracy and time, medrobust beside the PyTorch reference
# (bench/pgd_reference.py) on the same weights and data, batch and threads;
# then medrobust's triage time. usage: sh bench/robust.sh MODEL NPZ [THREADS]
set -e
model=$1
data=$2
threads=${3:-2}
eps=0.001,0.002,0.004,0.006
cd "$(dirname "$0")/.."
out=bench/out/robust
mkdir -p "$out"
make -s build/medrobust
start=$(date +%s.%N)
./build/medrobust --threads "$threads" eval --model "$model" --data "$data" --attacks pgd --eps $eps --iters 10 \
  --batch 128 --no-noise --no-checks --examples 0 --quiet --out "$out" > /dev/null
end=$(date +%s.%N)
echo "medrobust PGD-10 sweep: $(echo "$end - $start" | bc) s (includes loading)"
/usr/bin/python3 -c "
import json
r = json.load(open('$out/results.json'))
for row in r['rows']:
    print('medrobust eps %g robust accuracy %.4f (%.2f s)' % (row['eps'], row['accuracy'], row['seconds']))
"
GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=17179869184 \
  OMP_NUM_THREADS="$threads" /usr/bin/python3 bench/pgd_reference.py "$model" "$data" $eps 10 128 "$threads" |
  awk -F, 'NR > 1 { printf "pytorch   eps %g robust accuracy %.4f (%.2f s)\n", $1, $2, $3 }'
start=$(date +%s.%N)
./build/medrobust --threads "$threads" triage --model "$model" --data "$data" --quiet --out "$out" > /dev/null
end=$(date +%s.%N)
echo "medrobust triage (PGD-10, bisection to 1e-4 below 0.05): $(echo "$end - $start" | bc) s"

#!/bin/sh
# Feature extraction time per ROI (issue 14, item 9): every IBSI family, one thread, on
# 2-D images of the built-in phantom (whole 28x28 images; lesion masks of 64x64 images) and
# on a synthetic 3-D volume (96x96x48 voxels of 1x1x2 mm, a 30 mm sphere of texture) as a
# CT lesion would come. PyRadiomics is not packaged in Debian and this machine has no
# internet, so it could not be run beside it.
# usage: sh bench/radiomics/speed.sh
set -e
root=$(cd "$(dirname "$0")/../.." && pwd)
mr="$root/build/medrobust"
make -s -C "$root" build/medrobust
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$mr" data phantom --n 2000 --out "$tmp/cls.npz" > /dev/null
"$mr" data phantom --task segment --size 64 --n 500 --out "$tmp/seg.npz" > /dev/null
python3 - "$tmp" <<'PY'
import math, random, struct, sys
tmp = sys.argv[1]
nx, ny, nz = 96, 96, 48
random.seed(1)
def nifti(path, values, code, bits, fmt):
    h = bytearray(352)
    struct.pack_into("<i", h, 0, 348)
    struct.pack_into("<8h", h, 40, 3, nx, ny, nz, 1, 1, 1, 1)
    struct.pack_into("<hh", h, 70, code, bits)
    struct.pack_into("<4f", h, 76, 1.0, 1.0, 1.0, 2.0)
    struct.pack_into("<3f", h, 108, 352.0, 0.0, 0.0)
    h[344:348] = b"n+1\0"
    open(path, "wb").write(bytes(h) + struct.pack("<%d%s" % (len(values), fmt), *values))
img, mask = [], []
for z in range(nz):
    for y in range(ny):
        for x in range(nx):
            r = math.sqrt((x - 48) ** 2 + (y - 48) ** 2 + (2 * (z - 24)) ** 2)
            inside = r < 15
            img.append(int(40 + (30 if inside else 0) + 10 * math.sin(x / 3) * math.cos(y / 4)
                           + random.gauss(0, 8)))
            mask.append(1 if inside else 0)
nifti(tmp + "/ct.nii", img, 4, 16, "h")
nifti(tmp + "/lesion.nii", mask, 2, 8, "B")
PY
time_it() {
  label=$1
  n=$2
  shift 2
  start=$(date +%s.%N)
  "$mr" --threads 1 radiomics extract "$@" --quiet > /dev/null
  end=$(date +%s.%N)
  echo "$label" "$n" "$start" "$end" | awk '{ t = $4 - $3; printf "%-44s %6d ROIs %8.2f s %9.2f ms per ROI\n", $1, $2, t, 1000 * t / $2 }'
}
time_it "phantom-28x28-whole-image" 400 --data "$tmp/cls.npz" --out "$tmp/a.csv"
time_it "phantom-64x64-lesion-masks" 100 --data "$tmp/seg.npz" --out "$tmp/b.csv"
time_it "volume-96x96x48-sphere-14k-voxels" 1 --image "$tmp/ct.nii" --mask "$tmp/lesion.nii" \
  --bin-width 10 --out "$tmp/c.csv"

#!/bin/sh
# Regenerates the seed corpora in tests/fuzz/corpus/ from medrobust's own outputs (the
# phantom, a tiny model, its checkpoint and ONNX export, a report's JSON), small enough to
# commit. Run from the repository root after `make`; needs python3 with numpy for the .npy.
set -e
bin=build/medrobust
out=tests/fuzz/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out/npy" "$out/npz" "$out/safetensors" "$out/checkpoint" "$out/onnx" "$out/image" \
  "$out/idx" "$out/report" "$out/journal" "$out/nifti" "$out/radiomics_model"
$bin data phantom --n 20 --out "$tmp/ph.npz" > /dev/null
$bin data phantom --task segment --n 20 --out "$tmp/seg.npz" > /dev/null
cp "$tmp/ph.npz" "$out/npz/phantom.npz"
cp "$tmp/seg.npz" "$out/npz/phantom-segment.npz"
(cd "$tmp" && unzip -q ph.npz test_labels.npy test_images.npy)
cp "$tmp/test_labels.npy" "$out/npy/labels.npy"
head -c 400 "$tmp/test_images.npy" > "$out/npy/images-cut.npy"
$bin train --model cnn --depth 1 --base 2 --data "$tmp/ph.npz" --epochs 1 --quiet \
  --out "$tmp/m.safetensors" > /dev/null
cp "$tmp/m.safetensors" "$out/safetensors/cnn.safetensors"
cp "$tmp/m.safetensors.ckpt" "$out/checkpoint/cnn.ckpt"
$bin export --model "$tmp/m.safetensors" --out "$out/onnx/cnn.onnx" > /dev/null
$bin eval --model "$tmp/m.safetensors" --data "$tmp/ph.npz" --attacks fgsm --eps 0.01 --no-noise \
  --no-checks --examples 0 --quiet --out "$tmp/ev" > /dev/null
cp "$tmp/ev/results.json" "$out/report/results.json"
$bin radiomics train --data "$tmp/ph.npz" --max-features 4 --quiet --out "$tmp/r.json" > /dev/null
$bin radiomics attack --model "$tmp/r.json" --data "$tmp/ph.npz" --limit 2 --queries 20 --quiet \
  --out "$tmp/ra" > /dev/null
$bin radiomics stability --model "$tmp/r.json" --data "$tmp/ph.npz" --limit 4 --queries 10 \
  --quiet --out "$tmp/ra/radiomics_stability.csv" > /dev/null
sed -i 's|"model":.*|"model": "r.json",|; s|"data":.*|"data": "ph.npz",|' "$tmp/ra/radiomics_attack.json"
cp "$tmp/ra/radiomics_attack.json" "$tmp/ra/radiomics_stability.json" "$out/report/"
$bin radiomics train --data "$tmp/ph.npz" --max-features 4 --quiet --out \
  "$out/radiomics_model/logistic.json" > /dev/null
$bin radiomics train --data "$tmp/ph.npz" --max-features 3 --classifier svm --quiet --out \
  "$out/radiomics_model/svm.json" > /dev/null
/usr/bin/python3 - "$tmp/ph.npz" "$out" <<'PY'
import io, struct, sys, zlib
import numpy as np
z = np.load(sys.argv[1])
out = sys.argv[2]
im = z["test_images"][0]
def png(path, a, bits):
    h, w = a.shape
    raw = b"".join(b"\0" + (row.astype(">u2").tobytes() if bits == 16 else row.tobytes()) for row in a)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bits, 0, 0, 0, 0))
    open(path, "wb").write(data + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
png(out + "/image/grey8.png", im, 8)
png(out + "/image/grey16.png", im.astype(np.uint16) * 257, 16)
try:  # JPEG seeds need an encoder: Pillow (python3-pil, which python3-torchvision pulls in)
    from PIL import Image
    Image.fromarray(im).save(out + "/image/grey.jpg", quality=90)
    Image.fromarray(np.stack([im, im // 2, 255 - im], -1)).save(out + "/image/colour-progressive.jpg",
                                                                 quality=80, progressive=True)
except ImportError:
    pass
# IDX: the fuzz target splits one input into four files by its first three bytes (x16)
imgs = z["test_images"][:2]
lab = z["test_labels"].reshape(-1)[:2].astype(np.uint8)
i3 = struct.pack(">IIII", 0x803, 2, 28, 28) + imgs.tobytes()
l1 = struct.pack(">II", 0x801, 2) + lab.tobytes()
pad = lambda b: b + b"\0" * (-len(b) % 16)
i3, l1 = pad(i3), pad(l1)
open(out + "/idx/two-images", "wb").write(bytes([len(i3) // 16 % 256, len(l1) // 16, len(i3) // 16 % 256, 0]) + i3 + l1 + i3 + l1)
PY
ls -la "$out"/*

# resume journals as src/core/journal.c writes them: a header with the run's fingerprint, then
# records (magic, key length, payload size, key, payload, CRC-32 of key and payload); the
# second is cut inside its last record, as a kill leaves it
python3 - "$out/journal" <<'PY'
import struct, sys, zlib
out = sys.argv[1]
fp = b"medrobust eval\narguments: --eps 0.01\nthreads: 2\n"
head = b"MRJOURNAL1\n" + struct.pack("<I", len(fp)) + fp + struct.pack("<I", zlib.crc32(fp))
def record(key, payload):
    return (struct.pack("<IIQ", 0x524a524d, len(key), len(payload)) + key + payload
            + struct.pack("<I", zlib.crc32(key + payload)))
recs = [record(b"row0.0/b0", struct.pack("<16f", *range(16))),
        record(b"row0.0/b16", bytes(range(64))),
        record(b"saliency-maps", b"")]
open(out + "/eval.journal", "wb").write(head + b"".join(recs))
open(out + "/torn.journal", "wb").write(head + recs[0] + recs[1][:40])
PY

# NIfTI-1 single files (n+1): a 6x5x4 int16 lesion-like blob at 2 mm, and a float32 one with
# scaling and anisotropic voxels
python3 - "$out/nifti" <<'PY'
import math, struct, sys
out = sys.argv[1]
def nifti(path, dims, code, bits, fmt, values, pixdim, slope=0.0, inter=0.0):
    h = bytearray(352)
    struct.pack_into("<i", h, 0, 348)
    struct.pack_into("<8h", h, 40, 3, *dims, 1, 1, 1, 1)
    struct.pack_into("<hh", h, 70, code, bits)
    struct.pack_into("<4f", h, 76, 1.0, *pixdim)
    struct.pack_into("<3f", h, 108, 352.0, slope, inter)
    h[344:348] = b"n+1\0"
    open(path, "wb").write(bytes(h) + struct.pack("<%d%s" % (len(values), fmt), *values))
blob = [int(9 * math.exp(-((x - 2.5) ** 2 + (y - 2) ** 2 + (z - 1.5) ** 2) / 4)) + 1
        for z in range(4) for y in range(5) for x in range(6)]
nifti(out + "/blob-int16.nii", (6, 5, 4), 4, 16, "h", blob, (2.0, 2.0, 2.0))
nifti(out + "/blob-float.nii", (6, 5, 4), 16, 32, "f", [v / 10 for v in blob], (0.8, 0.8, 3.0),
      2.0, -1.0)
PY

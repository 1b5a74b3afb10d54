"""Issue 12 item 6, the PyTorch side: torchvision models (2 classes, random weights) exported to
ONNX for medrobust to import, and PyTorch's own speed on them: forward, one PGD step (forward
and the input gradient of the summed cross-entropy) and one SGD training step, images/s, the
median of 3 timed runs of >= 0.3 s. Best-configured: torch.set_num_threads(THREADS), glibc's
malloc tuned by the caller (PERF-NOTES), and each op timed both in contiguous (NCHW) and in
channels_last memory format, the faster kept. CSV rows: model,size,op,images_per_s,format.
usage: speed.py OUT_DIR THREADS MODEL:SIZE:BATCH [...]"""
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from torch_bench import measure, steps  # noqa: E402  the same timing and steps as bench/run.sh


def main():
    out, threads = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(threads)
    print("model,size,op,images_per_s,format")
    for row in sys.argv[3:]:
        name, size, batch = row.split(":")
        size, batch = int(size), int(batch)
        torch.manual_seed(1)
        model = getattr(torchvision.models, name)(num_classes=2).eval()
        x = torch.rand(batch, 3, size, size)
        path = os.path.join(out, "tv_%s_%d.onnx" % (name, size))
        if not os.path.exists(path):
            torch.onnx.export(model, x[:1], path, opset_version=13, input_names=["image"],
                              output_names=["logits"],
                              dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
        y = torch.arange(batch) % 2
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        best = {}
        for fmt in (torch.contiguous_format, torch.channels_last):
            model = model.to(memory_format=fmt)
            xf = x.contiguous(memory_format=fmt)
            label = "nchw" if fmt == torch.contiguous_format else "channels_last"
            for op, fn in steps(model, xf, y, opt):
                rate = measure(fn, batch, 3)
                if rate > best.get(op, (0, ""))[0]:
                    best[op] = (rate, label)
        for op in ("forward", "pgd_step", "train_step"):
            print("tv_%s,%d,%s,%.1f,%s" % (name, size, op, best[op][0], best[op][1]), flush=True)


main()

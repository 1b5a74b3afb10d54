"""The PyTorch side of bench/run.sh: the same models (bench/torch_models.py),
batch and thread count, the same three operations, each in the configurations a
performance-minded PyTorch user would try (issue 16): the default NCHW layout,
channels_last (model and input), and for the forward pass a frozen TorchScript
module (torch.jit.freeze + torch.jit.optimize_for_inference, on channels_last).
--large adds resnet50, vgg16, mobilenet and densenet121 at 224x224 with 3 channels, batch
32; --op=NAME and --config=NAME time one operation in one configuration (bench/memory.sh).
CSV rows model,size,channels,op,config,images_per_s. Run with Debian's /usr/bin/python3."""
import sys
import time

import torch
import torch.nn.functional as F

import torch_models as tm


def measure(fn, batch, reps):
    fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    iters = 1 if one > 0.3 else int(0.3 / one) + 1
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        rates.append(batch * iters / (time.perf_counter() - t0))
    return sorted(rates)[len(rates) // 2]


def operations(arch, size, config, channels=None, batch=None):
    """(name, fn, batch) for each operation timed in one configuration; the default batch is
    the row's own (128 for the 28x28 and 64x64 classifiers, 32 for the rest), and 3 channels
    at 224x224, 1 below."""
    channels = channels or (3 if size == 224 else 1)
    n = batch or (128 if arch in ("cbr-larget", "cnn", "resnet8", "resnet20") and size <= 64
                  else 32)
    pixels = size * size if arch == "unet" else 1  # per-pixel targets for unet
    y = (torch.arange(n * pixels) % 2).reshape((n, size, size) if pixels > 1 else (n,))
    model = tm.build(tm.default_spec(arch, channels, size, 2))
    x = torch.rand(n, channels, size, size)
    if config != "default":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    frozen = None
    if config == "frozen":  # inference only: what torch.jit offers a deployed model
        model.eval()
        with torch.no_grad():
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
    return [(name, fn, n) for name, fn in steps(model, x, y, opt, frozen)]


def steps(model, x, y, opt, frozen=None):
    """(name, fn) for the timed operations on one model and batch: forward (frozen's, and it
    alone, when a frozen module is given), one PGD step, one SGD training step."""
    def forward():
        model.eval()
        with torch.no_grad():
            (frozen or model)(x)

    def pgd_step():
        model.eval()
        xa = x.clone().requires_grad_(True)
        F.cross_entropy(model(xa), y, reduction="sum").backward()
        return xa.grad

    def train_step():
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return (("forward", forward),) if frozen else (
        ("forward", forward), ("pgd_step", pgd_step), ("train_step", train_step))


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    reps = 1 if "--quick" in sys.argv else 3
    only = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--only=")), "")
    only_model, _, only_size = only.partition(":")
    only_op = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--op=")), "")
    only_config = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--config=")), "")
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    print("model,size,channels,op,config,images_per_s")
    rows = [(a, s, batch, 1) for s in (28, 64)
            for a in ("cbr-larget", "cnn", "resnet8", "resnet20")]
    rows += [(a, s, 32, 1) for s in (64, 128) for a in ("mobilenet", "densenet", "unet")]
    if "--large" in sys.argv:
        rows += [(a, 224, 32, 3) for a in ("resnet50", "vgg16", "mobilenet", "densenet121")]
    for arch, size, n, ch in rows:
        if (only_model and arch != only_model) or (only_size and int(only_size) != size):
            continue
        for config in ("default", "channels_last", "frozen"):
            if only_config and config != only_config:
                continue
            for name, fn, _ in operations(arch, size, config, ch, n):
                if only_op and name != only_op:
                    continue
                print("%s,%d,%d,%s,%s,%.1f" % (arch, size, ch, name, config,
                                               measure(fn, n, reps)), flush=True)


if __name__ == "__main__":
    main()

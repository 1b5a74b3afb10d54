"""How much of PyTorch's time its convolutions take, for the rows medrobust does not beat by
1.5x. Each Conv2d of the model is timed alone on the input it sees in the row (captured with
a forward hook), in the row's memory format: under no_grad for forward, forward and backward
(input and weight gradients, as the row computes them) otherwise. Both sides call oneDNN 2.6
for these convolutions, so if medrobust's ran exactly as fast and everything else it does were
free, its ratio to PyTorch would be total / conv: the row's ceiling with these kernels.
Not for frozen TorchScript: its convolutions run faster inside the frozen graph than alone
(cbr-larget 64x64: 305 ms for the convolutions alone against 236 ms for the whole frozen
forward), so the share would mean nothing. (The profiler was tried first: it doubled a
ResNet-20 training step's time and put a frozen module's convolutions under one "forward".)
usage: GLIBC_TUNABLES=... /usr/bin/python3 bench/torch_share.py THREADS MODEL:SIZE:OP:CONFIG ...
with CONFIG default or channels_last. CSV rows model,size,op,config,total_ms,conv_ms,conv_share,
cap."""
import sys
import time

import torch
import torch.nn as nn

import torch_bench as tb


def seconds(fn, reps=3):
    fn(), fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    iters = max(1, int(0.2 / one))
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        runs.append((time.perf_counter() - t0) / iters)
    return sorted(runs)[len(runs) // 2]


def conv_seconds(model, x, op):
    """The sum over the model's convolutions, each timed alone on its own input."""
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, i[0].detach().clone())))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    model.eval()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    total = 0.0
    for k, (m, inp) in enumerate(seen):
        if op == "forward":
            def fn(m=m, inp=inp):
                with torch.no_grad():
                    m(inp)
        else:  # the image needs no gradient in a training step
            inp.requires_grad_(op == "pgd_step" or k > 0)
            g = torch.ones_like(m(inp))

            def fn(m=m, inp=inp, g=g):
                m(inp).backward(g)
        total += seconds(fn)
    return total


def main():
    threads = int(sys.argv[1])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    print("model,size,op,config,total_ms,conv_ms,conv_share,cap")
    for want in sys.argv[2:]:
        arch, size, op, config = want.split(":")
        if config not in ("default", "channels_last"):
            sys.exit("torch_share.py: %s: CONFIG must be default or channels_last" % want)
        size = int(size)
        for name, fn, n in tb.operations(arch, size, config):
            if name != op:
                continue
            total = seconds(fn)
            model = tb.tm.build(tb.tm.default_spec(arch, 3 if size == 224 else 1, size, 2))
            x = torch.rand(n, 3 if size == 224 else 1, size, size)
            if config == "channels_last":
                model = model.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            conv = conv_seconds(model, x, op)
            print("%s,%d,%s,%s,%.1f,%.1f,%.2f,%.2f" % (arch, size, op, config, total * 1e3,
                                                     conv * 1e3, conv / total, total / conv),
                  flush=True)


if __name__ == "__main__":
    main()

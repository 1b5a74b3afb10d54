"""PyTorch reference for bench/robust.sh: the same PGD (L-inf, uniform random
start, step 2.5 eps / iters, sign steps, projection and [0,1] clipping, keep
the strongest iterate per image starting from the clean image) on the same
weights, loaded from medrobust's safetensors file, same data, batch and
threads. Prints one CSV row per eps: eps,robust_accuracy,seconds.
usage: pgd_reference.py MODEL NPZ EPS[,EPS..] ITERS BATCH THREADS"""
import io
import sys
import time
import zipfile

import numpy as np
import torch
import torch.nn.functional as F

import torch_models as tm


def load_split(path, split="test"):
    with zipfile.ZipFile(path) as z:
        x = np.load(io.BytesIO(z.read(split + "_images.npy")))
        y = np.load(io.BytesIO(z.read(split + "_labels.npy"))).reshape(-1)
    x = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
    if x.ndim == 3:
        x = x[:, None]
    else:
        x = x.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))


def pgd(model, x, y, eps, iters, gen):
    alpha = 2.5 * eps / iters
    best = x.clone()
    with torch.no_grad():
        best_loss = F.cross_entropy(model(x), y, reduction="none")
        done = model(x).argmax(1) != y
    cur = (x + eps * (2 * torch.rand(x.shape, generator=gen) - 1)).clamp(0, 1)
    for t in range(iters + 1):
        cur.requires_grad_(True)
        logits = model(cur)
        loss = F.cross_entropy(logits, y, reduction="none")
        grad = torch.autograd.grad(loss.sum(), cur)[0] if t < iters else None
        with torch.no_grad():
            success = logits.argmax(1) != y
            better = (~done) & (success | (loss > best_loss))
            best[better] = cur[better].detach()
            best_loss[better] = loss[better].detach()
            done |= success & better
            if grad is None:
                break
            cur = cur.detach() + alpha * grad.sign()
            cur = torch.min(torch.max(cur, x - eps), x + eps).clamp(0, 1)
    return best


def main():
    model_path, npz, eps_list, iters, batch, threads = sys.argv[1:7]
    torch.set_num_threads(int(threads))
    model, _ = tm.load_model(model_path)
    x, y = load_split(npz)
    gen = torch.Generator().manual_seed(1)
    print("eps,robust_accuracy,seconds")
    for eps in [float(e) for e in eps_list.split(",")]:
        t0 = time.perf_counter()
        correct = 0
        for s in range(0, len(x), int(batch)):
            xb, yb = x[s:s + int(batch)], y[s:s + int(batch)]
            adv = pgd(model, xb, yb, eps, int(iters), gen)
            with torch.no_grad():
                correct += (model(adv).argmax(1) == yb).sum().item()
        print("%g,%.6f,%.3f" % (eps, correct / len(x), time.perf_counter() - t0), flush=True)


if __name__ == "__main__":
    main()

"""Issue 12 item 4: attack strength on an imported model equals attack strength in PyTorch.
Trains torchvision's resnet18 briefly on BreastMNIST (grey replicated to 3 channels, 28x28,
[0,1] pixels, no normalisation), exports it with torch.onnx, then attacks the test split with
PGD in PyTorch, with medrobust's settings (L-inf, 10 iterations, step 2.5 eps / 10, a uniform
random start, per image the strongest iterate: a misclassified one if any, else the highest
loss), and writes the model and the PyTorch numbers for run.sh to set beside medrobust's.
usage: parity.py DATA.npz OUT_DIR"""
import json
import os
import sys
import time

import numpy as np
import torch
import torchvision
from torch import nn

data, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
torch.set_num_threads(int(os.environ.get("THREADS", "2")))
z = np.load(data)


def split(name):
    x = torch.tensor(z[name + "_images"], dtype=torch.float32).unsqueeze(1) / 255.0
    return x.repeat(1, 3, 1, 1), torch.tensor(z[name + "_labels"].reshape(-1), dtype=torch.long)


xtr, ytr = split("train")
xte, yte = split("test")
model = torchvision.models.resnet18(num_classes=2)
opt = torch.optim.Adam(model.parameters(), 1e-3)
for epoch in range(8):
    model.train()
    perm = torch.randperm(len(xtr))
    for i in range(0, len(xtr), 64):
        idx = perm[i:i + 64]
        opt.zero_grad()
        nn.functional.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
        opt.step()
model.eval()
torch.onnx.export(model, xte[:1], os.path.join(out, "resnet18.onnx"), opset_version=13,
                  input_names=["image"], output_names=["logits"],
                  dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})


def pgd(x, y, eps, iters=10):
    step = 2.5 * eps / iters
    best = x.clone()
    with torch.no_grad():
        best_loss = nn.functional.cross_entropy(model(x), y, reduction="none")
        done = model(x).argmax(1) != y
    cur = (x + eps * (2 * torch.rand_like(x) - 1)).clamp(0, 1)
    for t in range(iters + 1):
        cur.requires_grad_(True)
        logits = model(cur)
        loss = nn.functional.cross_entropy(logits, y, reduction="none")
        grad, = torch.autograd.grad(loss.sum(), cur)
        with torch.no_grad():
            fooled = logits.argmax(1) != y
            better = (~done) & (fooled | (loss > best_loss))
            best[better] = cur[better]
            best_loss[better] = loss[better]
            done |= fooled
            if t == iters:
                break
            cur = torch.min(torch.max(cur + step * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return best


with torch.no_grad():
    clean = (model(xte).argmax(1) == yte).float().mean().item()
results = {"clean": clean, "pgd": {}}
for eps in (1 / 255, 2 / 255, 4 / 255):
    t0 = time.time()
    adv = pgd(xte, yte, eps)
    seconds = time.time() - t0
    with torch.no_grad():
        acc = (model(adv).argmax(1) == yte).float().mean().item()
    results["pgd"]["%.6f" % eps] = {"accuracy": acc, "seconds": seconds}
json.dump(results, open(os.path.join(out, "pytorch.json"), "w"), indent=1)
print(json.dumps(results))

"""Interop check driven by tests/test_interop.c: loads a medrobust file into
the PyTorch twin (strict state_dict), writes its logits; then saves a model
PyTorch initialised and trained a step, with its logits, for medrobust to load.
usage: interop_torch.py OURS INPUTS BATCH OUT_LOGITS THEIRS THEIR_LOGITS"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import torch_models as tm  # noqa: E402

ours, inputs, batch, out_logits, theirs, their_logits = sys.argv[1:7]
torch.set_num_threads(1)
model, spec = tm.load_model(ours)
x = torch.from_numpy(np.fromfile(inputs, dtype=np.float32).reshape(int(batch), spec["in_c"], spec["in_h"], spec["in_w"]))
with torch.no_grad():
    model(x).numpy().astype(np.float32).tofile(out_logits)

torch.manual_seed(0)
twin = tm.build(spec)
twin.train()
# a small step: at lr 0.1 resnet50 (width 0.125, batch 4) came out of it with NaN logits
opt = torch.optim.SGD(twin.parameters(), lr=0.01)
out = twin(x)
labels = torch.arange(out.shape[0] * out[0, 0].numel()).reshape(out.shape[:1] + out.shape[2:])
loss = torch.nn.functional.cross_entropy(out, labels % spec["n_classes"])  # per image or per pixel
loss.backward()
opt.step()
twin.eval()
tm.save_file(twin.state_dict(), theirs, tm.metadata_from_spec(spec))
with torch.no_grad():
    logits = twin(x)
if not torch.isfinite(logits).all():
    sys.exit("the twin's logits after its training step are not finite")
logits.numpy().astype(np.float32).tofile(their_logits)

"""Exports small PyTorch models to ONNX for tests/test_onnx.c, with the
reference it checks against: an input batch, PyTorch's logits and the
gradient of the summed cross-entropy w.r.t. the input, as raw float32 files.
usage: onnx_export.py OUT_DIR"""
import os
import sys

import numpy as np
import torch
from torch import nn

out = sys.argv[1]
torch.manual_seed(0)


class Residual(nn.Module):
    """conv-bn-relu, a residual add, a concat, global pooling and a linear head"""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=(1, 1), groups=2, bias=False)
        self.conv3 = nn.Conv2d(8, 4, 1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(12, 3)

    def forward(self, x):
        a = torch.relu(self.bn1(self.conv1(x)))
        b = torch.relu(self.conv2(a) + a)
        c = torch.cat([b, self.conv3(b)], 1)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.pool(c), 1), 1))


def plain():
    return nn.Sequential(nn.Conv2d(1, 6, 5, stride=2, padding=2), nn.ReLU6(), nn.AvgPool2d(2),
                         nn.Conv2d(6, 8, 3, dilation=2), nn.ReLU(), nn.Flatten(),
                         nn.Dropout(0.2), nn.Linear(8 * 3 * 3, 2))


for name, model, shape in (("residual", Residual(), (4, 3, 16, 16)), ("plain", plain(), (4, 1, 28, 28))):
    model.eval()
    for m in model.modules():  # batchnorm statistics away from 0 / 1
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(shape)
    # do_constant_folding=False keeps batchnorm a node of its own: what an importer must handle
    torch.onnx.export(model, x[:1], os.path.join(out, name + ".onnx"), opset_version=13,
                      do_constant_folding=False, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    x.requires_grad_(True)
    logits = model(x)
    y = torch.arange(shape[0]) % logits.shape[1]
    nn.functional.cross_entropy(logits, y, reduction="sum").backward()
    x.detach().numpy().astype(np.float32).tofile(os.path.join(out, name + ".x"))
    logits.detach().numpy().astype(np.float32).tofile(os.path.join(out, name + ".logits"))
    x.grad.numpy().astype(np.float32).tofile(os.path.join(out, name + ".grad"))

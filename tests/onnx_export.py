"""Exports small PyTorch models to ONNX for tests/test_onnx.c, with the
reference it checks against: an input batch, PyTorch's logits and the
gradient of the summed cross-entropy w.r.t. the input, as raw float32 files.
torchvision's models are exported at TV_SIZE (64 by default, to keep the test quick; vgg11_bn
needs 224, where its adaptive pooling is the identity) and only the TV_MODELS listed.
usage: onnx_export.py OUT_DIR [TV_SIZE [TV_MODELS]]   (TV_MODELS: a,b,c or "none")"""
import os
import sys

import numpy as np
import torch
from torch import nn

out = sys.argv[1]
tv_size = int(sys.argv[2]) if len(sys.argv) > 2 else 64
tv_models = sys.argv[3].split(",") if len(sys.argv) > 3 else [
    "resnet18", "resnet50", "mobilenet_v2", "densenet121", "squeezenet1_1"]
torch.manual_seed(0)


class Residual(nn.Module):
    """ImageNet normalisation inside the graph, conv-bn-relu, a residual add, a concat, global
    pooling and a linear head"""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=(1, 1), groups=2, bias=False)
        self.conv3 = nn.Conv2d(8, 4, 1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(12, 3)

    def forward(self, x):
        x = (x - self.mean) / self.std
        a = torch.relu(self.bn1(self.conv1(x)))
        b = torch.relu(self.conv2(a) + a)
        c = torch.cat([b, self.conv3(b)], 1)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.pool(c), 1), 1))


def plain():
    return nn.Sequential(nn.Conv2d(1, 6, 5, stride=2, padding=2), nn.ReLU6(), nn.AvgPool2d(2),
                         nn.Conv2d(6, 8, 3, dilation=2), nn.LeakyReLU(0.1), nn.Flatten(),
                         nn.Dropout(0.2), nn.Linear(8 * 3 * 3, 2))


class TinyUNet(nn.Module):
    """per-pixel scores: transposed-conv and bilinear decoders, a long skip, scalar and
    tensor arithmetic"""

    def __init__(self):
        super().__init__()
        self.enc = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.mid = nn.Conv2d(4, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.up2 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.mid2 = nn.Conv2d(4, 4, 1)
        self.head = nn.Conv2d(12, 3, 1)

    def forward(self, x):
        e = torch.relu(self.bn(self.enc(x)))
        m = torch.relu(self.mid(nn.functional.max_pool2d(e, 2)))
        u = self.up(m) * 0.5 - e / 4.0
        v = self.up2(torch.sigmoid(self.mid2(nn.functional.max_pool2d(e, 2))))
        return self.head(torch.cat([e, u, v + e], 1))


class Scaled(nn.Module):
    """zero padding on each spatial side, then per-channel constants inside the net: a scale,
    a shift, a constant minus the tensor"""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.register_buffer("scale", torch.tensor([0.5, 2.0, -1.0, 3.0]).view(1, 4, 1, 1))
        self.register_buffer("shift", torch.tensor([0.1, -0.2, 0.3, 0.0]).view(1, 4, 1, 1))
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        h = torch.relu(self.conv(nn.functional.pad(x, (1, 2, 0, 1))) * self.scale + self.shift)
        h = self.shift - h / self.scale
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1))


def export_with_reference(name, model, shape, folding, opset=13):
    model.eval()
    for m in model.modules():  # batchnorm statistics away from 0 / 1
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(shape)
    torch.onnx.export(model, x[:1], os.path.join(out, name + ".onnx"), opset_version=opset,
                      do_constant_folding=folding, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    x.requires_grad_(True)
    logits = model(x)
    if logits.dim() == 2:
        y = torch.arange(shape[0]) % logits.shape[1]
        nn.functional.cross_entropy(logits, y, reduction="sum").backward()
    else:  # per pixel: each image's mean over its pixels, summed over images (medrobust's loss)
        y = (torch.arange(shape[0] * shape[2] * shape[3]) * 7 % logits.shape[1]).reshape(
            shape[0], shape[2], shape[3])
        (nn.functional.cross_entropy(logits, y, reduction="mean") * shape[0]).backward()
    y.numpy().astype(np.int32).tofile(os.path.join(out, name + ".y"))
    x.detach().numpy().astype(np.float32).tofile(os.path.join(out, name + ".x"))
    logits.detach().numpy().astype(np.float32).tofile(os.path.join(out, name + ".logits"))
    x.grad.numpy().astype(np.float32).tofile(os.path.join(out, name + ".grad"))


# do_constant_folding=False keeps batchnorm a node of its own: what an importer must handle
export_with_reference("residual", Residual(), (4, 3, 16, 16), False)
export_with_reference("plain", plain(), (4, 1, 28, 28), False)
export_with_reference("unet", TinyUNet(), (3, 1, 16, 16), False)
export_with_reference("scaled", Scaled(), (4, 1, 12, 12), False)
# the oldest and newest opsets read: Upsample, attribute Clip/Pad/Dropout, Softmax-13 forms
for opset in (9, 11, 17):
    export_with_reference("plain_opset%d" % opset, plain(), (4, 1, 28, 28), False, opset)
    export_with_reference("unet_opset%d" % opset, TinyUNet(), (3, 1, 16, 16), False, opset)

# medrobust's own families as their PyTorch twins (bench/torch_models.py) would be exported by a
# user: normalisation inside, constant folding on, the option-A shortcut as a Slice and a Pad
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import torch_models as tm  # noqa: E402

for arch, c, size, width, extra in (("cnn", 1, 28, 1.0, {"pool": 3}), ("vgg11", 3, 32, 0.25, {}),
                                    ("resnet8", 1, 28, 1.0, {}), ("resnet50", 3, 32, 0.25, {}),
                                    ("mobilenet", 3, 32, 0.25, {}), ("densenet", 1, 28, 1.0, {}),
                                    ("unet", 1, 32, 0.5, {"depth": 2}),
                                    ("unet", 3, 32, 0.5, {"depth": 2, "decoder_up": 1})):
    spec = tm.default_spec(arch, c, size, 3, width)
    spec.update(extra, norm_mean=[0.2 + 0.1 * k for k in range(c)], norm_std=[0.3] * c)
    torch.manual_seed(2)
    name = "twin_%s%s" % (arch, "_bilinear" if extra.get("decoder_up") else "")
    export_with_reference(name, tm.build(spec), (2, c, size, size), True)


# torchvision's architectures, as a user would export them (constant folding on, batchnorm
# folded where the exporter can)
try:
    import torchvision
except ImportError:
    torchvision = None
if torchvision is not None:
    for name in [m for m in tv_models if m != "none"]:
        torch.manual_seed(1)
        model = getattr(torchvision.models, name)(num_classes=3).eval()
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
        x = torch.rand(2, 3, tv_size, tv_size)
        torch.onnx.export(model, x[:1], os.path.join(out, "tv_" + name + ".onnx"), opset_version=13,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
        x.requires_grad_(True)
        logits = model(x)
        y = torch.arange(2) % 3
        nn.functional.cross_entropy(logits, y, reduction="sum").backward()
        for ext, v in (("x", x.detach()), ("logits", logits.detach()), ("grad", x.grad)):
            v.numpy().astype(np.float32).tofile(os.path.join(out, "tv_%s.%s" % (name, ext)))
        y.numpy().astype(np.int32).tofile(os.path.join(out, "tv_" + name + ".y"))

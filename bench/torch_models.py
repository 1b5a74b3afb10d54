"""PyTorch twins of medrobust's model families, and a plain safetensors
reader/writer (Debian ships no python3-safetensors).

Module names and parameter shapes equal the state_dict names medrobust
writes (docs/model-files.md), so `load_state_dict(strict=True)` accepts our
files and our loader accepts theirs. Used by bench/ and the interop test;
needs only torch and numpy (Debian python3-torch).
"""
import json
import math
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def channels(c, width):
    return max(1, int(math.floor(c * width + 0.5)))


class Normalise(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def forward(self, x):
        return (x - self.mean) / self.std


class Block(nn.Module):
    def __init__(self, cin, cout, k):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)


class CNN(nn.Module):
    """cnn / cbr-larget: conv-BN-ReLU-pool blocks, pool skipped at 1x1."""

    def __init__(self, spec):
        super().__init__()
        self.norm = Normalise(spec["norm_mean"], spec["norm_std"])
        c, h, w = spec["in_c"], spec["in_h"], spec["in_w"]
        blocks, self.pools = [], []
        ch = spec["base"]
        for _ in range(spec["depth"]):
            out = channels(ch, spec["width"])
            blocks.append(Block(c, out, spec["kernel"]))
            c = out
            pool = None
            if h >= 2 and w >= 2 and spec["pool"] != 0:
                pool = {1: nn.MaxPool2d(2, 2), 2: nn.AvgPool2d(2, 2), 3: nn.MaxPool2d(3, 2, 1)}[spec["pool"]]
                k, s, p = {1: (2, 2, 0), 2: (2, 2, 0), 3: (3, 2, 1)}[spec["pool"]]
                h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            self.pools.append(pool)
            ch *= 2
        self.features = nn.ModuleList(blocks)
        self.drop = nn.Dropout(spec["dropout"]) if spec["dropout"] > 0 else nn.Identity()
        self.fc = nn.Linear(c, spec["n_classes"])

    def forward(self, x):
        x = self.norm(x)
        for block, pool in zip(self.features, self.pools):
            x = F.relu(block.bn(block.conv(x)))
            if pool is not None:
                x = pool(x)
        return self.fc(self.drop(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


VGG_CFG = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.norm = Normalise(spec["norm_mean"], spec["norm_std"])
        layers, c, h, w = [], spec["in_c"], spec["in_h"], spec["in_w"]
        for v in VGG_CFG[spec["arch"]]:
            if v == "M":
                if h >= 2 and w >= 2:
                    layers.append(nn.MaxPool2d(2, 2))
                    h, w = h // 2, w // 2
                else:
                    layers.append(nn.Identity())
            else:
                out = channels(v, spec["width"])
                layers += [nn.Conv2d(c, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
                c = out
        self.features = nn.Sequential(*layers)
        self.drop = nn.Dropout(spec["dropout"]) if spec["dropout"] > 0 else nn.Identity()
        self.classifier = nn.Linear(c, spec["n_classes"])

    def forward(self, x):
        x = self.features(self.norm(x))
        return self.classifier(self.drop(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride, self.pad = stride, (stride != 1 or cin != planes)
        self.lo, self.hi = (planes - cin) // 2, planes - cin - (planes - cin) // 2

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        sc = x
        if self.pad:  # option A: subsample, zero channels on both sides
            sc = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, self.lo, self.hi))
        return F.relu(out + sc)


class ResNetCifar(nn.Module):
    def __init__(self, spec):
        super().__init__()
        n = (int(spec["arch"][len("resnet"):]) - 2) // 6
        wd = spec["width"]
        self.norm = Normalise(spec["norm_mean"], spec["norm_std"])
        c = channels(16, wd)
        self.conv1 = nn.Conv2d(spec["in_c"], c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        stages = []
        for s, planes in enumerate([16, 32, 64]):
            blocks = []
            for i in range(n):
                p = channels(planes, wd)
                blocks.append(BasicBlock(c, p, 2 if (s > 0 and i == 0) else 1))
                c = p
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.drop = nn.Dropout(spec["dropout"]) if spec["dropout"] > 0 else nn.Identity()
        self.fc = nn.Linear(c, spec["n_classes"])

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(self.norm(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.drop(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


class Bottleneck(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


class ResNet50(nn.Module):
    """torchvision's resnet50 layout (v1.5)."""

    def __init__(self, spec):
        super().__init__()
        wd = spec["width"]
        self.norm = Normalise(spec["norm_mean"], spec["norm_std"])
        c = channels(64, wd)
        self.conv1 = nn.Conv2d(spec["in_c"], c, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for s, (nb, planes) in enumerate(zip([3, 4, 6, 3], [64, 128, 256, 512])):
            blocks = []
            for i in range(nb):
                p = channels(planes, wd)
                blocks.append(Bottleneck(c, p, 2 if (s > 0 and i == 0) else 1))
                c = p * 4
            setattr(self, "layer%d" % (s + 1), nn.Sequential(*blocks))
        self.drop = nn.Dropout(spec["dropout"]) if spec["dropout"] > 0 else nn.Identity()
        self.fc = nn.Linear(c, spec["n_classes"])

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(self.norm(x)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.drop(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


MOBILENET_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
                    (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


class MobileNetBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)
        self.dw_bn = nn.BatchNorm2d(cin)
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.pw_bn(self.pw(F.relu(self.dw_bn(self.dw(x))))))


class MobileNet(nn.Module):
    """MobileNet v1 as src/models/mobilenet.c"""

    def __init__(self, spec):
        super().__init__()
        wd = spec["width"]
        self.norm = Normalise(spec["norm_mean"], spec["norm_std"])
        c = channels(32, wd)
        self.conv1 = nn.Conv2d(spec["in_c"], c, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        blocks = []
        for out, stride in MOBILENET_BLOCKS:
            blocks.append(MobileNetBlock(c, channels(out, wd), stride))
            c = channels(out, wd)
        self.blocks = nn.ModuleList(blocks)
        self.drop = nn.Dropout(spec["dropout"]) if spec["dropout"] > 0 else nn.Identity()
        self.fc = nn.Linear(c, spec["n_classes"])

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(self.norm(x))))
        for b in self.blocks:
            x = b(x)
        return self.fc(self.drop(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


class DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        return self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))


class DenseNet(nn.Module):
    """densenet / densenet121 in torchvision's names, as src/models/densenet.c"""

    def __init__(self, spec):
        super().__init__()
        big = spec["arch"] == "densenet121"
        g = channels(spec["growth"], spec["width"])
        self.norm = Normalise(spec["norm_mean"], spec["norm_std"])
        self.features = nn.Module()
        f = self.features
        c = channels(64, spec["width"]) if big else 2 * g
        f.conv0 = nn.Conv2d(spec["in_c"], c, 7 if big else 3, 2 if big else 1, 3 if big else 1, bias=False)
        f.norm0 = nn.BatchNorm2d(c)
        self.big, self.plan = big, []
        h = spec["in_h"] // 4 if big else spec["in_h"]
        blocks = [n for n in spec["block_layers"] if n > 0]
        for b, layers in enumerate(blocks):
            block = nn.Module()
            for j in range(layers):
                block.add_module("denselayer%d" % (j + 1), DenseLayer(c, g))
                c += g
            f.add_module("denseblock%d" % (b + 1), block)
            pool = False
            if b < len(blocks) - 1:
                t = nn.Module()
                t.norm = nn.BatchNorm2d(c)
                t.conv = nn.Conv2d(c, c // 2, 1, bias=False)
                f.add_module("transition%d" % (b + 1), t)
                c //= 2
                pool = h >= 2
                if pool:
                    h //= 2
            self.plan.append((layers, pool))
        f.norm5 = nn.BatchNorm2d(c)
        self.drop = nn.Dropout(spec["dropout"]) if spec["dropout"] > 0 else nn.Identity()
        self.classifier = nn.Linear(c, spec["n_classes"])

    def forward(self, x):
        f = self.features
        x = F.relu(f.norm0(f.conv0(self.norm(x))))
        if self.big:
            x = F.max_pool2d(x, 3, 2, 1)
        for b, (layers, pool) in enumerate(self.plan):
            block = getattr(f, "denseblock%d" % (b + 1))
            for j in range(layers):
                x = torch.cat([x, getattr(block, "denselayer%d" % (j + 1))(x)], 1)
            if hasattr(f, "transition%d" % (b + 1)):
                t = getattr(f, "transition%d" % (b + 1))
                x = t.conv(F.relu(t.norm(x)))
                if pool:
                    x = F.avg_pool2d(x, 2, 2)
        x = F.relu(f.norm5(x))
        return self.classifier(self.drop(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


class DoubleConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class BilinearUp(nn.Module):
    """x2 bilinear (align_corners=False), then a 1x1 conv named conv"""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))


class UNet(nn.Module):
    """unet / segnet as src/models/unet.c (segnet: no skip concatenations)"""

    def __init__(self, spec):
        super().__init__()
        d, base, wd = spec["depth"], spec["base"], spec["width"]
        self.skips, self.depth = spec["arch"] == "unet", d
        self.norm = Normalise(spec["norm_mean"], spec["norm_std"])
        c = spec["in_c"]
        for i in range(d):
            self.add_module("enc%d" % i, DoubleConv(c, channels(base << i, wd)))
            c = channels(base << i, wd)
        self.bottleneck = DoubleConv(c, channels(base << d, wd))
        c = channels(base << d, wd)
        for i in range(d - 1, -1, -1):
            ch = channels(base << i, wd)
            up = BilinearUp(c, ch) if spec["decoder_up"] == 1 else nn.ConvTranspose2d(c, ch, 2, 2)
            self.add_module("up%d" % i, up)
            self.add_module("dec%d" % i, DoubleConv(2 * ch if self.skips else ch, ch))
            c = ch
        self.head = nn.Conv2d(c, spec["n_classes"], 1)

    def forward(self, x):
        x, enc = self.norm(x), []
        for i in range(self.depth):
            x = getattr(self, "enc%d" % i)(x)
            enc.append(x)
            x = F.max_pool2d(x, 2, 2)
        x = self.bottleneck(x)
        for i in range(self.depth - 1, -1, -1):
            x = getattr(self, "up%d" % i)(x)
            if self.skips:
                x = torch.cat([enc[i], x], 1)
            x = getattr(self, "dec%d" % i)(x)
        return self.head(x)


def default_spec(arch, in_c=1, size=28, n_classes=2, width=1.0):
    spec = dict(arch=arch, in_c=in_c, in_h=size, in_w=size, n_classes=n_classes, width=width, depth=5,
                base=16, kernel=3, pool=1, dropout=0.0, norm_mean=[0.0] * in_c, norm_std=[1.0] * in_c,
                growth=0, block_layers=[0, 0, 0, 0], decoder_up=0)
    if arch == "cbr-larget":
        spec.update(base=32, kernel=7, pool=3)
    if arch == "densenet":
        spec.update(growth=12, block_layers=[6, 6, 6, 0])
    if arch == "densenet121":
        spec.update(growth=32, block_layers=[6, 12, 24, 16])
    if arch in ("unet", "segnet"):
        spec.update(depth=4, base=16)
    return spec


def build(spec):
    arch = spec["arch"]
    if arch in ("cnn", "cbr-larget"):
        return CNN(spec)
    if arch in VGG_CFG:
        return VGG(spec)
    if arch == "resnet50":
        return ResNet50(spec)
    if arch == "mobilenet":
        return MobileNet(spec)
    if arch in ("densenet", "densenet121"):
        return DenseNet(spec)
    if arch in ("unet", "segnet"):
        return UNet(spec)
    if arch.startswith("resnet"):
        return ResNetCifar(spec)
    raise ValueError("unknown arch " + arch)


# ---- safetensors ---------------------------------------------------------

def spec_from_metadata(meta):
    c = int(meta["in_channels"])
    spec = default_spec(meta["arch"], c, int(meta["in_height"]), int(meta["num_classes"]), float(meta["width"]))
    spec["in_w"] = int(meta["in_width"])
    for k in ("depth", "base", "kernel", "pool", "growth", "decoder_up"):
        if k in meta:
            spec[k] = int(meta[k])
    if "block_layers" in meta:
        spec["block_layers"] = [int(v) for v in meta["block_layers"].split(",")]
    spec["dropout"] = float(meta["dropout"])
    spec["norm_mean"] = [float(v) for v in meta["norm_mean"].split(",")]
    spec["norm_std"] = [float(v) for v in meta["norm_std"].split(",")]
    return spec


def metadata_from_spec(spec):
    return {
        "format": "pt", "arch": spec["arch"], "in_channels": str(spec["in_c"]), "in_height": str(spec["in_h"]),
        "in_width": str(spec["in_w"]), "num_classes": str(spec["n_classes"]), "width": repr(spec["width"]),
        "depth": str(spec["depth"]), "base": str(spec["base"]), "kernel": str(spec["kernel"]),
        "pool": str(spec["pool"]), "dropout": repr(spec["dropout"]), "growth": str(spec["growth"]),
        "block_layers": ",".join(str(v) for v in spec["block_layers"]), "decoder_up": str(spec["decoder_up"]),
        "norm_mean": ",".join(repr(v) for v in spec["norm_mean"]),
        "norm_std": ",".join(repr(v) for v in spec["norm_std"]),
    }


DTYPES = {"F32": (np.float32, torch.float32), "I64": (np.int64, torch.int64)}


def load_file(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    tensors = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        arr = np.frombuffer(data[b:end], dtype=DTYPES[e["dtype"]][0]).reshape(e["shape"])
        tensors[name] = torch.from_numpy(arr.copy())
    return tensors, meta


def save_file(tensors, path, metadata):
    header, chunks, off = {}, [], 0
    for name, t in tensors.items():
        arr = t.detach().cpu().contiguous().numpy()
        dtype = "I64" if arr.dtype == np.int64 else "F32"
        b = arr.astype(DTYPES[dtype][0]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        chunks.append(b)
        off += len(b)
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def load_model(path):
    tensors, meta = load_file(path)
    spec = spec_from_metadata(meta)
    model = build(spec)
    model.load_state_dict(tensors, strict=True)
    return model.eval(), spec

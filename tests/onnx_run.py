"""Checks medrobust's ONNX exports from outside medrobust: each DIR/NAME.onnx
must pass onnx.checker with full shape inference, and running its graph node
by node with PyTorch's own operators on DIR/NAME.x must give DIR/NAME.logits
(what medrobust computed) within TOL of max(1, the largest logit).
usage: onnx_run.py DIR TOL NAME [NAME...]   (inputs: raw float32, shape from the model)"""
import sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def spatial_pad(x, pads, value):
    """ONNX pads (top, left, bottom, right) as F.pad's (left, right, top, bottom)"""
    t, l, b, r = pads
    return F.pad(x, (l, r, t, b), value=value) if any(pads) else x


def run(model, x):
    env = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in model.graph.initializer}
    env[model.graph.input[0].name] = x
    for n in model.graph.node:
        a, i = attrs(n), [env[k] if k else None for k in n.input] + [None] * 4
        op = n.op_type
        if op in ("Conv", "ConvTranspose"):
            pads, s = list(a.get("pads", [0, 0, 0, 0])), a.get("strides", [1, 1])
            d, g = a.get("dilations", [1, 1]), a.get("group", 1)
            if op == "Conv":
                y = F.conv2d(spatial_pad(i[0], pads, 0.0), i[1], i[2], s, 0, d, g)
            else:
                assert pads[0] == pads[2] and pads[1] == pads[3], "asymmetric transposed pads"
                y = F.conv_transpose2d(i[0], i[1], i[2], s, pads[:2], a.get("output_padding", [0, 0]),
                                       g, d)
        elif op == "BatchNormalization":
            y = F.batch_norm(i[0], i[3], i[4], i[1], i[2], False, 0.0, a.get("epsilon", 1e-5))
        elif op == "Relu":
            y = F.relu(i[0])
        elif op == "LeakyRelu":
            y = F.leaky_relu(i[0], a.get("alpha", 0.01))
        elif op == "Sigmoid":
            y = torch.sigmoid(i[0])
        elif op == "Clip":
            y = torch.clamp(i[0], float(i[1]), float(i[2]))
        elif op == "MaxPool":
            y = F.max_pool2d(spatial_pad(i[0], a.get("pads", [0] * 4), float("-inf")),
                             a["kernel_shape"], a.get("strides", [1, 1]), 0, a.get("dilations", [1, 1]))
        elif op == "AveragePool":
            assert a.get("count_include_pad", 0) == 1 or not any(a.get("pads", [0]))
            y = F.avg_pool2d(spatial_pad(i[0], a.get("pads", [0] * 4), 0.0), a["kernel_shape"],
                             a.get("strides", [1, 1]))
        elif op == "GlobalAveragePool":
            y = i[0].mean((2, 3), keepdim=True)
        elif op == "Flatten":
            y = torch.flatten(i[0], a.get("axis", 1))
        elif op == "Gemm":
            assert a.get("transB", 0) == 1
            y = F.linear(i[0], i[1], i[2])
        elif op in ("Dropout", "Identity"):
            y = i[0]
        elif op in ("Add", "Sub", "Mul", "Div"):
            y = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div}[op](i[0], i[1])
        elif op == "Concat":
            y = torch.cat([t for t in i if t is not None], a["axis"])
        elif op == "Slice":
            index = [slice(None)] * i[0].dim()
            for st, en, ax, sp in zip(i[1].tolist(), i[2].tolist(), i[3].tolist(), i[4].tolist()):
                index[ax] = slice(st, en, sp)
            y = i[0][tuple(index)]
        elif op == "Pad":
            p, r = i[1].tolist(), i[0].dim()
            torch_pads = []
            for ax in reversed(range(r)):
                torch_pads += [p[ax], p[ax + r]]
            y = F.pad(i[0], torch_pads)
        elif op == "Resize":
            scale = [float(v) for v in i[2][2:]]
            if a["mode"] == b"linear":
                assert a["coordinate_transformation_mode"] == b"half_pixel"
                y = F.interpolate(i[0], scale_factor=scale, mode="bilinear", align_corners=False)
            else:  # PyTorch's nearest is the floor of the asymmetric source position
                assert a["coordinate_transformation_mode"] == b"asymmetric"
                assert a["nearest_mode"] == b"floor"
                y = F.interpolate(i[0], scale_factor=scale, mode="nearest")
        else:
            raise SystemExit(f"{n.name}: op {op} is not in this checker")
        env[n.output[0]] = y
    return env[model.graph.output[0].name]


def main():
    folder, tol, worst = sys.argv[1], float(sys.argv[2]), 0.0
    for name in sys.argv[3:]:
        model = onnx.load(f"{folder}/{name}.onnx")
        onnx.checker.check_model(model, full_check=True)
        shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
        x = np.fromfile(f"{folder}/{name}.x", dtype=np.float32).reshape([-1] + shape)
        with torch.no_grad():
            y = run(model, torch.from_numpy(x)).numpy()
        want = np.fromfile(f"{folder}/{name}.logits", dtype=np.float32).reshape(y.shape)
        scale = float(np.abs(want).max())
        diff = float(np.abs(y - want).max()) / max(scale, 1.0)
        worst = max(worst, diff)
        print(f"{name}: {len(model.graph.node)} nodes, checker passed, max |PyTorch - medrobust| "
              f"{diff:.1e} of max(1, largest logit {scale:.2g})")
        if not diff <= tol:
            raise SystemExit(f"{name}: differs by {diff} (> {tol})")
    print(f"all {len(sys.argv) - 3} within {tol} (largest {worst:.1e})")


main()

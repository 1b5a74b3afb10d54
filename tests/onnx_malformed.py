"""Malformed ONNX models for tests/test_onnx.c, built with onnx.helper (Debian's python3-onnx):
a node reading a tensor nothing makes, an initializer whose data disagrees with its shape, a
cycle (two nodes reading each other's output), a constant folding would make huge, a Gather
out of range, an input that is not a tensor; and one good graph whose Pad takes its pads from
the constant chain PyTorch's F.pad emits (Reshape, a reversing Slice, Transpose, Cast).
usage: onnx_malformed.py OUT_DIR"""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

out = sys.argv[1]
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
w = numpy_helper.from_array(np.ones((2, 16), np.float32), "fc.weight")
flat = helper.make_node("Flatten", ["x"], ["f"], name="flat")


def save(name, nodes, inits, inputs=None):
    graph = helper.make_graph(nodes, name, inputs or [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with open(os.path.join(out, name + ".onnx"), "wb") as f:
        f.write(model.SerializeToString())


save("missing", [flat, helper.make_node("Gemm", ["nowhere", "fc.weight"], ["y"], name="fc", transB=1)], [w])
bad = numpy_helper.from_array(np.ones((2, 16), np.float32), "fc.weight")
bad.dims[1] = 17  # 2x17 declared, 32 floats stored
save("badsize", [flat, helper.make_node("Gemm", ["f", "fc.weight"], ["y"], name="fc", transB=1)], [bad])
save("cycle", [helper.make_node("Relu", ["b"], ["a"], name="r1"), helper.make_node("Relu", ["a"], ["b"], name="r2"),
               helper.make_node("Flatten", ["b"], ["f"], name="flat"),
               helper.make_node("Gemm", ["f", "fc.weight"], ["y"], name="fc", transB=1)], [w])


def ints(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


fc = helper.make_node("Gemm", ["f", "fc.weight"], ["y"], name="fc", transB=1)
save("hugeconst", [helper.make_node("ConstantOfShape", ["shape"], ["big"], name="big"), flat, fc],
     [ints("shape", [1 << 16, 1 << 16]), w])
save("gatherrange", [helper.make_node("Gather", ["shape", "nine"], ["g"], name="gather"), flat, fc],
     [ints("shape", [1, 2, 3]), ints("nine", 9), w])
seq = helper.make_tensor_sequence_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
save("sequence", [flat, fc], [w], [seq])
# x (1 channel) padded to 4 channels, 1 before and 2 after; y0 sums channel 1 (x), y1 the rest
pad_w = np.zeros((2, 64), np.float32)
pad_w[0, 16:32] = 1
pad_w[1, :16] = pad_w[1, 32:] = 1
save("foldedpad",
     [helper.make_node("Reshape", ["torch_pads", "pairs"], ["p2"], name="pairs"),
      helper.make_node("Slice", ["p2", "minus1", "most_negative", "zero", "minus1"], ["p3"],
                       name="reverse"),
      helper.make_node("Transpose", ["p3"], ["p4"], name="transpose", perm=[1, 0]),
      helper.make_node("Reshape", ["p4", "flat_shape"], ["p5"], name="flatten_pads"),
      helper.make_node("Cast", ["p5"], ["pads"], name="cast", to=TensorProto.INT64),
      helper.make_node("Pad", ["x", "pads"], ["padded"], name="pad", mode="constant"),
      helper.make_node("Flatten", ["padded"], ["f"], name="flat"), fc],
     [ints("torch_pads", [0, 0, 0, 0, 1, 2, 0, 0]), ints("pairs", [-1, 2]), ints("minus1", [-1]),
      ints("most_negative", [-(1 << 63) + 1]), ints("zero", [0]), ints("flat_shape", [-1]),
      numpy_helper.from_array(pad_w, "fc.weight")])

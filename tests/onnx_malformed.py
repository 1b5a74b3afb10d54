"""Malformed ONNX models for tests/test_onnx.c, built with onnx.helper (Debian's python3-onnx):
a node reading a tensor nothing makes, an initializer whose data disagrees with its shape, and
a cycle (two nodes reading each other's output). usage: onnx_malformed.py OUT_DIR"""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

out = sys.argv[1]
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
w = numpy_helper.from_array(np.ones((2, 16), np.float32), "fc.weight")
flat = helper.make_node("Flatten", ["x"], ["f"], name="flat")


def save(name, nodes, inits):
    graph = helper.make_graph(nodes, name, [x], [y], inits)
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

#!/usr/bin/env python3
"""Writes tests/fixtures/prune/resnet_block.onnx: a small torchvision-like ResNet
(stem Conv-BN-Relu-MaxPool, BasicBlocks with identity and 1x1-downsample skips), a
Concat of two branches, a depthwise-separable block and a GlobalAveragePool→Flatten→Gemm
head, with seeded random weights (numpy only). Used by `edgeml prune --structured`
interop (scripts/ci/prune-interop.sh) and the "Pruning" benchmark in BENCHMARKS.md.

    python3 scripts/make_prune_structured_fixtures.py
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(16)
nodes, inits = [], []


def init(name, a):
    inits.append(numpy_helper.from_array(np.asarray(a, np.float32), name))
    return name


def conv(x, name, cin, cout, k, stride=1, group=1, bias=False):
    fan = cin // group * k * k
    w = init(f"{name}.w", rng.normal(0, (2.0 / fan) ** 0.5, (cout, cin // group, k, k)))
    ins = [x, w] + ([init(f"{name}.b", rng.normal(0, 0.1, cout))] if bias else [])
    nodes.append(helper.make_node("Conv", ins, [name], name=name, kernel_shape=[k, k],
                                  strides=[stride] * 2, pads=[k // 2] * 4, group=group))
    return name


def bn(x, name, c):
    p = [init(f"{name}.scale", rng.uniform(0.5, 1.5, c)),
         init(f"{name}.bias", rng.normal(0, 0.1, c)),
         init(f"{name}.mean", rng.normal(0, 0.1, c)),
         init(f"{name}.var", rng.uniform(0.5, 1.5, c))]
    nodes.append(helper.make_node("BatchNormalization", [x] + p, [name], name=name))
    return name


def op(kind, ins, name, **attrs):
    nodes.append(helper.make_node(kind, ins, [name], name=name, **attrs))
    return name


def basic(x, name, cin, cout, stride):
    h = op("Relu", [bn(conv(x, f"{name}.conv1", cin, cout, 3, stride), f"{name}.bn1", cout)],
           f"{name}.relu1")
    h = bn(conv(h, f"{name}.conv2", cout, cout, 3), f"{name}.bn2", cout)
    if stride != 1 or cin != cout:
        x = bn(conv(x, f"{name}.down", cin, cout, 1, stride), f"{name}.down_bn", cout)
    return op("Relu", [op("Add", [h, x], f"{name}.add")], f"{name}.out")


x = "x"
h = op("Relu", [bn(conv(x, "stem", 3, 32, 3), "stem_bn", 32)], "stem_relu")
h = op("MaxPool", [h], "pool", kernel_shape=[2, 2], strides=[2, 2])
h = basic(h, "layer1.0", 32, 32, 1)
h = basic(h, "layer1.1", 32, 32, 1)
h = basic(h, "layer2.0", 32, 64, 2)
a = op("Relu", [conv(h, "branch_a", 64, 32, 1, bias=True)], "branch_a_relu")
b = op("Relu", [conv(h, "branch_b", 64, 32, 3, bias=True)], "branch_b_relu")
h = op("Concat", [a, b], "cat", axis=1)
lo, hi = init("zero", np.float32(0)), init("six", np.float32(6))
h = op("Clip", [bn(conv(h, "dw", 64, 64, 3, group=64), "dw_bn", 64), lo, hi], "dw_relu6")
h = op("Relu", [bn(conv(h, "pw", 64, 128, 1), "pw_bn", 128)], "pw_relu")
h = op("Flatten", [op("GlobalAveragePool", [h], "gap")], "flat", axis=1)
w = init("fc.w", rng.normal(0, 0.05, (10, 128)))
fb = init("fc.b", rng.normal(0, 0.05, 10))
nodes.append(helper.make_node("Gemm", [h, w, fb], ["y"], name="fc", transB=1))
graph = helper.make_graph(
    nodes, "resnet_block",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="make_prune_structured_fixtures.py")
model.ir_version = 8
onnx.checker.check_model(model, full_check=True)
root = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "prune")
os.makedirs(root, exist_ok=True)
onnx.save(model, os.path.join(root, "resnet_block.onnx"))
print("wrote", os.path.join(root, "resnet_block.onnx"))

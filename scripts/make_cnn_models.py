#!/usr/bin/env python3
"""Write torchvision's MobileNetV2 (width 1.0) or ResNet-50 architecture (224x224, 1000
classes) as an ONNX model built with onnx.helper, BatchNorm already folded into the
convolutions (as torch.onnx exports them in eval mode): MobileNetV2 is Conv + Clip(0, 6)
(ReLU6), depthwise 3x3 blocks and residual Adds; ResNet-50 is Conv + Relu, MaxPool and
bottleneck blocks with residual Adds; both end in GlobalAveragePool, Flatten, Gemm.
PyTorch is not installable here, so the graphs are written directly; the weights are
seeded He-normal, which makes the models right for speed and interop measurements, not
for accuracy.

Usage: python3 scripts/make_cnn_models.py mobilenet_v2|resnet50 OUT.onnx
"""

import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save

RNG = np.random.default_rng(2)
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1)]


class Builder:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, p):
        self.n += 1
        return f"{p}{self.n}"

    def const(self, a, p):
        n = self.name(p)
        self.inits.append(numpy_helper.from_array(a, n))
        return n

    def conv(self, x, cin, cout, k, s, group=1, relu6=True, act="Clip"):
        fan_in = cin // group * k * k
        w = (RNG.standard_normal((cout, cin // group, k, k)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        b = (RNG.standard_normal(cout) * 0.01).astype(np.float32)
        y = self.name("conv")
        self.nodes.append(helper.make_node(
            "Conv", [x, self.const(w, "w"), self.const(b, "b")], [y], kernel_shape=[k, k], strides=[s, s],
            pads=[k // 2] * 4, group=group))
        if relu6:
            z = self.name("act")
            ins = [y, self.lo, self.hi] if act == "Clip" else [y]
            self.nodes.append(helper.make_node(act, ins, [z]))
            return z
        return y

    def add(self, a, b, relu=False):
        y = self.name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [y]))
        if relu:
            z = self.name("relu")
            self.nodes.append(helper.make_node("Relu", [y], [z]))
            return z
        return y


def resnet50(b):
    x = b.conv("input", 3, 64, 7, 2, act="Relu")
    b.nodes.append(helper.make_node("MaxPool", [x], ["pool0"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4))
    x, cin = "pool0", 64
    for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for i in range(blocks):
            s = stride if i == 0 else 1
            h = b.conv(x, cin, width, 1, 1, act="Relu")
            h = b.conv(h, width, width, 3, s, act="Relu")
            h = b.conv(h, width, width * 4, 1, 1, relu6=False)
            sc = b.conv(x, cin, width * 4, 1, s, relu6=False) if i == 0 else x
            x, cin = b.add(h, sc, relu=True), width * 4
    return x, cin


def mobilenet_v2(b):
    x = b.conv("input", 3, 32, 3, 2)
    cin = 32
    for t, c, n, s in SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            h = x if t == 1 else b.conv(x, cin, hidden, 1, 1)
            h = b.conv(h, hidden, hidden, 3, stride, group=hidden)
            h = b.conv(h, hidden, c, 1, 1, relu6=False)
            if stride == 1 and cin == c:
                h = b.add(x, h)
            x, cin = h, c
    return b.conv(x, cin, 1280, 1, 1), 1280


def main():
    arch, out = sys.argv[1], sys.argv[2]
    b = Builder()
    b.lo = b.const(np.array(0.0, np.float32), "zero")
    b.hi = b.const(np.array(6.0, np.float32), "six")
    x, cin = {"mobilenet_v2": mobilenet_v2, "resnet50": resnet50}[arch](b)
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"]))
    b.nodes.append(helper.make_node("Flatten", ["pool"], ["flat"]))
    w = (RNG.standard_normal((1000, cin)) * np.sqrt(1.0 / cin)).astype(np.float32)
    b.nodes.append(helper.make_node("Gemm", ["flat", b.const(w, "fc_w"), b.const(np.zeros(1000, np.float32), "fc_b")],
                                    ["logits"], transB=1))
    g = helper.make_graph(b.nodes, arch,
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 224, 224])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])], b.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    save(m, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

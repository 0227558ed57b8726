#!/usr/bin/env python3
"""Reference outputs for the nine "light" models that ship with the onnx Python package
(onnx/backend/test/data/light: AlexNet, DenseNet-121, Inception v1/v2, ResNet-50,
ShuffleNet, SqueezeNet, VGG-19, ZFNet-512; their weights are ConstantOfShape nodes).

Copies each model to tests/fixtures/models/<name>.onnx and writes onnxruntime's output
for a deterministic input to tests/fixtures/light/<name>.out0.npy.

The input is not stored (it would be 600 KB per model): element i (row-major) of the
float32 input is `((i * 7919) % 256) / 255 - 0.5`, computed in float32, which the Rust
test (edgeml-onnx/tests/light_models.rs) recomputes bit for bit.

Usage: python3 scripts/make_light_fixtures.py   (numpy, onnx, onnxruntime)
"""

import glob
import os
import shutil

import numpy as np
import onnx
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "tests", "fixtures")


def det_input(shape):
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.int64)
    v = ((i * 7919) % 256).astype(np.float32) / np.float32(255.0) - np.float32(0.5)
    return v.astype(np.float32).reshape(shape)


def main():
    src = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    os.makedirs(os.path.join(FIX, "models"), exist_ok=True)
    os.makedirs(os.path.join(FIX, "light"), exist_ok=True)
    for path in sorted(glob.glob(os.path.join(src, "light_*.onnx"))):
        name = os.path.basename(path)[: -len(".onnx")]
        dst = os.path.join(FIX, "models", name + ".onnx")
        shutil.copyfile(path, dst)
        m = onnx.load(dst)
        inits = {t.name for t in m.graph.initializer}
        (inp,) = [i for i in m.graph.input if i.name not in inits]
        shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        sess = ort.InferenceSession(dst, providers=["CPUExecutionProvider"])
        (out,) = sess.run(None, {inp.name: det_input(shape)})
        np.save(os.path.join(FIX, "light", name + ".out0.npy"), out)
        print(name, inp.name, shape, "->", out.shape)


if __name__ == "__main__":
    main()

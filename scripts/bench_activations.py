#!/usr/bin/env python3
"""Single-operator float models, `edgeml bench` vs onnxruntime, one thread: the
element-wise activations and broadcasts that modern detectors and OCR networks spend
their non-convolution time in (edgeml feeds its own generated input, onnxruntime
uniform [-6, 6): the kernels are branch-free). Prints the Markdown table of BENCHMARKS.md
"Element-wise operators".

Usage: python3 scripts/bench_activations.py [--rounds 3]   (numpy, onnx, onnxruntime)
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import helper as h

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# name -> (op, attributes, input shape, second operand shape or None, opset)
CASES = {
    "Sigmoid": ("Sigmoid", {}, [1, 64, 160, 160], None, 17),
    "HardSwish": ("HardSwish", {}, [1, 64, 160, 160], None, 17),
    "Gelu": ("Gelu", {}, [1, 196, 1536], None, 20),
    "Gelu (tanh)": ("Gelu", {"approximate": "tanh"}, [1, 196, 1536], None, 20),
    "Mish": ("Mish", {}, [1, 64, 80, 80], None, 18),
    "Softplus": ("Softplus", {}, [1, 64, 80, 80], None, 17),
    "Erf": ("Erf", {}, [1, 196, 1536], None, 17),
    "Mul by [1,C,1,1] (squeeze-excitation)": ("Mul", {}, [1, 96, 56, 56], [1, 96, 1, 1], 17),
    "Add [N,T,C] + [C] (bias)": ("Add", {}, [1, 196, 384], [384], 17),
}


def model(path, op, attrs, shape, other, opset):
    inputs = [h.make_tensor_value_info("x", T.FLOAT, shape)]
    names = ["x"]
    if other is not None:
        inputs.append(h.make_tensor_value_info("b", T.FLOAT, other))
        names.append("b")
    g = h.make_graph([h.make_node(op, names, ["y"], **attrs)], "m", inputs,
                     [h.make_tensor_value_info("y", T.FLOAT, None)])
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", opset)]), path)


def ort_ms(path, feeds, iters=50):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    for _ in range(5):
        s.run(None, feeds)
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        s.run(None, feeds)
        ts.append(time.perf_counter() - t)
    return 1e3 * float(np.median(ts))


def edgeml_ms(cli, path):
    out = subprocess.run([cli, "bench", path, "--threads", "1", "--iters", "50", "--json"],
                         check=True, capture_output=True, text=True).stdout
    return float(json.loads(out)["median_ms"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "edgeml-cli"], check=True)
    cli = os.path.join(ROOT, "target", "release", "edgeml")
    rng = np.random.default_rng(0)
    print(f"onnxruntime {ort.__version__}; 1 thread; medians of {args.rounds} interleaved rounds of 50 runs")
    print()
    print("| operator | input | onnxruntime (ms) | edgeml (ms) | edgeml / onnxruntime |")
    print("|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (op, attrs, shape, other, opset) in CASES.items():
            path = os.path.join(tmp, "m.onnx")
            model(path, op, attrs, shape, other, opset)
            feeds = {"x": rng.uniform(-6, 6, shape).astype(np.float32)}
            if other is not None:
                feeds["b"] = rng.uniform(-1, 1, other).astype(np.float32)
            o, e = [], []
            for _ in range(args.rounds):
                o.append(ort_ms(path, feeds))
                e.append(edgeml_ms(cli, path))
            om, em = float(np.median(o)), float(np.median(e))
            dims = "x".join(map(str, shape)) + ("" if other is None else " and " + "x".join(map(str, other)))
            print(f"| {name} | {dims} | {om:.3f} | {em:.3f} | {em / om:.2f}x |")


if __name__ == "__main__":
    main()

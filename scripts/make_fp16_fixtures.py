#!/usr/bin/env python3
"""Fixtures for the float16 tests: the bundled digits CNN and MLP converted by
onnxconverter-common's `convert_float_to_float16(keep_io_types=True)` (its other
defaults), and onnxruntime's probabilities on the 450 test images for each.

Writes tests/fixtures/fp16/{cnn,mlp}_fp16.onnx and {cnn,mlp}_ort.npy.
Usage: python3 scripts/make_fp16_fixtures.py   (numpy, onnx, onnxruntime, onnxconverter-common)
"""
import os
import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnxconverter_common import float16

HERE = os.path.dirname(os.path.abspath(__file__))
DIGITS = os.path.join(HERE, "..", "tests", "fixtures", "digits")
OUT = os.path.join(HERE, "..", "tests", "fixtures", "fp16")


def main():
    os.makedirs(OUT, exist_ok=True)
    x = np.load(os.path.join(DIGITS, "x_test.npy"))
    for name in ["cnn", "mlp"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its notes on clamped tiny weights
            m = float16.convert_float_to_float16(onnx.load(os.path.join(DIGITS, f"{name}.onnx")),
                                                 keep_io_types=True)
        path = os.path.join(OUT, f"{name}_fp16.onnx")
        onnx.save(m, path)
        s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        np.save(os.path.join(OUT, f"{name}_ort.npy"), s.run(None, {"x": x})[0])


if __name__ == "__main__":
    main()

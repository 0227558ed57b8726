#!/usr/bin/env python3
"""Copies a small subset of the ONNX backend test suite's PyTorch exports (models plus
their stored input/output tensors) from the installed `onnx` package into
tests/fixtures/onnx-backend/, so `cargo test` exercises real PyTorch exports without
Python. The full set runs in CI via scripts/ci/onnx-backend.sh.

Selection: every case of `pytorch-converted` and `pytorch-operator` whose folder is at
most MAX_BYTES, which keeps the committed fixtures to a few hundred KB.
"""
import os
import shutil

import onnx

MAX_BYTES = 24 * 1024
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
DST = os.path.join(ROOT, "tests", "fixtures", "onnx-backend")


def size(d):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)


def main():
    shutil.rmtree(DST, ignore_errors=True)
    n = total = 0
    for group in ("pytorch-converted", "pytorch-operator"):
        for case in sorted(os.listdir(os.path.join(SRC, group))):
            src = os.path.join(SRC, group, case)
            if not os.path.isfile(os.path.join(src, "model.onnx")) or size(src) > MAX_BYTES:
                continue
            shutil.copytree(src, os.path.join(DST, group, case))
            n += 1
            total += size(src)
    print(f"copied {n} cases, {total / 1024:.0f} KB, onnx {onnx.__version__}")


if __name__ == "__main__":
    main()

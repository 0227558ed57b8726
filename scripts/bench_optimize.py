#!/usr/bin/env python3
"""Node counts after `edgeml optimize` beside onnxslim, on the models of
`scripts/optimize_interop.py` (the interop check verifies our outputs; this script
only counts). Prints the Markdown table of BENCHMARKS.md "Graph passes".

Usage: python3 scripts/bench_optimize.py EDGEML_BINARY   (onnx, onnxslim; numpy)
"""
import contextlib
import io
import os
import subprocess
import sys
import tempfile

import onnx
import onnxslim

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from optimize_interop import FIX, MODELS, bn_model  # noqa: E402


def nodes(path):
    return len(onnx.load(path).graph.node)


def main():
    binary = sys.argv[1]
    print(f"onnxslim {onnxslim.__version__}")
    print()
    print("| model | nodes | edgeml basic | edgeml extended | onnxslim |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for rel, _levels in MODELS:
            if rel == "<bn>":
                src = os.path.join(tmp, "bn.onnx")
                bn_model(src)
                name = "BatchNorm test model (opset 13)"
            else:
                src = os.path.join(FIX, rel)
                name = rel
            row = [name, str(nodes(src))]
            for level in ("basic", "extended"):
                out = os.path.join(tmp, f"out_{level}.onnx")
                subprocess.run([binary, "optimize", src, "-o", out, "--level", level],
                               check=True, capture_output=True)
                row.append(str(nodes(out)))
            slim = os.path.join(tmp, "slim.onnx")
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    onnxslim.slim(src, slim)
                row.append(str(nodes(slim)))
            except Exception as e:  # onnxslim refuses some models; say so in the cell
                row.append(f"fails ({type(e).__name__})")
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

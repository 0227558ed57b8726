#!/usr/bin/env bash
# Interop check of `edgeml quantize`: quantizes the digits CNN and MLP, checks that
# onnxruntime loads and runs the written models, that its outputs agree with
# `edgeml run` within one quantization step on >= 99.9% of elements, and that our
# accuracy is >= onnxruntime's own quantize_static on the same calibration data - 0.5
# point. Prints the table of BENCHMARKS.md's "Quantization accuracy" section.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/ci-built.sh
python3 scripts/quantize_interop.py "$EDGEML"

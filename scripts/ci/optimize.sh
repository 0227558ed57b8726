#!/usr/bin/env bash
# Interop check for `edgeml optimize`: simplifies a few bundled models (digits CNN and
# MLP, light SqueezeNet / ResNet-50 / Inception v1, tf2onnx CNN and RNN (Loop),
# paddle2onnx OCR, an skl2onnx pipeline, a PyTorch grouped Conv, and a helper-built
# model with BatchNormalization after Conv/ConvTranspose/Gemm/MatMul) at the basic and
# extended levels; the onnx checker must accept each output, onnxruntime must give the
# original outputs within 1e-4 relative, and a second optimize must give the same
# bytes. About 15 s once built.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --locked -q -p edgeml-cli
python3 scripts/optimize_interop.py "${CARGO_TARGET_DIR:-target}/debug/edgeml"

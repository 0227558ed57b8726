#!/usr/bin/env bash
# Interop check for `edgeml optimize`: simplifies the bundled models (digits CNN and
# MLP, every light model, the pruning ResNet block, tf2onnx CNN and RNN (Loop),
# paddle2onnx OCR, skl2onnx models, a PyTorch grouped Conv, and a helper-built model
# with BatchNormalization after Conv/grouped ConvTranspose/Gemm/MatMul) at the basic and
# extended levels; the onnx checker must accept each output, onnxruntime must give the
# original outputs within 1e-4 relative, and a second optimize must give the same
# bytes. About 2 min once built (the light VGG19's folded weights are 0.5 GB).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/ci-built.sh
python3 scripts/optimize_interop.py "$EDGEML"

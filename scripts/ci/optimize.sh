#!/usr/bin/env bash
# Interop check for `edgeml optimize`: simplifies a few bundled models (digits CNN and
# MLP, light SqueezeNet / ResNet-50 / Inception v1, a tf2onnx CNN, PyTorch
# BatchNorm/Conv exports) at the basic and extended levels; onnxruntime must give the
# original outputs within 1e-4 relative, and a second optimize must change nothing.
# Runs in well under a minute once built.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --locked -q -p edgeml-cli
python3 scripts/optimize_interop.py "${CARGO_TARGET_DIR:-target}/debug/edgeml"

#!/usr/bin/env bash
# Runs every PyTorch export of the ONNX backend test suite (pytorch-converted and
# pytorch-operator, shipped in the onnx Python package) through the interpreter and
# compares with the outputs stored beside each model; then all nine light models
# against onnxruntime (EDGEML_LIGHT_MODELS=all: the test build would run only the two
# cheapest; the test profile's opt-level 1 runs all nine in about a minute).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=$(python3 -c "import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), 'backend', 'test', 'data'))")
EDGEML_ONNX_BACKEND_DIR="$dir" EDGEML_LIGHT_MODELS=all \
  cargo test --locked --workspace --test onnx_backend --test light_models -- --nocapture

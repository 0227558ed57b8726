#!/usr/bin/env bash
# Interop check for the INT8 ONNX operators: regenerate the quantized-operator and
# quantized-model fixtures with the installed onnxruntime into a temporary folder and
# re-run their tests on those, then compare edgeml with onnxruntime on MobileNetV2
# quantized in three formats.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
EDGEML_QOPS_FIXTURES="$tmp/qops" python3 scripts/make_qop_fixtures.py
EDGEML_QMODELS_FIXTURES="$tmp/qmodels" python3 scripts/make_qmodel_fixtures.py
EDGEML_QOPS_FIXTURES="$tmp/qops" EDGEML_QMODELS_FIXTURES="$tmp/qmodels" \
  cargo test --locked --workspace --test onnx_ops --test onnx_models
source scripts/ci-built.sh
python3 scripts/check_int8_interop.py "$EDGEML" "$tmp"

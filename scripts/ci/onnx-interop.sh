#!/usr/bin/env bash
# Interop check for edgeml-onnx model I/O: real models (onnx's light models,
# skl2onnx conversions, helper-built models at opsets 7-21, the bundled fixtures) are
# loaded and saved by edgeml, then compared with the originals (protobuf fields via the
# onnx package) and run in onnxruntime, whose outputs must be bit-identical.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -c "import skl2onnx" 2>/dev/null || python3 -m pip install -q skl2onnx
source scripts/ci-built.sh
python3 scripts/onnx_interop.py --roundtrip "$EXAMPLES/io_roundtrip" "$@"

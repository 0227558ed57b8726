#!/usr/bin/env bash
# Interop check for `edgeml distill`: train a tiny student for two epochs on the bundled
# digits data, then check with onnxruntime that the student loads and that its outputs
# match `edgeml run` (1e-4 relative). Needs python3 with numpy and onnxruntime.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
source scripts/ci-built.sh
edgeml="$EDGEML"
d=tests/fixtures/digits
"$edgeml" distill --teacher "$d/cnn.onnx" --data "$d/x_test.npy" --labels "$d/y_test.npy" \
  --hidden 16,8 --standardize --epochs 2 --seed 1 -o "$tmp/student.onnx"
"$edgeml" run "$tmp/student.onnx" -i "x=$d/x_test.npy" -o "$tmp"
python3 - "$tmp" "$d" <<'PY'
import sys
import numpy as np
import onnxruntime as ort
tmp, d = sys.argv[1], sys.argv[2]
sess = ort.InferenceSession(f"{tmp}/student.onnx", providers=["CPUExecutionProvider"])
x = np.load(f"{d}/x_test.npy")
(ort_out,) = sess.run(["logits"], {"x": x})
ours = np.load(f"{tmp}/logits.npy")
assert ours.shape == ort_out.shape == (len(x), 10), (ours.shape, ort_out.shape)
rel = np.max(np.abs(ours - ort_out)) / np.max(np.abs(ort_out))
print(f"student: onnxruntime vs edgeml run, max relative difference {rel:.2e}")
assert rel <= 1e-4, rel
PY
echo "distill-interop: ok"

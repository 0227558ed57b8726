#!/usr/bin/env bash
# Interop check of the interpreter through the CLI: `edgeml run` on fresh random inputs
# must match onnxruntime run live (digits MLP/CNN, SqueezeNet), and `edgeml bench --json`
# must print a well-formed report.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/ci-built.sh
BIN="$EDGEML"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

python3 - "$TMP" <<'PY'
import sys, numpy as np
rng = np.random.default_rng(7)
np.save(f"{sys.argv[1]}/digits.npy", rng.uniform(0, 1, (5, 1, 8, 8)).astype(np.float32))
np.save(f"{sys.argv[1]}/image.npy", rng.uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32))
PY

check() {  # model input-name input-file
  local model=$1 name=$2 file=$3 out="$TMP/out_$(basename "$1" .onnx)"
  "$BIN" run "$model" --input "$name=$file" --output-dir "$out" >/dev/null
  python3 - "$model" "$name" "$file" "$out" <<'PY'
import os, re, sys, numpy as np, onnxruntime as ort
model, name, file, out = sys.argv[1:]
sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
want = sess.run(None, {name: np.load(file)})
for o, w in zip(sess.get_outputs(), want):
    got = np.load(os.path.join(out, re.sub(r"[^A-Za-z0-9_.-]", "_", o.name) + ".npy"))
    np.testing.assert_allclose(got, w, rtol=1e-3, atol=1e-5, err_msg=f"{model}: {o.name}")
print(f"edgeml run matches onnxruntime: {os.path.basename(model)}")
PY
}

check tests/fixtures/digits/mlp.onnx x "$TMP/digits.npy"
check tests/fixtures/digits/cnn.onnx x "$TMP/digits.npy"
check tests/fixtures/models/light_squeezenet.onnx data_0 "$TMP/image.npy"

"$BIN" bench tests/fixtures/digits/cnn.onnx --dim N=8 --iters 5 --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["iters"] == 5 and r["inputs"][0][2] == [8, 1, 8, 8], r
assert 0 < r["p10_ms"] <= r["median_ms"] <= r["p90_ms"], r
print("edgeml bench --json: ok")'
echo "runtime: 4 passed, 0 failed"

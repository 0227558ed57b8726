#!/usr/bin/env bash
# Interop check for `edgeml prune`: prunes the bundled digits models (unstructured 90%
# with sparse storage, 50% of channels removed, and 70% with --recalibrate on the
# training images), then checks with onnxruntime that
# every written model loads and runs, keeps its output shape and matches `edgeml run`
# (relative 1e-4); then the same for ShuffleNet (random weights) with channel pruning;
# then --structured (coupled channel groups) on the digits CNN, the ResNet-like
# fixture tests/fixtures/prune/resnet_block.onnx and ShuffleNet: onnx checker,
# onnxruntime == edgeml on the pruned model, output shapes as dense, and (with a
# report) onnxruntime on the pruned model == the original with every removed member
# slice zeroed; ShuffleNet (grouped convs, channel shuffles) must lose more than half
# of its parameters.
# Prints accuracy and file sizes. Runs in seconds once built.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/ci-built.sh
bin="$EDGEML"
digits=tests/fixtures/digits
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -c "import numpy as np; np.save('$tmp/x_train.npy', (np.load('$digits/x_train_u8.npy') / 16).astype(np.float32))"
for m in mlp cnn; do
  "$bin" prune "$digits/$m.onnx" -o "$tmp/${m}_sparse.onnx" -s 0.9 --sparse-storage \
    --report "$tmp/${m}_sparse.json" >/dev/null
  "$bin" prune "$digits/$m.onnx" -o "$tmp/${m}_channel.onnx" -s 0.5 -p channel \
    --report "$tmp/${m}_channel.json" >/dev/null
  "$bin" prune "$digits/$m.onnx" -o "$tmp/${m}_recal.onnx" -s 0.7 \
    --recalibrate "$tmp/x_train.npy" --report "$tmp/${m}_recal.json" >/dev/null
  for v in sparse channel recal; do
    mkdir -p "$tmp/${m}_$v"
    "$bin" run "$tmp/${m}_$v.onnx" -i "x=$digits/x_test.npy" -o "$tmp/${m}_$v" --threads 1
  done
done
# ShuffleNet (grouped convs, channel shuffles, Concat, Sum): the light model's weights
# are ConstantOfShape nodes; replace them by seeded random initializers first (BN
# variances positive: negative ones made every output NaN). The model is IR 3, which
# lists every initializer as a graph input; a graph input can be fed another shape at
# run time, so pruning never slices one: drop them from the inputs, as onnxruntime's
# remove_initializer_from_input.py does.
python3 - "$tmp" <<'PY'
import sys
import numpy as np, onnx
from onnx import numpy_helper
tmp = sys.argv[1]
m = onnx.load("tests/fixtures/models/light_shufflenet.onnx")
g, rng = m.graph, np.random.default_rng(0)
shapes = {t.name: numpy_helper.to_array(t) for t in g.initializer}
keep = []
for n in g.node:
    if n.op_type == "ConstantOfShape" and n.input[0] in shapes:
        shape = shapes[n.input[0]].astype(int)
        if n.output[0].endswith("_riv_0"):
            w = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            w = rng.normal(0, 0.1, shape).astype(np.float32)
        g.initializer.append(numpy_helper.from_array(w, n.output[0]))
    else:
        keep.append(n)
del g.node[:]
g.node.extend(keep)
m.ir_version = max(m.ir_version, 4)  # initializers need not be graph inputs
inputs = [i for i in g.input if i.name not in {t.name for t in g.initializer}]
del g.input[:]
g.input.extend(inputs)
np.save(f"{tmp}/shufflenet_x.npy", rng.normal(0, 1, (1, 3, 224, 224)).astype(np.float32))
onnx.save(m, f"{tmp}/shufflenet.onnx")
PY
"$bin" prune "$tmp/shufflenet.onnx" -o "$tmp/shufflenet_channel.onnx" -s 0.5 -p channel \
  --report "$tmp/shufflenet_channel.json" >/dev/null
mkdir -p "$tmp/shufflenet_channel"
"$bin" run "$tmp/shufflenet_channel.onnx" -i "gpu_0/data_0=$tmp/shufflenet_x.npy" \
  -o "$tmp/shufflenet_channel" --threads 1 >/dev/null
rb=tests/fixtures/prune/resnet_block.onnx
python3 -c "import numpy as np; np.save('$tmp/rb_x.npy', np.random.default_rng(1).normal(0, 1, (1, 3, 64, 64)).astype(np.float32))"
"$bin" prune "$digits/cnn.onnx" -o "$tmp/cnn_structured.onnx" -s 0.5 --structured >/dev/null
"$bin" prune "$rb" -o "$tmp/rb_structured.onnx" -s 0.5 --structured --round-to 8 \
  --report "$tmp/rb_structured.json" >/dev/null
"$bin" prune "$tmp/shufflenet.onnx" -o "$tmp/shufflenet_structured.onnx" -s 0.5 --structured \
  --report "$tmp/shufflenet_structured.json" >/dev/null
mkdir -p "$tmp/cnn_structured" "$tmp/rb_structured" "$tmp/shufflenet_structured"
"$bin" run "$tmp/cnn_structured.onnx" -i "x=$digits/x_test.npy" -o "$tmp/cnn_structured" --threads 1 >/dev/null
"$bin" run "$tmp/rb_structured.onnx" -i "x=$tmp/rb_x.npy" -o "$tmp/rb_structured" --threads 1 >/dev/null
"$bin" run "$tmp/shufflenet_structured.onnx" -i "gpu_0/data_0=$tmp/shufflenet_x.npy" \
  -o "$tmp/shufflenet_structured" --threads 1 >/dev/null
python3 - "$tmp" "$digits" "$rb" <<'PY'
import json, os, sys
import numpy as np, onnx, onnxruntime as ort
from onnx import numpy_helper
ort.set_default_logger_severity(3)

def zeroed(orig, groups):
    """`orig` with every member slice of every removed channel set to zero."""
    m = onnx.load(orig)
    w = {t.name: numpy_helper.to_array(t).copy() for t in m.graph.initializer}
    for g in groups:
        for mem in g["members"]:
            a, b = w[mem["tensor"]], mem["block"]
            for c in g["removed"]:
                idx = [slice(None)] * a.ndim
                idx[mem["axis"]] = slice((mem["offset"] + c) * b, (mem["offset"] + c + 1) * b)
                a[tuple(idx)] = 0
    for t in m.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(w[t.name], t.name))
    return m.SerializeToString()

tmp, digits, rb = sys.argv[1:4]
cases = [("cnn", f"{digits}/cnn.onnx", "x", np.load(f"{digits}/x_test.npy")),
         ("rb", rb, "x", np.load(f"{tmp}/rb_x.npy")),
         ("shufflenet", f"{tmp}/shufflenet.onnx", "gpu_0/data_0", np.load(f"{tmp}/shufflenet_x.npy"))]
for name, orig, inp, x in cases:
    path = f"{tmp}/{name}_structured.onnx"
    onnx.checker.check_model(onnx.load(path), full_check=True)
    sess = lambda p: ort.InferenceSession(p, providers=["CPUExecutionProvider"])
    want = sess(orig).run(None, {inp: x})[0]
    got = sess(path).run(None, {inp: x})[0]
    (ours,) = [np.load(os.path.join(f"{tmp}/{name}_structured", f)) for f in os.listdir(f"{tmp}/{name}_structured")]
    assert got.shape == want.shape == ours.shape, (name, got.shape, want.shape, ours.shape)
    np.testing.assert_allclose(ours, got, rtol=1e-4, atol=1e-5, err_msg=path)
    extra = ""
    if os.path.exists(f"{tmp}/{name}_structured.json"):
        r = json.load(open(f"{tmp}/{name}_structured.json"))
        g = r["groups"]
        pruned = sum(1 for x in g if x["removed"])
        assert pruned > 0 and r["model_params_after"] < r["model_params_before"], (name, r)
        if name == "shufflenet":
            assert 2 * r["model_params_after"] < r["model_params_before"], r["model_params_after"]
        z = sess(zeroed(orig, g)).run(None, {inp: x})[0]
        np.testing.assert_allclose(got, z, rtol=1e-4, atol=1e-5, err_msg=f"{path} vs zeroed")
        extra = (f"; {pruned} groups pruned, {sum(1 for x in g if x['blocked'])} blocked, "
                 f"parameters {r['model_params_before']} -> {r['model_params_after']}, "
                 f"== the original with the removed slices zeroed (onnxruntime, rtol 1e-4)")
    print(f"{name} structured: onnx checker ok, onnxruntime == edgeml (rtol 1e-4), output "
          f"{got.shape} as dense; file {os.path.getsize(orig)} -> {os.path.getsize(path)} bytes{extra}")
PY
python3 - "$tmp" "$digits" <<'PY'
import json, os, sys
import numpy as np, onnx, onnxruntime as ort
ort.set_default_logger_severity(3)
tmp, digits = sys.argv[1], sys.argv[2]
x, y = np.load(f"{digits}/x_test.npy"), np.load(f"{digits}/y_test.npy")
for m in ("mlp", "cnn"):
    for v in ("sparse", "channel", "recal"):
        path = f"{tmp}/{m}_{v}.onnx"
        model = onnx.load(path)
        onnx.checker.check_model(model)
        if v == "sparse":
            assert len(model.graph.sparse_initializer) == 2, f"{path}: no sparse_initializer"
        elif v == "recal":
            refits = json.load(open(f"{tmp}/{m}_{v}.json"))["recalibrated"]
            assert refits and all(r["error_after"] < r["error_before"] for r in refits), refits
        else:
            assert any(r["channels_removed"] > 0 for r in json.load(open(f"{tmp}/{m}_{v}.json"))["layers"]), path
        s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        got = s.run(None, {"x": x})[0]
        ours = np.load(f"{tmp}/{m}_{v}/probs.npy")
        assert got.shape == (450, 10) == ours.shape, (path, got.shape, ours.shape)
        np.testing.assert_allclose(ours, got, rtol=1e-4, atol=1e-6, err_msg=path)
        acc = float((got.argmax(1) == y).mean())
        print(f"{m} {v}: onnxruntime == edgeml (rtol 1e-4), accuracy {acc:.4f}, "
              f"file {os.path.getsize(f'{digits}/{m}.onnx')} -> {os.path.getsize(path)} bytes")
path = f"{tmp}/shufflenet_channel.onnx"
onnx.checker.check_model(onnx.load(path))
x = np.load(f"{tmp}/shufflenet_x.npy")
want = ort.InferenceSession(f"{tmp}/shufflenet.onnx", providers=["CPUExecutionProvider"]).run(None, {"gpu_0/data_0": x})[0]
got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"gpu_0/data_0": x})[0]
(ours,) = [np.load(os.path.join(f"{tmp}/shufflenet_channel", f)) for f in os.listdir(f"{tmp}/shufflenet_channel")]
assert got.shape == want.shape == ours.shape, (got.shape, want.shape, ours.shape)
np.testing.assert_allclose(ours, got, rtol=1e-4, atol=1e-6, err_msg=path)
r = json.load(open(f"{tmp}/shufflenet_channel.json"))
removed = sum(l["channels_removed"] for l in r["layers"])
print(f"shufflenet channel: output {got.shape} as dense, onnxruntime == edgeml (rtol 1e-4); "
      f"{removed} channels removed in {sum(l['channels_removed'] > 0 for l in r['layers'])} of "
      f"{len(r['layers'])} layers, the others zeroed; file {os.path.getsize(f'{tmp}/shufflenet.onnx')} -> {os.path.getsize(path)} bytes")
PY

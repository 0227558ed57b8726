#!/usr/bin/env python3
"""Round-trips real ONNX models through edgeml and checks nothing was lost.

For each model: edgeml loads and saves it (the --roundtrip binary); then
1. the protobufs are compared field by field with the onnx package, after the
   normalisations documented in edgeml-onnx/README.md ("Round-trip"): tensors are
   compared by value (dtype, dims, bit pattern) whatever their storage form, sparse
   initializers are compared densified, external data is compared inlined, and an
   attribute whose type was UNDEFINED may come back with its inferred type;
2. onnxruntime runs the original and the round-tripped model on the same seeded
   random inputs; every output must be bit-identical.
Exits non-zero on the first difference.
"""
import argparse
import copy
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
DATA_FIELDS = ["raw_data", "float_data", "int32_data", "int64_data", "double_data",
               "uint64_data", "string_data", "external_data", "data_location"]


# ---------------------------------------------------------------- model sources
def helper_models(out):
    """Small models built with onnx.helper at every opset 7..21."""
    paths = []
    for opset in range(7, 22):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
        rng = np.random.default_rng(opset)
        w = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "W")
        b = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "B")
        nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]),
                 helper.make_node("Add", ["h", "B"], ["z"]),
                 helper.make_node("Relu", ["z"], ["r"])]
        if opset >= 13:
            nodes.append(helper.make_node("Softmax", ["r"], ["y"], axis=-1))
        else:
            nodes.append(helper.make_node("Sigmoid", ["r"], ["y"]))
        ir = 3 if opset < 8 else (4 if opset < 11 else 7 if opset < 14 else 8)
        # Before IR version 4 every initializer must also be a graph input.
        extra = [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims)) for t in (w, b)]
        g = helper.make_graph(nodes, f"mlp_opset{opset}", [x] + (extra if ir < 4 else []), [y], [w, b],
                              doc_string=f"opset {opset}")
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir,
                              producer_name="onnx.helper")
        p = os.path.join(out, f"helper_mlp_opset{opset}.onnx")
        onnx.save(m, p)
        paths.append(p)
    # Conv + If with outer-scope captures, opset 17.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])
    c = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 5, 5])
    k = numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, 2, 3, 3)).astype(np.float32), "K")
    then_g = helper.make_graph([helper.make_node("Relu", ["conv"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    else_g = helper.make_graph([helper.make_node("Neg", ["conv"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    g = helper.make_graph([helper.make_node("Conv", ["x", "K"], ["conv"], pads=[1, 1, 1, 1], name="conv"),
                           helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
                          "conv_if", [x, c], [y], [k])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(m, {"k": "v"})
    p = os.path.join(out, "helper_conv_if.onnx")
    onnx.save(m, p)
    paths.append(p)
    return paths


def sklearn_models(out):
    from skl2onnx import to_onnx
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_iris
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    est = {
        "linreg": LinearRegression().fit(x, y.astype(np.float32)),
        "logreg": LogisticRegression(max_iter=500).fit(x, y),
        "forest": RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(x, y),
        "svc": SVC().fit(x, y),
        "kmeans": KMeans(n_clusters=3, n_init=3, random_state=0).fit(x),
        "pca": PCA(n_components=2).fit(x),
        "mlp": MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0).fit(x, y),
        "pipeline": make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y),
    }
    paths = []
    for name, e in est.items():
        m = to_onnx(e, x[:1], target_opset={"": 17, "ai.onnx.ml": 3})
        p = os.path.join(out, f"skl_{name}.onnx")
        onnx.save(m, p)
        paths.append(p)
    return paths


def fixture_models():
    d = os.path.join(ROOT, "tests", "fixtures", "models")
    light = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    return (sorted(glob.glob(os.path.join(d, "*.onnx"))) + [os.path.join(d, "ext", "ext_model.onnx")]
            + sorted(glob.glob(os.path.join(light, "*.onnx")))
            # Real PyTorch exports shipped with the onnx package's backend tests.
            + sorted(glob.glob(os.path.join(os.path.dirname(light), "pytorch-*", "*", "model.onnx")))
            # TensorFlow (tf2onnx) and PaddlePaddle (paddle2onnx) exports.
            + sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "onnx-backend", "converters", "*", "model.onnx"))))


# ---------------------------------------------------------------- comparison
def tensor_key(t, base):
    arr = numpy_helper.to_array(t, base_dir=base)
    return (t.name, t.data_type, tuple(t.dims), np.ascontiguousarray(arr).tobytes())


def densify(sp, base):
    vals = numpy_helper.to_array(sp.values, base_dir=base)
    idx = numpy_helper.to_array(sp.indices, base_dir=base)
    dims = tuple(sp.dims)
    dense = np.zeros(int(np.prod(dims)), dtype=vals.dtype)
    dense[idx if idx.ndim == 1 else np.ravel_multi_index(idx.T, dims)] = vals
    t = numpy_helper.from_array(dense.reshape(dims), sp.values.name)
    t.data_type = sp.values.data_type
    return t


def normalise_graph(g, base, tensors):
    """Moves every tensor's value into `tensors` (by path) and clears its data fields."""
    for s in list(g.sparse_initializer):
        g.initializer.append(densify(s, base))
    del g.sparse_initializer[:]
    for i, t in enumerate(g.initializer):
        tensors.append(("init", g.name, i, tensor_key(t, base)))
        for f in DATA_FIELDS:
            t.ClearField(f)
        t.ClearField("doc_string")
    for n in g.node:
        for a in n.attribute:
            ts = ([a.t] if a.HasField("t") else []) + list(a.tensors)
            for j, t in enumerate(ts):
                tensors.append(("attr", n.name, a.name, j, tensor_key(t, base)))
                for f in DATA_FIELDS:
                    t.ClearField(f)
            sps = ([a.sparse_tensor] if a.HasField("sparse_tensor") else []) + list(a.sparse_tensors)
            for j, s in enumerate(sps):
                tensors.append(("sparse", n.name, a.name, j, tensor_key(s.values, base),
                                tensor_key(s.indices, base), tuple(s.dims)))
                for t in (s.values, s.indices):
                    for f in DATA_FIELDS:
                        t.ClearField(f)
                    t.ClearField("name")
            if a.type == 0:  # edgeml writes the inferred type
                a.ClearField("type")
            if a.HasField("g"):
                normalise_graph(a.g, base, tensors)
            for sub in a.graphs:
                normalise_graph(sub, base, tensors)


def clear_defaults(msg):
    """Forgets proto2 presence of scalars set to their default (edgeml's protobuf code
    is proto3-style: `domain: ""` and an absent domain read back the same)."""
    for f, v in msg.ListFields():
        rep = getattr(f, "is_repeated", None)
        rep = rep if rep is not None else f.label == 3
        if f.type == f.TYPE_MESSAGE:
            for sub in (v if rep else [v]):
                clear_defaults(sub)
        elif not rep and f.containing_oneof is None and v == f.default_value:
            msg.ClearField(f.name)


def normalise(path):
    m = onnx.load(path, load_external_data=False)
    tensors = []
    normalise_graph(m.graph, os.path.dirname(path), tensors)
    clear_defaults(m)
    return m, tensors


def diff(a, b, path=""):
    """First differing field of two messages, for the error message."""
    for f in a.DESCRIPTOR.fields:
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if va == vb:
            continue
        if f.type == f.TYPE_MESSAGE:
            rep = getattr(f, "is_repeated", None)
            if rep if rep is not None else f.label == 3:
                if len(va) != len(vb):
                    return f"{path}.{f.name}: {len(va)} vs {len(vb)} entries"
                for i, (x, y) in enumerate(zip(va, vb)):
                    d = diff(x, y, f"{path}.{f.name}[{i}]")
                    if d:
                        return d
            else:
                return diff(va, vb, f"{path}.{f.name}")
        return f"{path}.{f.name}: {str(va)[:200]!r} vs {str(vb)[:200]!r}"
    return None


def strip_attr_types_where_undefined(orig, new):
    """An attribute loaded with type UNDEFINED comes back typed: clear both."""
    def walk(go, gn):
        for no, nn in zip(go.node, gn.node):
            for ao, an in zip(no.attribute, nn.attribute):
                if not ao.HasField("type"):
                    an.ClearField("type")
                if ao.HasField("g") and an.HasField("g"):
                    walk(ao.g, an.g)
                for so, sn in zip(ao.graphs, an.graphs):
                    walk(so, sn)
    walk(orig.graph, new.graph)


# ---------------------------------------------------------------- onnxruntime
def feeds_for(sess, seed):
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 2 for d in i.shape]
        t = i.type
        if "float16" in t:
            feeds[i.name] = rng.standard_normal(shape).astype(np.float16)
        elif "double" in t:
            feeds[i.name] = rng.standard_normal(shape)
        elif "float" in t:
            feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
        elif "bool" in t:
            feeds[i.name] = np.array(rng.integers(0, 2, shape).astype(bool))
        elif "int64" in t:
            feeds[i.name] = rng.integers(0, 3, shape).astype(np.int64)
        elif "int32" in t:
            feeds[i.name] = rng.integers(0, 3, shape).astype(np.int32)
        else:
            return None
    return feeds


def same_outputs(a, b):
    if hasattr(a, "dense_shape"):  # onnxruntime SparseTensor
        ca, cb = a.get_coo_data(), b.get_coo_data()
        return (list(a.dense_shape()) == list(b.dense_shape()) and same_outputs(a.values(), b.values())
                and same_outputs(np.asarray(ca.indices()), np.asarray(cb.indices())))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, list):
        return len(a) == len(b) and all(same_outputs(x, y) for x, y in zip(a, b))
    return a == b


def run_ort(orig, new):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        s1 = ort.InferenceSession(orig, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - the original itself does not run
        return f"skipped (onnxruntime cannot load the original: {str(e).splitlines()[0][:100]})"
    s2 = ort.InferenceSession(new, opts, providers=["CPUExecutionProvider"])
    feeds = feeds_for(s1, 0)
    if feeds is None:
        return "skipped (input type)"
    # onnxruntime cannot hand bfloat16 to numpy; those tensors were compared above.
    names = [o.name for o in s1.get_outputs() if "bfloat16" not in o.type]
    o1, o2 = s1.run(names, feeds), s2.run(names, feeds)
    if len(o1) != len(o2) or not all(same_outputs(x, y) for x, y in zip(o1, o2)):
        raise AssertionError("onnxruntime outputs differ")
    return f"ort ok ({len(o1)} outputs bit-identical)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--roundtrip", required=True, help="the io_roundtrip binary")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gen = os.path.join(tmp, "gen")
        os.makedirs(gen)
        models = fixture_models() + helper_models(gen) + sklearn_models(gen)
        outs = [os.path.join(tmp, f"rt_{i}.onnx") for i in range(len(models))]
        cmd = [args.roundtrip] + [x for pair in zip(models, outs) for x in pair]
        subprocess.run(cmd, check=True)
        failures = 0
        for src, dst in zip(models, outs):
            name = os.path.relpath(src, ROOT) if src.startswith(ROOT) else os.path.basename(src)
            try:
                a, ta = normalise(src)
                b, tb = normalise(dst)
                strip_attr_types_where_undefined(a, b)
                if ta != tb:
                    raise AssertionError("tensor values differ")
                if a != b:
                    raise AssertionError(f"protobuf differs: {diff(a, b)}")
                onnx.checker.check_model(onnx.load(dst))
                status = run_ort(src, dst)
                print(f"ok   {name}: lossless, {len(ta)} tensors, {status}")
            except Exception as e:  # noqa: BLE001
                failures += 1
                print(f"FAIL {name}: {e}")
        print(f"{len(models) - failures}/{len(models)} models round-trip losslessly")
        sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

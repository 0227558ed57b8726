#!/usr/bin/env python3
"""Writes the small valid models of tests/fixtures/models/ and their reference values.

* light_*.onnx: copied from the onnx python package (onnx/backend/test/data/light).
* encodings.onnx: one initializer per dtype and per ONNX storage form (raw_data, the
  typed fields, scalars, zero-sized, sparse initializers with linear and coordinate
  indices) and `Constant` nodes in every attribute form, plus an `If` whose branches
  read outer-scope values. The reference value of each initializer (decoded by
  onnx.numpy_helper) and of each Constant output (computed by onnx's
  onnxruntime) is written to encodings/NAME.npy; float16/bfloat16 as their
  uint16 bit patterns in NAME.bits.npy.
* ext/ext_model.onnx + ext/weights.bin: tensors stored as external data at offsets.
* extras.onnx: the protobuf parts the IR keeps opaquely (a model-local function,
  training info, node metadata_props, attribute doc strings, quantization annotations,
  graph metadata, type denotations, a string-typed input) for the round-trip check.
* skl_*.onnx: scikit-learn models converted by skl2onnx (ai.onnx.ml ops, ZipMap's
  sequence(map) outputs).

Run from anywhere:  python3 scripts/make_model_fixtures.py
"""
import glob
import os
import shutil

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "models")


def save_ref(folder, name, arr):
    arr = np.asarray(arr)
    if arr.dtype.name in ("float16", "bfloat16"):
        np.save(os.path.join(folder, name + ".bits.npy"), arr.view(np.uint16))
    else:
        np.save(os.path.join(folder, name + ".npy"), arr)


def encodings():
    rng = np.random.default_rng(7)
    inits, sparse = [], []
    f = rng.standard_normal((2, 3)).astype(np.float32)
    inits.append(numpy_helper.from_array(f, "f32_raw"))
    inits.append(helper.make_tensor("f32_typed", TensorProto.FLOAT, [2, 3], f.flatten().tolist()))
    d = rng.standard_normal((3,))
    inits.append(helper.make_tensor("f64_typed", TensorProto.DOUBLE, [3], d.tolist()))
    inits.append(numpy_helper.from_array(d, "f64_raw"))
    for dt, np_dt, lo, hi in [
        (TensorProto.INT8, np.int8, -128, 128), (TensorProto.UINT8, np.uint8, 0, 256),
        (TensorProto.INT16, np.int16, -32768, 32768), (TensorProto.UINT16, np.uint16, 0, 65536),
        (TensorProto.INT32, np.int32, -2**31, 2**31), (TensorProto.INT64, np.int64, -2**63, 2**63),
    ]:
        v = rng.integers(lo, hi, size=(2, 2), dtype=np_dt)
        name = np.dtype(np_dt).name
        inits.append(helper.make_tensor(f"{name}_typed", dt, [2, 2], v.flatten().tolist()))
        inits.append(numpy_helper.from_array(v, f"{name}_raw"))
    b = np.array([True, False, True])
    inits.append(helper.make_tensor("bool_typed", TensorProto.BOOL, [3], b.tolist()))
    inits.append(numpy_helper.from_array(b, "bool_raw"))
    h = np.array([1.5, -2.0, 65504.0, 0.0], dtype=np.float16)
    inits.append(helper.make_tensor("f16_typed", TensorProto.FLOAT16, [4], h.tolist()))
    inits.append(helper.make_tensor("f16_raw", TensorProto.FLOAT16, [4], h.tobytes(), raw=True))
    bf = [1.0, -3.5, 0.15625, 1e30]
    inits.append(helper.make_tensor("bf16_typed", TensorProto.BFLOAT16, [4], bf))
    bits = (np.array(bf, dtype=np.float32).view(np.uint32) >> 16).astype("<u2")
    inits.append(helper.make_tensor("bf16_raw", TensorProto.BFLOAT16, [4], bits.tobytes(), raw=True))
    inits.append(helper.make_tensor("scalar_typed", TensorProto.FLOAT, [], [42.0]))
    inits.append(numpy_helper.from_array(np.array(7, dtype=np.int64), "scalar_raw"))
    inits.append(helper.make_tensor("empty_typed", TensorProto.FLOAT, [0, 3], []))
    inits.append(numpy_helper.from_array(np.zeros((3, 0), np.int32), "empty_raw"))
    sparse.append(helper.make_sparse_tensor(
        helper.make_tensor("sparse_linear", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0]),
        helper.make_tensor("sparse_linear_idx", TensorProto.INT64, [3], [0, 4, 11]), [3, 4]))
    sparse.append(helper.make_sparse_tensor(
        helper.make_tensor("sparse_coo", TensorProto.INT64, [2], [5, -6]),
        helper.make_tensor("sparse_coo_idx", TensorProto.INT64, [2, 2], [0, 1, 2, 0]), [3, 2]))

    names = [t.name for t in inits] + [s.values.name for s in sparse]
    nodes = [helper.make_node("Identity", [n], [n + "_out"]) for n in names]
    consts = {
        "c_value": dict(value=numpy_helper.from_array(f, "")),
        "c_value_float": dict(value_float=2.5),
        "c_value_floats": dict(value_floats=[1.0, -1.0, 0.5]),
        "c_value_int": dict(value_int=-9),
        "c_value_ints": dict(value_ints=[3, 1, 4, 1, 5]),
        "c_sparse_value": dict(sparse_value=helper.make_sparse_tensor(
            helper.make_tensor("", TensorProto.FLOAT, [2], [7.0, 8.0]),
            helper.make_tensor("", TensorProto.INT64, [2], [1, 3]), [2, 2])),
    }
    for out, attrs in consts.items():
        nodes.append(helper.make_node("Constant", [], [out], name=out, **attrs))
    # If with branches reading outer-scope values (f32_raw, c_value_float).
    then_g = helper.make_graph([helper.make_node("Mul", ["f32_raw", "c_value_float"], ["t"])], "then",
                               [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2, 3])])
    else_g = helper.make_graph([helper.make_node("Neg", ["f32_raw"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2, 3])])
    nodes.append(helper.make_node("If", ["cond"], ["if_out"], name="branch",
                                  then_branch=then_g, else_branch=else_g))
    outputs = [helper.make_tensor_value_info(t.name + "_out", t.data_type, list(t.dims)) for t in inits]
    outputs += [helper.make_tensor_value_info(s.values.name + "_out", s.values.data_type, list(s.dims))
                for s in sparse]
    ctypes = {"c_value_int": TensorProto.INT64, "c_value_ints": TensorProto.INT64}
    cshapes = {"c_value": [2, 3], "c_value_float": [], "c_value_floats": [3], "c_value_int": [],
               "c_value_ints": [5], "c_sparse_value": [2, 2]}
    outputs += [helper.make_tensor_value_info(c, ctypes.get(c, TensorProto.FLOAT), cshapes[c]) for c in consts]
    outputs.append(helper.make_tensor_value_info("if_out", TensorProto.FLOAT, [2, 3]))
    g = helper.make_graph(nodes, "encodings",
                          [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])], outputs,
                          initializer=inits, sparse_initializer=sparse, doc_string="every encoding")
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="make_model_fixtures.py",
                          doc_string="edgeml encoding fixture")
    helper.set_model_props(m, {"purpose": "tests", "owner": "edgeml"})
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(ROOT, "encodings.onnx"))
    ref = os.path.join(ROOT, "encodings")
    os.makedirs(ref)
    for t in inits:
        save_ref(ref, t.name, numpy_helper.to_array(t))
    for s in sparse:
        dense = numpy_helper.to_array(s.values)
        idx = numpy_helper.to_array(s.indices)
        out = np.zeros(int(np.prod(s.dims)), dtype=dense.dtype)
        lin = idx if idx.ndim == 1 else np.ravel_multi_index(idx.T, tuple(s.dims))
        out[lin] = dense
        save_ref(ref, s.values.name, out.reshape(tuple(s.dims)))
    # Evaluate the Constant nodes alone with onnxruntime (onnx's ReferenceEvaluator
    # neither takes sparse initializers nor densifies sparse_value).
    cg = helper.make_graph([n for n in nodes if n.op_type == "Constant"], "c", [],
                           [o for o in outputs if o.name in consts])
    cm = helper.make_model(cg, opset_imports=[helper.make_opsetid("", 17)])
    import onnxruntime as ort
    vals = ort.InferenceSession(cm.SerializeToString(), providers=["CPUExecutionProvider"]).run(list(consts), {})
    for name, v in zip(consts, vals):
        if hasattr(v, "dense_shape"):  # onnxruntime keeps sparse_value sparse
            coo = v.get_coo_data()
            shape = tuple(v.dense_shape())
            idx = np.asarray(coo.indices())
            dense = np.zeros(int(np.prod(shape)), dtype=np.asarray(v.values()).dtype)
            dense[idx if idx.ndim == 1 else np.ravel_multi_index(idx.T, shape)] = v.values()
            v = dense.reshape(shape)
        save_ref(ref, name, v)


def external():
    folder = os.path.join(ROOT, "ext")
    os.makedirs(folder)
    a = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    b = np.array([10, -20, 30], dtype=np.int64)
    with open(os.path.join(folder, "weights.bin"), "wb") as f:
        f.write(a.tobytes())
        f.write(b"\0" * 8)  # padding: the second tensor starts at offset 32
        f.write(b.tobytes())
    inits = []
    for name, arr, off in [("A", a, 0), ("B", b, 32)]:
        t = numpy_helper.from_array(arr, name)
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        for k, v in [("location", "weights.bin"), ("offset", str(off)), ("length", str(arr.nbytes))]:
            e = t.external_data.add()
            e.key, e.value = k, v
        inits.append(t)
    nodes = [helper.make_node("Identity", ["A"], ["a"]), helper.make_node("Identity", ["B"], ["b"])]
    g = helper.make_graph(nodes, "ext", [], [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3]),
                                             helper.make_tensor_value_info("b", TensorProto.INT64, [3])],
                          initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with open(os.path.join(folder, "ext_model.onnx"), "wb") as f:
        f.write(m.SerializeToString())
    np.save(os.path.join(folder, "A.npy"), a)
    np.save(os.path.join(folder, "B.npy"), b)


def extras():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])
    x.type.denotation = "TENSOR"
    x.type.tensor_type.shape.dim[1].denotation = "FEATURE"
    label = helper.make_tensor_value_info("label", TensorProto.STRING, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])
    fn = helper.make_function("custom", "Double", ["a"], ["b"],
                              [helper.make_node("Add", ["a", "a"], ["b"])],
                              [helper.make_opsetid("", 17)])
    call = helper.make_node("Double", ["x"], ["d"], domain="custom", name="call")
    leaky = helper.make_node("LeakyRelu", ["d"], ["y"], name="leaky", alpha=0.25)
    leaky.attribute[0].doc_string = "slope"
    entry = leaky.metadata_props.add()
    entry.key, entry.value = "origin", "test"
    g = helper.make_graph([call, leaky], "extras", [x, label], [y],
                          value_info=[helper.make_tensor_value_info("d", TensorProto.FLOAT, ["N", 2])])
    qa = g.quantization_annotation.add()
    qa.tensor_name = "d"
    e = qa.quant_parameter_tensor_names.add()
    e.key, e.value = "SCALE_TENSOR", "d_scale"
    gm = g.metadata_props.add()
    gm.key, gm.value = "graph_key", "graph_value"
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)],
                          functions=[fn], ir_version=10, producer_name="make_model_fixtures.py")
    ti = m.training_info.add()
    ti.algorithm.CopyFrom(helper.make_graph([helper.make_node("Neg", ["x"], ["z"])], "algo", [],
                                            [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)]))
    onnx.save(m, os.path.join(ROOT, "extras.onnx"))


def sklearn_models():
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeRegressor

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    onnx.save(to_onnx(clf, x[:1], target_opset={"": 17, "ai.onnx.ml": 3}),
              os.path.join(ROOT, "skl_logreg_pipeline.onnx"))
    reg = DecisionTreeRegressor(max_depth=3, random_state=0).fit(x, y.astype(np.float32))
    onnx.save(to_onnx(reg, x[:1], target_opset={"": 17, "ai.onnx.ml": 3}),
              os.path.join(ROOT, "skl_tree_regressor.onnx"))


def main():
    os.makedirs(ROOT, exist_ok=True)
    for p in glob.glob(os.path.join(ROOT, "*.onnx")):
        os.remove(p)
    for d in ("encodings", "ext"):
        shutil.rmtree(os.path.join(ROOT, d), ignore_errors=True)
    light = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    for p in sorted(glob.glob(os.path.join(light, "*.onnx"))):
        shutil.copy(p, ROOT)
    encodings()
    external()
    extras()
    sklearn_models()
    print("wrote", sorted(os.listdir(ROOT)))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Interop check of `edgeml optimize` against onnxruntime.

For each model: `edgeml optimize` at `--level basic` (and `extended` where listed)
writes the simplified model; the onnx checker must accept it, onnxruntime must run it
and give the original model's outputs (run by onnxruntime too) within 1e-4 relative
(atol 1e-6) on seeded random inputs, and optimizing the written model again must give
the same bytes (idempotence). Prints node counts and file sizes.

Usage: python3 scripts/optimize_interop.py EDGEML_BINARY   (numpy, onnx, onnxruntime)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "tests", "fixtures")
ort.set_default_logger_severity(3)

# (path under tests/fixtures, levels)
MODELS = [
    ("digits/cnn.onnx", ["basic", "extended"]),
    ("digits/mlp.onnx", ["basic"]),
    ("models/light_squeezenet.onnx", ["basic", "extended"]),
    ("models/light_resnet50.onnx", ["basic", "extended"]),
    ("models/light_inception_v1.onnx", ["basic"]),
    ("models/light_inception_v2.onnx", ["basic"]),
    ("models/light_shufflenet.onnx", ["basic", "extended"]),
    ("models/light_densenet121.onnx", ["basic"]),
    ("models/light_zfnet512.onnx", ["basic"]),
    ("models/light_bvlc_alexnet.onnx", ["basic"]),
    ("models/light_vgg19.onnx", ["basic"]),
    ("models/skl_tree_regressor.onnx", ["basic"]),
    # models/encodings.onnx is not here: it has a bfloat16 output, which onnxruntime's
    # Python API cannot return (no numpy type), and a sparse Constant edgeml does not
    # plan; it exists to exercise tensor encodings (edgeml-onnx/tests/io_encodings.rs).
    ("models/extras.onnx", ["basic"]),
    ("prune/resnet_block.onnx", ["basic", "extended"]),
    ("onnx-backend/converters/tf_cnn/model.onnx", ["basic", "extended"]),
    ("onnx-backend/converters/tf_rnn/model.onnx", ["basic"]),
    ("models/skl_logreg_pipeline.onnx", ["basic"]),
    ("onnx-backend/converters/paddle_ocr/model.onnx", ["basic", "extended"]),
    ("onnx-backend/pytorch-converted/test_Conv2d_groups/model.onnx", ["basic"]),
    # Written by `bn_model` below: BatchNormalization before a Conv and after Conv,
    # grouped ConvTranspose, Gemm and MatMul, Identity, Dropout, Constant and a foldable chain, at opset 13.
    ("<bn>", ["basic", "extended"]),
]


def bn_model(path):
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(1)
    inits, nodes = [], []

    def init(name, a):
        inits.append(numpy_helper.from_array(np.asarray(a, np.float32), name))

    def bn(x, y, c, tag):
        for k, (lo, hi) in zip(("s", "b", "m", "v"), ((0.5, 1.5), (-1, 1), (-0.5, 0.5), (0.1, 2))):
            init(f"{tag}_{k}", rng.uniform(lo, hi, c))
        nodes.append(helper.make_node("BatchNormalization", [x] + [f"{tag}_{k}" for k in "sbmv"], [y], epsilon=1e-3))

    bn("x", "n0", 3, "bn0")  # before an unpadded Conv: folds into it
    init("w1", rng.normal(0, 0.3, (4, 3, 3, 3)))
    init("b1", rng.normal(0, 0.3, 4))
    nodes.append(helper.make_node("Conv", ["n0", "w1", "b1"], ["c1"]))
    bn("c1", "n1", 4, "bn1")
    nodes.append(helper.make_node("Relu", ["n1"], ["r1"]))
    nodes.append(helper.make_node("Identity", ["r1"], ["i1"]))
    init("wt", rng.normal(0, 0.3, (4, 1, 2, 2)))  # grouped: output channel g reads group g's rows
    nodes.append(helper.make_node("ConvTranspose", ["i1", "wt"], ["t1"], strides=[2, 2], group=2))
    bn("t1", "n2", 2, "bn2")
    nodes.append(helper.make_node("Dropout", ["n2"], ["d1"]))
    nodes.append(helper.make_node("Flatten", ["d1"], ["f1"]))
    init("wg", rng.normal(0, 0.1, (5, 512)))
    init("cg", rng.normal(0, 0.1, 5))
    nodes.append(helper.make_node("Gemm", ["f1", "wg", "cg"], ["g1"], transB=1, alpha=0.5))
    bn("g1", "n3", 5, "bn3")
    nodes.append(helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(rng.normal(0, 1, (5, 3)).astype(np.float32))))
    nodes.append(helper.make_node("Exp", ["k"], ["ek"]))
    nodes.append(helper.make_node("MatMul", ["n3", "ek"], ["mm"]))
    bn("mm", "y", 3, "bn4")
    g = helper.make_graph(nodes, "bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 10, 10])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(m)
    onnx.save(m, path)

NP = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 8: np.object_, 9: np.bool_,
      10: np.float16, 11: np.float64}


def inputs(path, rng):
    m = onnx.load(path)
    inits = {i.name for i in m.graph.initializer}
    feed = {}
    for i in m.graph.input:
        if i.name in inits:
            continue
        t = i.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in t.shape.dim]
        dt = NP[t.elem_type]
        if dt in (np.float16, np.float32, np.float64):
            feed[i.name] = rng.uniform(-1, 1, shape).astype(dt)
        elif dt is np.object_:
            feed[i.name] = np.full(shape, "a", dtype=object)
        else:
            feed[i.name] = np.zeros(shape, dt)
    return feed


def run(path, feed):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return [o.name for o in s.get_outputs()], s.run(None, feed)


def main():
    binary = sys.argv[1]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for rel, levels in MODELS:
            src = os.path.join(FIX, rel)
            if rel == "<bn>":
                src = os.path.join(tmp, "bn.onnx")
                bn_model(src)
            feed = inputs(src, rng)
            names, want = run(src, feed)
            for level in levels:
                out = os.path.join(tmp, "opt.onnx")
                again = os.path.join(tmp, "opt2.onnx")
                subprocess.run([binary, "optimize", src, "-o", out, "--level", level],
                               check=True, stdout=subprocess.DEVNULL)
                onnx.checker.check_model(onnx.load(out))
                got_names, got = run(out, feed)
                assert got_names == names, (rel, got_names, names)
                for n, g, w in zip(names, got, want):
                    if not isinstance(w, np.ndarray):  # e.g. ZipMap's list of dicts
                        assert g == w, (rel, n)
                        continue
                    assert g.shape == w.shape and g.dtype == w.dtype, (rel, n, g.shape, w.shape)
                    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6, err_msg=f"{rel} {level} {n}")
                subprocess.run([binary, "optimize", out, "-o", again, "--level", level],
                               check=True, stdout=subprocess.DEVNULL)
                with open(out, "rb") as a, open(again, "rb") as b:
                    assert a.read() == b.read(), f"{rel} {level}: a second optimize changed the model"
                before = len(onnx.load(src).graph.node)
                after = len(onnx.load(out).graph.node)
                if rel == "<bn>":
                    left = [n.op_type for n in onnx.load(out).graph.node if n.op_type == "BatchNormalization"]
                    assert not left, f"{level}: every BatchNormalization folds, {len(left)} left"
                print(f"{rel} [{level}]: onnxruntime outputs match (rtol 1e-4), idempotent; "
                      f"nodes {before} -> {after}, file {os.path.getsize(src)} -> {os.path.getsize(out)} bytes")
        # External data: the light SqueezeNet with its initializers in model.onnx.data;
        # the onnx checker (by path) and onnxruntime read it, outputs as the original.
        src = os.path.join(FIX, "models/light_squeezenet.onnx")
        feed = inputs(src, rng)
        names, want = run(src, feed)
        out = os.path.join(tmp, "ext", "model.onnx")
        os.makedirs(os.path.dirname(out))
        subprocess.run([binary, "optimize", src, "-o", out, "--external-data"],
                       check=True, stdout=subprocess.DEVNULL)
        onnx.checker.check_model(out)
        got_names, got = run(out, feed)
        assert got_names == names
        for n, g, w in zip(names, got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6, err_msg=f"external data {n}")
        data = os.path.getsize(out + ".data")
        print(f"--external-data: model {os.path.getsize(out)} bytes + model.onnx.data {data} bytes; "
              "onnx checker and onnxruntime read it, outputs match (rtol 1e-4)")


if __name__ == "__main__":
    main()

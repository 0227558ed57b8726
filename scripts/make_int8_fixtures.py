#!/usr/bin/env python3
"""Writes onnxruntime reference outputs for the edgeml-quant INT8 kernels.

Each case becomes tests/fixtures/int8/<name>.txt, a plain-text file read by
edgeml-quant/tests/ort_fixtures.rs (no Python needed at test time):

    op <OpType>
    attr <name> <int> <int> ...          (conv attributes)
    tensor <name> <dtype> <ndim> <dims...> : <values...>

Tensors: inputs as fed to onnxruntime, `ort` (onnxruntime's output) and, for the
integer ops, `exact` (numpy int64 reference). Run: python3 scripts/make_int8_fixtures.py
"""
import os
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "int8")
rng = np.random.default_rng(20241125)
TP = {np.uint8: TensorProto.UINT8, np.int8: TensorProto.INT8, np.int32: TensorProto.INT32,
      np.float32: TensorProto.FLOAT}
NAME = {np.uint8: "u8", np.int8: "i8", np.int32: "i32", np.float32: "f32"}


def run(op, inputs, out_dtype, attrs=None, opset=13):
    """Runs a one-node model on onnxruntime (CPU, one thread). `inputs`: list of (name, array)."""
    names = [n for n, _ in inputs]
    node = helper.make_node(op, names, ["Y"], **(attrs or {}))
    vi = [helper.make_tensor_value_info(n, TP[a.dtype.type], list(a.shape)) for n, a in inputs]
    g = helper.make_graph([node], "g", vi, [helper.make_tensor_value_info("Y", TP[out_dtype], None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {n: a for n, a in inputs})[0]


def write(name, op, tensors, attrs=None):
    with open(os.path.join(OUT, name + ".txt"), "w") as f:
        f.write(f"op {op}\n")
        for k, v in (attrs or {}).items():
            f.write(f"attr {k} {' '.join(str(int(x)) for x in np.atleast_1d(v))}\n")
        for n, a in tensors:
            a = np.asarray(a)
            vals = " ".join(repr(float(x)) if a.dtype == np.float32 else str(int(x)) for x in a.ravel())
            f.write(f"tensor {n} {NAME[a.dtype.type]} {a.ndim} {' '.join(map(str, a.shape))} : {vals}\n")


def matmul_exact(a, za, b, zb):
    return ((a.astype(np.int64) - np.int64(za)) @ (b.astype(np.int64) - zb.astype(np.int64))).astype(np.int32)


def matmul_integer(name, m, n, k, bdt, per_col, worst=False):
    if worst:
        a = np.full((m, k), 255, np.uint8)
        b = np.where((np.arange(k)[:, None] + np.arange(n)[None, :]) % 2 == 0, -128, 127).astype(np.int8)
        b[1::2] = -128
        za = np.uint8(0)
        zb = np.zeros(n if per_col else (), np.int8)
    else:
        a = rng.integers(0, 256, (m, k)).astype(np.uint8)
        # Weights in a 7-bit range so that no onnxruntime path can saturate.
        lo, hi = (-64, 64) if bdt == np.int8 else (64, 192)
        b = rng.integers(lo, hi, (k, n)).astype(bdt)
        za = np.uint8(rng.integers(0, 256))
        zb = rng.integers(lo, hi, (n,) if per_col else ()).astype(bdt)
    ins = [("A", a), ("B", b), ("a_zero_point", np.array(za, np.uint8)), ("b_zero_point", np.asarray(zb, bdt))]
    y = run("MatMulInteger", ins, np.int32, opset=10)
    exact = matmul_exact(a, za, b, np.asarray(zb))
    write(name, "MatMulInteger", ins + [("ort", y), ("exact", exact)])
    return y, exact


def qlinear_matmul(name, m, n, k):
    a = rng.integers(0, 256, (m, k)).astype(np.uint8)
    b = rng.integers(-64, 64, (k, n)).astype(np.int8)
    a_s, a_z = np.float32(0.02), np.uint8(131)
    b_s = (rng.random(n).astype(np.float32) * 0.01 + 0.002).astype(np.float32)
    b_z = np.zeros(n, np.int8)
    y_s, y_z = np.float32(0.05), np.uint8(120)
    ins = [("a", a), ("a_scale", np.array(a_s)), ("a_zero_point", np.array(a_z)), ("b", b),
           ("b_scale", b_s), ("b_zero_point", b_z), ("y_scale", np.array(y_s)), ("y_zero_point", np.array(y_z))]
    y = run("QLinearMatMul", ins, np.uint8, opset=21)
    write(name, "QLinearMatMul", ins + [("ort", y)])


def conv(name, op, n, ci, co, h, w, k, group, strides, pads, dil, xdt=np.uint8, wdt=np.int8, per_ch=True):
    x = rng.integers(0, 256, (n, ci, h, w)).astype(xdt) if xdt == np.uint8 else rng.integers(-128, 128, (n, ci, h, w)).astype(xdt)
    wlo, whi = (-64, 64) if wdt == np.int8 else (64, 192)
    wt = rng.integers(wlo, whi, (co, ci // group, k, k)).astype(wdt)
    attrs = {"group": group, "strides": strides, "pads": pads, "dilations": dil, "kernel_shape": [k, k]}
    xz = np.asarray(rng.integers(0, 256) if xdt == np.uint8 else rng.integers(-128, 128), xdt)
    if op == "ConvInteger":
        wz = np.asarray(rng.integers(wlo, whi), wdt)
        ins = [("x", x), ("w", wt), ("x_zero_point", xz), ("w_zero_point", wz)]
        y = run(op, ins, np.int32, attrs, opset=10)
    else:
        wz = np.zeros(co if per_ch else (), wdt)
        ws = (rng.random(co if per_ch else ()).astype(np.float32) * 0.01 + 0.002).astype(np.float32)
        bias = rng.integers(-5000, 5000, co).astype(np.int32)
        ins = [("x", x), ("x_scale", np.array(0.02, np.float32)), ("x_zero_point", xz), ("w", wt),
               ("w_scale", np.asarray(ws)), ("w_zero_point", wz), ("y_scale", np.array(0.1, np.float32)),
               ("y_zero_point", np.array(110, np.uint8)), ("B", bias)]
        y = run(op, ins, np.uint8, attrs, opset=10)
    write(name, op, ins + [("ort", y)], {k: v for k, v in attrs.items() if k != "kernel_shape"})


def main():
    os.makedirs(OUT, exist_ok=True)
    matmul_integer("matmulinteger_u8s8", 7, 33, 19, np.int8, False)
    matmul_integer("matmulinteger_u8s8_percol", 5, 70, 64, np.int8, True)
    matmul_integer("matmulinteger_u8u8", 9, 17, 40, np.uint8, False)
    y, exact = matmul_integer("matmulinteger_u8s8_worst", 3, 16, 64, np.int8, False, worst=True)
    print("worst case: onnxruntime", "matches" if np.array_equal(y, exact) else "DIFFERS from",
          "the exact result on this machine;", f"max |diff| = {np.abs(y.astype(np.int64) - exact).max()}")
    qlinear_matmul("qlinearmatmul_u8s8", 6, 40, 50)
    conv("qlinearconv_3x3", "QLinearConv", 1, 8, 12, 9, 10, 3, 1, [1, 1], [1, 1, 1, 1], [1, 1])
    conv("qlinearconv_strided_grouped", "QLinearConv", 2, 6, 4, 11, 9, 3, 2, [2, 2], [1, 0, 1, 2], [1, 1])
    conv("qlinearconv_depthwise", "QLinearConv", 1, 8, 8, 12, 12, 3, 8, [1, 1], [1, 1, 1, 1], [1, 1])
    conv("qlinearconv_1x1", "QLinearConv", 1, 16, 24, 6, 7, 1, 1, [1, 1], [0, 0, 0, 0], [1, 1])
    conv("convinteger_dilated", "ConvInteger", 1, 4, 6, 10, 10, 3, 1, [1, 1], [2, 2, 2, 2], [2, 2], wdt=np.uint8)


if __name__ == "__main__":
    main()

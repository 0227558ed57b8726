#!/usr/bin/env python3
"""Build one small ONNX model per quantized-operator case, run it with onnxruntime, and
store model + inputs + outputs under tests/fixtures/qops/<case>/ (same layout as
tests/fixtures/ops/):

    model.onnx   the single-node model, built with onnx.helper
    in0.npy ...  runtime inputs, in graph-input order (initializers excluded)
    out0.npy ... onnxruntime's outputs, in graph-output order

edgeml-quant/tests/onnx_ops.rs runs every case and compares: integers exactly, floats
to 1e-5 relative. Set EDGEML_QOPS_FIXTURES to write elsewhere (CI regenerates them with
the installed onnxruntime into a temporary folder and re-runs the test on those).

The s8 weight operands of u8 x s8 products (`w8`) are 7-bit (-64..63) on CPUs where
onnxruntime's u8 x s8 kernels saturate 16-bit pair sums (x86-64 without VNNI;
scripts/ort_exact.py), so that its outputs there are the exact results; elsewhere they
span -128..127 (the committed fixtures).

Usage: python3 scripts/make_qop_fixtures.py   (numpy, onnx, onnxruntime)
"""

import os
import shutil
import sys

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.environ.get("EDGEML_QOPS_FIXTURES") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "qops")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ort_exact import u8s8_exact  # noqa: E402

RNG = np.random.default_rng(20261205)
W8 = (-128, 128) if u8s8_exact() else (-64, 64)
ort.set_default_logger_severity(3)
F, U8, I8, I32 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32
NP2ONNX = {np.dtype("float32"): F, np.dtype("uint8"): U8, np.dtype("int8"): I8,
           np.dtype("int32"): I32, np.dtype("int64"): TensorProto.INT64}
CASES = []
MS = "com.microsoft"


def case(name, op, feeds, inits=(), attrs=None, outputs=(("y", F),), opset=13, inputs=None, domain="",
         extra=None):
    names = inputs if inputs is not None else [n for n, _ in feeds] + [n for n, _ in inits]
    node = helper.make_node(op, names, [n for n, _ in outputs], domain=domain or None, **(attrs or {}))
    g = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, NP2ONNX[a.dtype], list(a.shape)) for n, a in feeds],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs],
        [numpy_helper.from_array(a, n) for n, a in inits])
    ops = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(MS, 1)] if domain else [])
    m = helper.make_model(g, opset_imports=ops, ir_version=8 if opset <= 17 else 10)
    CASES.append((name, m, feeds, extra or {}))


def graph_case(name, nodes, feeds, inits, outputs, opset=13, extra=None, ms=False):
    """A multi-node model (QDQ groups): run by onnxruntime with graph optimizations off,
    so the reference is the float operator between DequantizeLinear and QuantizeLinear."""
    g = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(n, NP2ONNX[a.dtype], list(a.shape)) for n, a in feeds],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs],
        [numpy_helper.from_array(a, n) for n, a in inits])
    ops = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(MS, 1)] if ms else [])
    m = helper.make_model(g, opset_imports=ops, ir_version=8 if opset <= 17 else 10)
    CASES.append((name, m, feeds, dict(extra or {}, unoptimized=True)))


def u8(*s):
    return RNG.integers(0, 256, s).astype(np.uint8)


def i8(*s):
    return RNG.integers(-128, 128, s).astype(np.int8)


def w8(*s):
    """The s8 weight operand of a u8 x s8 product (7-bit where onnxruntime saturates)."""
    return RNG.integers(*W8, s).astype(np.int8)


def f(*s, lo=-3.0, hi=3.0):
    return RNG.uniform(lo, hi, s).astype(np.float32)


def sc(v):
    return np.array(v, np.float32)


def qdq():
    x = f(2, 3, 4, 5)
    # Ties at .5 steps, saturation, NaN-free extremes.
    x.flat[:8] = [0.05, 0.15, -0.05, -0.15, 100.0, -100.0, 0.25, 0.35]
    case("q_u8_tensor", "QuantizeLinear", [("x", x)], [("s", sc(0.1)), ("z", np.array(128, np.uint8))],
         outputs=[("y", U8)], opset=10)
    case("q_i8_tensor", "QuantizeLinear", [("x", x)], [("s", sc(0.05)), ("z", np.array(-3, np.int8))],
         outputs=[("y", I8)])
    case("q_i8_axis1", "QuantizeLinear", [("x", x)],
         [("s", f(3, lo=0.01, hi=0.1)), ("z", i8(3))], {"axis": 1}, outputs=[("y", I8)])
    case("q_u8_axis_neg", "QuantizeLinear", [("x", x)],
         [("s", f(5, lo=0.01, hi=0.1)), ("z", u8(5))], {"axis": -1}, outputs=[("y", U8)])
    case("q_no_zp", "QuantizeLinear", [("x", x)], [("s", sc(0.02))], outputs=[("y", U8)])
    case("q_opset21_i8_dtype", "QuantizeLinear", [("x", x)], [("s", sc(0.02))],
         {"output_dtype": I8}, outputs=[("y", I8)], opset=21)
    case("dq_u8_tensor", "DequantizeLinear", [("x", u8(2, 3, 4))], [("s", sc(0.1)), ("z", np.array(7, np.uint8))],
         opset=10)
    case("dq_i8_axis0", "DequantizeLinear", [("x", i8(4, 3))], [("s", f(4, lo=0.01, hi=1)), ("z", i8(4))],
         {"axis": 0})
    case("dq_i32_bias", "DequantizeLinear", [("x", RNG.integers(-10**6, 10**6, (6,)).astype(np.int32))],
         [("s", sc(0.001)), ("z", np.array(0, np.int32))])
    case("dynamic_quantize", "DynamicQuantizeLinear", [("x", f(3, 7, lo=-1.0, hi=5.0))], opset=11,
         outputs=[("y", U8), ("ys", F), ("yz", U8)])
    case("dynamic_quantize_positive", "DynamicQuantizeLinear", [("x", f(10, lo=0.5, hi=2.0))], opset=11,
         outputs=[("y", U8), ("ys", F), ("yz", U8)])


def matmul():
    a, b = u8(5, 40), w8(40, 9)
    case("qlinear_matmul_u8i8", "QLinearMatMul", [("a", a)],
         [("as", sc(0.02)), ("az", np.array(120, np.uint8)), ("b", b), ("bs", sc(0.01)),
          ("bz", np.array(0, np.int8)), ("ys", sc(0.3)), ("yz", np.array(100, np.uint8))],
         outputs=[("y", U8)], opset=10)
    case("qlinear_matmul_batched_runtime_b", "QLinearMatMul",
         [("a", i8(2, 3, 6, 16)), ("b", i8(3, 16, 5))],
         [("as", sc(0.05)), ("az", np.array(1, np.int8)), ("bs", sc(0.02)),
          ("bz", np.array(0, np.int8)), ("ys", sc(0.5)), ("yz", np.array(-2, np.int8))],
         outputs=[("y", I8)], inputs=["a", "as", "az", "b", "bs", "bz", "ys", "yz"], opset=10)
    case("qlinear_matmul_per_column", "QLinearMatMul", [("a", u8(4, 32))],
         [("as", sc(0.02)), ("az", np.array(128, np.uint8)), ("b", w8(32, 6)), ("bs", f(6, lo=0.005, hi=0.02)),
          ("bz", np.zeros(6, np.int8)), ("ys", sc(0.4)), ("yz", np.array(128, np.uint8))],
         outputs=[("y", U8)], opset=21)
    case("matmul_integer_u8i8", "MatMulInteger", [("a", u8(3, 4, 33))],
         [("b", w8(33, 7)), ("az", np.array(128, np.uint8)), ("bz", np.array(3, np.int8))],
         outputs=[("y", I32)], opset=10)
    case("matmul_integer_u8u8_runtime", "MatMulInteger", [("a", u8(6, 20)), ("b", u8(20, 3))],
         [("az", np.array(5, np.uint8)), ("bz", np.array(250, np.uint8))], outputs=[("y", I32)], opset=10)
    case("matmul_integer_1d_a", "MatMulInteger", [("a", u8(12))], [("b", w8(12, 4))], outputs=[("y", I32)],
         opset=10)
    case("matmul_integer_per_column_zp", "MatMulInteger", [("a", u8(2, 8))],
         [("b", w8(8, 5)), ("az", np.array(3, np.uint8)), ("bz", i8(5))], outputs=[("y", I32)], opset=10)
    # The worst case for vpmaddubsw-based kernels: A = 255, B alternating -128/127.
    k = 64
    bw = np.tile(np.array([[-128], [127]], np.int8), (k // 2, 8))
    case("matmul_integer_saturation_worst_case", "MatMulInteger", [("a", np.full((4, k), 255, np.uint8))],
         [("b", bw)], outputs=[("y", I32)], opset=10)
    case("matmul_integer_to_float", "MatMulIntegerToFloat", [("a", u8(3, 24))],
         [("b", w8(24, 6)), ("as", sc(0.03)), ("bs", f(6, lo=0.01, hi=0.03)), ("az", np.array(100, np.uint8)),
          ("bz", np.zeros(6, np.int8)), ("bias", f(6))], domain=MS)
    case("dynamic_quantize_matmul", "DynamicQuantizeMatMul", [("a", f(4, 30))],
         [("b", w8(30, 7)), ("bs", sc(0.02)), ("bz", np.array(0, np.int8)), ("bias", f(7))], domain=MS)
    case("qgemm_transb_bias_u8", "QGemm", [("a", u8(5, 18))],
         [("as", sc(0.02)), ("az", np.array(130, np.uint8)), ("b", w8(7, 18)), ("bs", f(7, lo=0.005, hi=0.02)),
          ("bz", np.zeros(7, np.int8)), ("c", RNG.integers(-2000, 2000, 7).astype(np.int32)),
          ("ys", sc(0.2)), ("yz", np.array(90, np.uint8))], {"transB": 1}, outputs=[("y", U8)], domain=MS)
    case("qgemm_float_out", "QGemm", [("a", u8(3, 10))],
         [("as", sc(0.02)), ("az", np.array(130, np.uint8)), ("b", w8(10, 4)), ("bs", sc(0.01)),
          ("bz", np.array(0, np.int8))], {"alpha": 0.5}, domain=MS)


def conv():
    x = u8(1, 8, 9, 11)
    w = w8(16, 8, 3, 3)
    base = [("xs", sc(0.02)), ("xz", np.array(128, np.uint8)), ("w", w), ("ws", f(16, lo=0.002, hi=0.01)),
            ("wz", np.zeros(16, np.int8)), ("ys", sc(0.1)), ("yz", np.array(120, np.uint8)),
            ("b", RNG.integers(-3000, 3000, 16).astype(np.int32))]
    case("qlinear_conv_3x3_pads_bias", "QLinearConv", [("x", x)], base, {"pads": [1, 1, 1, 1]},
         outputs=[("y", U8)], opset=10)
    case("qlinear_conv_stride2_same_upper", "QLinearConv", [("x", x)], base,
         {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, outputs=[("y", U8)], opset=10)
    case("qlinear_conv_dilated_asym", "QLinearConv", [("x", x)], base,
         {"dilations": [2, 1], "pads": [0, 2, 1, 0]}, outputs=[("y", U8)], opset=10)
    wd = i8(8, 1, 3, 3)
    case("qlinear_conv_depthwise_i8", "QLinearConv", [("x", i8(2, 8, 7, 7))],
         [("xs", sc(0.05)), ("xz", np.array(-5, np.int8)), ("w", wd), ("ws", sc(0.01)),
          ("wz", np.array(0, np.int8)), ("ys", sc(0.2)), ("yz", np.array(3, np.int8))],
         {"group": 8, "pads": [1, 1, 1, 1]}, outputs=[("y", I8)], opset=10)
    case("qlinear_conv_grouped", "QLinearConv", [("x", x)],
         [("xs", sc(0.02)), ("xz", np.array(128, np.uint8)), ("w", w8(8, 4, 1, 1)), ("ws", sc(0.01)),
          ("wz", np.array(0, np.int8)), ("ys", sc(0.1)), ("yz", np.array(128, np.uint8))],
         {"group": 2}, outputs=[("y", U8)], opset=10)
    case("qlinear_conv_1d", "QLinearConv", [("x", u8(2, 4, 20))],
         [("xs", sc(0.02)), ("xz", np.array(128, np.uint8)), ("w", w8(6, 4, 5)), ("ws", sc(0.01)),
          ("wz", np.array(0, np.int8)), ("ys", sc(0.1)), ("yz", np.array(128, np.uint8))],
         {"pads": [2, 2], "strides": [2]}, outputs=[("y", U8)], opset=10)
    case("conv_integer_u8", "ConvInteger", [("x", u8(1, 3, 6, 6))],
         [("w", w8(4, 3, 3, 3)), ("xz", np.array(100, np.uint8)), ("wz", np.array(0, np.int8))],
         {"pads": [1, 1, 1, 1]}, outputs=[("y", I32)], opset=10)
    case("conv_integer_runtime_weights", "ConvInteger", [("x", u8(1, 3, 6, 6)), ("w", u8(4, 3, 2, 2))],
         [("xz", np.array(100, np.uint8)), ("wz", np.array(128, np.uint8))], outputs=[("y", I32)], opset=10)


def write_extra(d, extra, outs, feeds):
    """The files beside a case that tell edgeml-quant/tests/onnx_ops.rs how to check it:
    fuse.txt    `fuse_qdq` runs first and must fuse these (lines "<op> <count>");
    exact0.npy  our output must equal it exactly (numpy's evaluation of the definition);
    steps.txt   integer outputs may differ from onnxruntime's by one step on at most
                this many elements (where onnxruntime's f32 approximations of the
                function land on the other side of a rounding tie than the definition);
    tol.txt     float outputs: absolute tolerance (one quantization step of the output)."""
    if "fuse" in extra:
        with open(os.path.join(d, "fuse.txt"), "w") as fh:
            fh.write("".join(f"{k} {v}\n" for k, v in extra["fuse"].items()))
    if "exact" in extra:
        exact = extra["exact"](*[a for _, a in feeds])
        np.save(os.path.join(d, "exact0.npy"), exact)
        off = np.abs(exact.astype(np.int32) - outs[0].astype(np.int32))
        assert off.max() <= 1, f"{d}: numpy reference and onnxruntime differ by {off.max()} steps"
        with open(os.path.join(d, "steps.txt"), "w") as fh:
            fh.write(f"{int((off != 0).sum())}\n")
    elif "steps" in extra:
        with open(os.path.join(d, "steps.txt"), "w") as fh:
            fh.write(f"{extra['steps']}\n")
    if "tol" in extra:
        with open(os.path.join(d, "tol.txt"), "w") as fh:
            fh.write(f"{extra['tol']!r}\n")


def main():
    qdq()
    matmul()
    conv()
    from make_qop_fixtures_lut import lut_cases, exact_op_cases, fused_model_case
    lut_cases(case, graph_case)
    exact_op_cases(case, graph_case)
    fused_model_case(CASES)
    if os.path.isdir(ROOT) and not os.environ.get("EDGEML_QOPS_FIXTURES"):
        shutil.rmtree(ROOT)
    os.makedirs(ROOT, exist_ok=True)
    for name, m, feeds, extra in CASES:
        d = os.path.join(ROOT, name)
        os.makedirs(d, exist_ok=True)
        data = m.SerializeToString()
        so = ort.SessionOptions()
        if extra.get("unoptimized"):
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        outs = sess.run(None, {n: a for n, a in feeds})
        write_extra(d, extra, outs, feeds)
        with open(os.path.join(d, "model.onnx"), "wb") as fh:
            fh.write(data)
        for i, (_, a) in enumerate(feeds):
            np.save(os.path.join(d, f"in{i}.npy"), a)
        for i, o in enumerate(outs):
            np.save(os.path.join(d, f"out{i}.npy"), o)
    print(f"wrote {len(CASES)} cases to {ROOT}")


if __name__ == "__main__":
    main()

"""Cases of scripts/make_qop_fixtures.py for the table-driven activations, the 8-bit pools
and the exact operators on u8/i8 tensors, alone (QOperator) and as QDQ groups that
`fuse_qdq` must fuse; and one small Conv -> activation -> Conv model quantized with
onnxruntime.quantization.quantize_static. Imported by make_qop_fixtures.py.

Every activation case feeds all 256 codes. Its `exact0.npy` is numpy's evaluation of the
definition the tables implement (dequantize in f32, the function in f64 rounded to f32,
divide by y_scale in f32, round half to even, add y_zp, saturate); onnxruntime evaluates
the function with f32 approximations, and `steps.txt` counts the codes where it lands one
step away from the definition.
"""

import math
import os
import tempfile

import numpy as np
import onnxruntime as ort
from ort_exact import u8s8_exact
from onnx import TensorProto, helper, numpy_helper

F, U8, I8 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT8
MS = "com.microsoft"
RNG = np.random.default_rng(20261206)
SQRT1_2 = 1.0 / math.sqrt(2.0)
ERFC = np.vectorize(math.erfc)

ACTS = {
    "Sigmoid": lambda v, a: 1.0 / (1.0 + np.exp(-v)),
    "HardSigmoid": lambda v, a: np.clip(np.float64(np.float32(a.get("alpha", 0.2))) * v
                                        + np.float64(np.float32(a.get("beta", 0.5))), 0.0, 1.0),
    "HardSwish": lambda v, a: v * np.clip(v / 6.0 + 0.5, 0.0, 1.0),
    "Tanh": lambda v, a: np.tanh(v),
    "Gelu": lambda v, a: (0.5 * v * ERFC(-v * SQRT1_2) if a.get("approximate", "none") == "none"
                          else 0.5 * v * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v ** 3)))),
    "LeakyRelu": lambda v, a: np.where(v >= 0, v, np.float64(np.float32(a.get("alpha", 0.01))) * v),
    "Relu": lambda v, a: np.maximum(v, 0.0),
    "Clip": lambda v, a: np.clip(v, np.float64(np.float32(a["min"])), np.float64(np.float32(a["max"]))),
}


def codes(dtype, shape=(4, 64)):
    lo = 0 if dtype == np.uint8 else -128
    return np.arange(lo, lo + 256).astype(dtype).reshape(shape)


def zp(v, dtype):
    return np.array(v, dtype)


def exact_fn(op, attrs, sx, zx, sy, zy, out_dtype):
    def go(x):
        xf = (x.astype(np.int32) - int(zx)).astype(np.float32) * np.float32(sx)
        g = ACTS[op](xf.astype(np.float64), attrs).astype(np.float32)
        info = np.iinfo(out_dtype)
        q = np.round(g / np.float32(sy)).astype(np.float64) + int(zy)
        return np.clip(q, info.min, info.max).astype(out_dtype)
    return go


def lut_cases(case, graph_case):
    # QOperator: onnxruntime's own table kernels.
    for name, dt, sx, zx, sy, zy in [
        ("u8", np.uint8, 0.05, 128, 1.0 / 256, 0),
        ("i8", np.int8, 0.04, -3, 1.0 / 256, -128),
    ]:
        t = U8 if dt == np.uint8 else I8
        case(f"qlinear_sigmoid_{name}", "QLinearSigmoid", [("x", codes(dt))],
             [("xs", np.float32(sx)), ("xz", zp(zx, dt)), ("ys", np.float32(sy)), ("yz", zp(zy, dt))],
             outputs=[("y", t)], domain=MS, extra={"exact": exact_fn("Sigmoid", {}, sx, zx, sy, zy, dt)})
    case("qlinear_sigmoid_no_zero_points", "QLinearSigmoid", [("x", codes(np.uint8))],
         [("xs", np.float32(0.03)), ("ys", np.float32(1.0 / 255))], inputs=["x", "xs", "", "ys", ""],
         outputs=[("y", U8)], domain=MS, extra={"exact": exact_fn("Sigmoid", {}, 0.03, 0, 1.0 / 255, 0, np.uint8)})
    case("qlinear_leaky_relu_u8", "QLinearLeakyRelu", [("x", codes(np.uint8))],
         [("xs", np.float32(0.05)), ("xz", zp(128, np.uint8)), ("ys", np.float32(0.03)), ("yz", zp(22, np.uint8))],
         {"alpha": 0.1}, outputs=[("y", U8)], domain=MS,
         extra={"exact": exact_fn("LeakyRelu", {"alpha": 0.1}, 0.05, 128, 0.03, 22, np.uint8)})
    # alpha = 0.5 with x_scale = y_scale: every odd negative code is a rounding tie.
    case("qlinear_leaky_relu_i8_ties", "QLinearLeakyRelu", [("x", codes(np.int8))],
         [("xs", np.float32(0.1)), ("xz", zp(0, np.int8)), ("ys", np.float32(0.1)), ("yz", zp(0, np.int8))],
         {"alpha": 0.5}, outputs=[("y", I8)], domain=MS,
         extra={"exact": exact_fn("LeakyRelu", {"alpha": 0.5}, 0.1, 0, 0.1, 0, np.int8)})

    # QDQ groups: DQ -> activation -> Q, fused by fuse_qdq into com.edgeml QLinearLookup.
    groups = [
        ("sigmoid_u8", "Sigmoid", {}, "", 13, np.uint8, 0.05, 128, np.uint8, 1.0 / 256, 0),
        ("hardsigmoid_i8", "HardSigmoid", {"alpha": 0.25, "beta": 0.4}, "", 13, np.int8, 0.03, 5,
         np.int8, 1.0 / 255, -128),
        ("hardswish_u8", "HardSwish", {}, "", 14, np.uint8, 0.05, 128, np.uint8, 0.03, 13),
        ("tanh_i8", "Tanh", {}, "", 13, np.int8, 0.02, 0, np.int8, 1.0 / 128, 0),
        ("gelu_none_u8", "Gelu", {}, "", 20, np.uint8, 0.05, 128, np.uint8, 0.03, 10),
        ("gelu_tanh_i8", "Gelu", {"approximate": "tanh"}, "", 20, np.int8, 0.04, 0, np.int8, 0.025, -120),
        ("gelu_com_microsoft_u8", "Gelu", {}, MS, 13, np.uint8, 0.05, 128, np.uint8, 0.03, 10),
        ("leaky_relu_u8_to_i8", "LeakyRelu", {"alpha": 0.2}, "", 13, np.uint8, 0.05, 128, np.int8, 0.03, -100),
        ("relu_i8", "Relu", {}, "", 13, np.int8, 0.05, 10, np.int8, 0.025, -128),
    ]
    for name, op, attrs, dom, opset, xdt, sx, zx, ydt, sy, zy in groups:
        xt, yt = (U8 if xdt == np.uint8 else I8), (U8 if ydt == np.uint8 else I8)
        nodes = [helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xf"]),
                 helper.make_node(op, ["xf"], ["yf"], domain=dom or None, **attrs),
                 helper.make_node("QuantizeLinear", ["yf", "ys", "yz"], ["y"])]
        graph_case(f"qdq_{name}", nodes, [("x", codes(xdt))],
                   [("xs", np.float32(sx)), ("xz", zp(zx, xdt)), ("ys", np.float32(sy)), ("yz", zp(zy, ydt))],
                   [("y", yt)], opset=opset, ms=bool(dom),
                   extra={"fuse": {"QLinearLookup": 1}, "exact": exact_fn(op, attrs, sx, zx, sy, zy, ydt)})
    # Clip with constant min/max inputs (opset 13).
    nodes = [helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xf"]),
             helper.make_node("Clip", ["xf", "lo", "hi"], ["yf"]),
             helper.make_node("QuantizeLinear", ["yf", "ys", "yz"], ["y"])]
    graph_case("qdq_clip_u8", nodes, [("x", codes(np.uint8))],
               [("xs", np.float32(0.05)), ("xz", zp(128, np.uint8)), ("lo", np.float32(-1.0)),
                ("hi", np.float32(3.0)), ("ys", np.float32(0.02)), ("yz", zp(50, np.uint8))],
               [("y", U8)], extra={"fuse": {"QLinearLookup": 1},
                                   "exact": exact_fn("Clip", {"min": -1.0, "max": 3.0}, 0.05, 128, 0.02, 50,
                                                     np.uint8)})

    # QLinearAveragePool (QOperator), onnxruntime's kernel.
    def u8(*s):
        return RNG.integers(0, 256, s).astype(np.uint8)

    def i8(*s):
        return RNG.integers(-128, 128, s).astype(np.int8)

    pq = lambda dt, a, b, c, d: [("xs", np.float32(a)), ("xz", zp(b, dt)), ("ys", np.float32(c)), ("yz", zp(d, dt))]
    case("qlinear_avgpool_u8_pads_count_include_pad", "QLinearAveragePool", [("x", u8(1, 3, 7, 9))],
         pq(np.uint8, 0.02, 128, 0.015, 120), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                               "count_include_pad": 1}, outputs=[("y", U8)], domain=MS)
    case("qlinear_avgpool_u8_pads_exclude_pad", "QLinearAveragePool", [("x", u8(1, 3, 7, 9))],
         pq(np.uint8, 0.02, 128, 0.015, 120), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
         outputs=[("y", U8)], domain=MS)
    case("qlinear_avgpool_i8_ceil_mode", "QLinearAveragePool", [("x", i8(2, 2, 8, 7))],
         pq(np.int8, 0.05, -3, 0.04, 2), {"kernel_shape": [2, 3], "strides": [2, 2], "ceil_mode": 1,
                                          "pads": [0, 1, 0, 1]}, outputs=[("y", I8)], domain=MS)
    # Equal input and output scales make exact rounding ties (a sum of four codes that is
    # 2 mod 4); in f32 they land either side depending on the summation order, so those
    # elements (counted here in integers) may be one step from onnxruntime.
    xcl = u8(1, 6, 5, 4)
    win = sum(xcl[:, i:i + 5, j:j + 4, :].astype(np.int64) for i in (0, 1) for j in (0, 1))
    case("qlinear_avgpool_u8_channels_last", "QLinearAveragePool", [("x", xcl)],
         pq(np.uint8, 0.02, 100, 0.02, 100), {"kernel_shape": [2, 2], "channels_last": 1},
         outputs=[("y", U8)], domain=MS, extra={"steps": int((win % 4 == 2).sum())})
    case("qlinear_avgpool_1d_i8", "QLinearAveragePool", [("x", i8(2, 3, 10))],
         pq(np.int8, 0.05, 0, 0.03, -5), {"kernel_shape": [3], "pads": [1, 1], "count_include_pad": 1},
         outputs=[("y", I8)], domain=MS)


def exact_op_cases(case, graph_case):
    def u8(*s):
        return RNG.integers(0, 256, s).astype(np.uint8)

    def i8(*s):
        return RNG.integers(-128, 128, s).astype(np.int8)

    i64 = lambda *v: np.array(v, np.int64)
    case("pad_u8_constant", "Pad", [("x", u8(2, 3, 4))], [("p", i64(0, 1, 2, 0, 1, 0)), ("c", np.array(77, np.uint8))],
         outputs=[("y", U8)])
    case("pad_i8_reflect", "Pad", [("x", i8(2, 3, 4))], [("p", i64(0, 1, 2, 0, 1, 1))], {"mode": "reflect"},
         outputs=[("y", I8)])
    case("pad_i8_edge", "Pad", [("x", i8(1, 3, 4))], [("p", i64(0, 2, 1, 0, 0, 3))], {"mode": "edge"},
         outputs=[("y", I8)])
    case("resize_nearest_u8_scales", "Resize", [("x", u8(1, 2, 3, 4))],
         [("roi", np.zeros(0, np.float32)), ("sc", np.array([1, 1, 2, 1.5], np.float32))],
         outputs=[("y", U8)])
    case("resize_nearest_i8_sizes_asymmetric_floor", "Resize", [("x", i8(1, 2, 4, 5))],
         [("roi", np.zeros(0, np.float32)), ("sc", np.zeros(0, np.float32)), ("sz", i64(1, 2, 7, 3))],
         {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
         outputs=[("y", I8)])
    case("split_i8", "Split", [("x", i8(2, 5, 3))], [("s", i64(2, 3))], {"axis": 1},
         outputs=[("y0", I8), ("y1", I8)])
    case("split_u8_equal_opset18", "Split", [("x", u8(6, 2))], {}, {"axis": 0, "num_outputs": 3},
         outputs=[("y0", U8), ("y1", U8), ("y2", U8)], opset=18)
    case("slice_u8", "Slice", [("x", u8(3, 8))], [("st", i64(0, 1)), ("en", i64(3, 7)), ("ax", i64(0, 1)),
                                                  ("sp", i64(2, 3))], outputs=[("y", U8)])
    case("gather_i8", "Gather", [("x", i8(5, 3))], [("ix", i64(4, 0, -1))], {"axis": 0}, outputs=[("y", I8)])
    case("transpose_u8", "Transpose", [("x", u8(2, 3, 4))], [], {"perm": [2, 0, 1]}, outputs=[("y", U8)])
    case("reshape_i8", "Reshape", [("x", i8(2, 3, 4))], [("sh", i64(4, -1))], outputs=[("y", I8)])
    case("flatten_u8", "Flatten", [("x", u8(2, 3, 4))], [], {"axis": 2}, outputs=[("y", U8)])
    case("squeeze_i8", "Squeeze", [("x", i8(1, 3, 1, 2))], [("ax", i64(0, 2))], outputs=[("y", I8)])
    case("unsqueeze_u8", "Unsqueeze", [("x", u8(3, 2))], [("ax", i64(0, 3))], outputs=[("y", U8)])
    case("concat_i8", "Concat", [("a", i8(2, 3)), ("b", i8(2, 1))], [], {"axis": 1}, outputs=[("y", I8)])
    case("identity_u8", "Identity", [("x", u8(4, 2))], [], outputs=[("y", U8)])

    # QDQ groups around exact operators (equal parameters on both sides: Q/DQ dropped).
    def qdq_group(name, op, x, dt, s, z, extra_inputs, inits, attrs, n_out=1, fuse=None, opset=13, steps=None):
        t = U8 if dt == np.uint8 else I8
        outs = [f"y{i}" for i in range(n_out)]
        nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"]),
                 helper.make_node(op, ["xf"] + extra_inputs, [f"f{i}" for i in range(n_out)], **attrs)]
        nodes += [helper.make_node("QuantizeLinear", [f"f{i}", "s", "z"], [o]) for i, o in enumerate(outs)]
        extra = {"fuse": fuse or {"8-bit exact ops": 1}}
        if steps is not None:
            extra["steps"] = steps
        graph_case(f"qdq_{name}", nodes, [("x", x)], [("s", np.float32(s)), ("z", zp(z, dt))] + inits,
                   [(o, t) for o in outs], opset=opset, extra=extra)

    # The pad value is the dequantized value of code 57, so it is a code.
    pad_value = np.float32(0.1) * np.float32(57 - 100)
    qdq_group("pad_constant_u8", "Pad", u8(2, 3, 4), np.uint8, 0.1, 100, ["p", "c"],
              [("p", i64(0, 1, 2, 0, 1, 0)), ("c", np.array(pad_value, np.float32))], {})
    qdq_group("pad_default_zero_i8", "Pad", i8(2, 3), np.int8, 0.05, -7, ["p"], [("p", i64(1, 1, 0, 2))], {})
    qdq_group("pad_reflect_i8", "Pad", i8(2, 3, 4), np.int8, 0.05, 3, ["p"], [("p", i64(0, 1, 2, 0, 1, 1))],
              {"mode": "reflect"})
    qdq_group("resize_nearest_u8", "Resize", u8(1, 2, 3, 4), np.uint8, 0.02, 128, ["roi", "sc"],
              [("roi", np.zeros(0, np.float32)), ("sc", np.array([1, 1, 2, 2], np.float32))], {"mode": "nearest"})
    qdq_group("split_i8", "Split", i8(2, 5, 3), np.int8, 0.03, 1, ["sp"], [("sp", i64(2, 3))], {"axis": 1},
              n_out=2)
    qdq_group("avgpool_u8", "AveragePool", u8(1, 3, 6, 6), np.uint8, 0.02, 128, [], [],
              {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]},
              fuse={"QLinearAveragePool": 1})
    # Differently scaled operands of a Concat: QLinearConcat.
    nodes = [helper.make_node("DequantizeLinear", ["a", "as", "az"], ["af"]),
             helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bf"]),
             helper.make_node("Concat", ["af", "bf"], ["cf"], axis=1),
             helper.make_node("QuantizeLinear", ["cf", "ys", "yz"], ["y"])]
    graph_case("qdq_concat_u8", nodes, [("a", u8(2, 3)), ("b", u8(2, 4))],
               [("as", np.float32(0.02)), ("az", zp(128, np.uint8)), ("bs", np.float32(0.05)),
                ("bz", zp(100, np.uint8)), ("ys", np.float32(0.04)), ("yz", zp(120, np.uint8))], [("y", U8)],
               extra={"fuse": {"QLinearConcat": 1}})
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"]),
             helper.make_node("GlobalAveragePool", ["xf"], ["pf"]),
             helper.make_node("QuantizeLinear", ["pf", "ys", "yz"], ["y"])]
    graph_case("qdq_global_avgpool_i8", nodes, [("x", i8(2, 4, 5, 5))],
               [("s", np.float32(0.05)), ("z", zp(-2, np.int8)), ("ys", np.float32(0.01)), ("yz", zp(3, np.int8))],
               [("y", I8)], extra={"fuse": {"QLinearGlobalAveragePool": 1}})


class Reader:
    def __init__(self, xs):
        self.it = iter([{"x": x} for x in xs])

    def get_next(self):
        return next(self.it, None)


def fused_model_case(cases):
    """Conv -> activation -> Conv in float, quantized by quantize_static (QDQ, u8
    activations, s8 per-channel weights); the reference is onnxruntime's own run of the
    QDQ model with its default optimizations (QDQ fusion on)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    for act, opset in [("Sigmoid", 13), ("HardSwish", 14)]:
        w1 = RNG.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
        w2 = RNG.normal(0, 0.2, (4, 8, 3, 3)).astype(np.float32)
        nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
                 helper.make_node(act, ["c1"], ["a1"]),
                 helper.make_node("Conv", ["a1", "w2", "b2"], ["y"], pads=[1, 1, 1, 1])]
        g = helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info("x", F, [1, 3, 8, 8])],
            [helper.make_tensor_value_info("y", F, [1, 4, 8, 8])],
            [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(RNG.normal(0, 0.1, 8).astype(np.float32), "b1"),
             numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(RNG.normal(0, 0.1, 4).astype(np.float32), "b2")])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
        calib = [RNG.normal(0, 1, (1, 3, 8, 8)).astype(np.float32) for _ in range(8)]
        with tempfile.TemporaryDirectory() as td:
            src, dst = os.path.join(td, "f.onnx"), os.path.join(td, "q.onnx")
            with open(src, "wb") as fh:
                fh.write(m.SerializeToString())
            # 7-bit weights where onnxruntime's u8 x s8 kernels saturate (ort_exact.py).
            quantize_static(src, dst, Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            reduce_range=not u8s8_exact())
            import onnx
            qm = onnx.load(dst)
        # One quantization step of the output (the last QuantizeLinear's scale).
        last_q = [n for n in qm.graph.node if n.op_type == "QuantizeLinear"][-1]
        inits = {i.name: numpy_helper.to_array(i) for i in qm.graph.initializer}
        step = float(inits[last_q.input[1]])
        assert any(n.op_type == act for n in qm.graph.node), f"{act} missing from the quantized model"
        x = RNG.normal(0, 1, (1, 3, 8, 8)).astype(np.float32)
        cases.append((f"model_qdq_conv_{act.lower()}_conv", qm, [("x", x)],
                      {"fuse": {"QLinearConv": 2, "QLinearLookup": 1}, "tol": step}))

#!/usr/bin/env python3
"""Build one small ONNX model per operator case, run it with onnxruntime, and store
model + inputs + outputs under tests/fixtures/ops/<case>/:

    model.onnx   the single-node (or small) model, built with onnx.helper
    in0.npy ...  runtime inputs, in graph-input order (initializers excluded)
    out0.npy ... onnxruntime's outputs, in graph-output order

Cases whose name starts with "nn_" exercise the compute-heavy operators (Conv, MatMul,
pooling, normalization, recurrent layers); the Rust harness skips those whose operator
is not registered yet.

Usage: python3 scripts/make_op_fixtures.py   (numpy, onnx, onnxruntime)
"""

import os
import shutil

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "ops")
RNG = np.random.default_rng(20241125)
ort.set_default_logger_severity(3)
F = TensorProto.FLOAT
I64 = TensorProto.INT64
I32 = TensorProto.INT32
B = TensorProto.BOOL

NP2ONNX = {
    np.dtype("float32"): F,
    np.dtype("float64"): TensorProto.DOUBLE,
    np.dtype("int64"): I64,
    np.dtype("int32"): I32,
    np.dtype("bool"): B,
    np.dtype("uint8"): TensorProto.UINT8,
    np.dtype("int8"): TensorProto.INT8,
}

CASES = []


def rnd(*shape, lo=-2.0, hi=2.0):
    return RNG.uniform(lo, hi, size=shape).astype(np.float32)


def model_of(nodes, feeds, inits, outputs, opset, extra_nodes_first=()):
    inputs = [helper.make_tensor_value_info(n, NP2ONNX[a.dtype], list(a.shape)) for n, a in feeds]
    outs = [helper.make_tensor_value_info(n, t, None) for n, t in outputs]
    init = [numpy_helper.from_array(a, n) for n, a in inits]
    g = helper.make_graph(list(extra_nodes_first) + list(nodes), "g", inputs, outs, init)
    ir = 8 if opset <= 17 else (9 if opset <= 20 else 10)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)
    return m


def case(name, op, feeds, attrs=None, inits=(), opset=17, outputs=(("y", F),), inputs=None, nodes=None):
    """One case. `feeds`: runtime inputs [(name, array)]; `inits`: initializers;
    `inputs`: the node's input names in order ("" = omitted), default feeds+inits."""
    if nodes is None:
        names = inputs if inputs is not None else [n for n, _ in feeds] + [n for n, _ in inits]
        nodes = [helper.make_node(op, names, [n for n, _ in outputs], **(attrs or {}))]
    CASES.append((name, model_of(nodes, feeds, list(inits), list(outputs), opset), feeds))


def i64(*v):
    return np.array(v, dtype=np.int64)


def elementwise():
    a, b = rnd(2, 3, 4), rnd(4)
    case("add_bcast", "Add", [("a", a), ("b", b)])
    case("sub_bcast", "Sub", [("a", rnd(3, 1)), ("b", rnd(1, 4))])
    case("mul_scalar", "Mul", [("a", a)], inits=[("s", np.array(1.5, np.float32))])
    case("div", "Div", [("a", a), ("b", rnd(2, 1, 4, lo=0.5, hi=2))])
    case("pow_f32", "Pow", [("a", rnd(3, 4, lo=0.1, hi=3)), ("b", rnd(4, lo=-2, hi=2))])
    case("pow_i64_exp", "Pow", [("a", rnd(3, 4))], inits=[("e", i64(2))], opset=15)
    case("add_i64", "Add", [("a", RNG.integers(-9, 9, (2, 3))), ("b", RNG.integers(-9, 9, (3,)))], outputs=[("y", I64)])
    case("div_i32", "Div", [("a", RNG.integers(-20, 20, (6,)).astype(np.int32)),
                             ("b", np.array([3, -3, 4, 7, -2, 5], np.int32))], outputs=[("y", I32)])
    case("mod_int", "Mod", [("a", i64(7, -7, 7, -7, 0)), ("b", i64(3, 3, -3, -3, 5))], outputs=[("y", I64)])
    case("mod_fmod", "Mod", [("a", np.array([5.5, -5.5, 5.5, -5.5], np.float32)),
                              ("b", np.array([2, 2, -2, -2], np.float32))], attrs={"fmod": 1})
    x = rnd(3, 5)
    for op in ["Sqrt", "Log"]:
        case(op.lower(), op, [("x", rnd(3, 5, lo=0.1, hi=4))])
    for op in ["Exp", "Neg", "Abs", "Erf", "Floor", "Ceil", "Sigmoid", "Tanh", "Relu", "Softplus",
               "HardSwish", "Sign", "Sin", "Cos", "Softsign", "Elu", "Selu"]:
        case(op.lower(), op, [("x", x)])
    case("reciprocal", "Reciprocal", [("x", rnd(3, 5, lo=0.5, hi=3))])
    case("round_half_even", "Round", [("x", np.array([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, -2.6, 3.5], np.float32))])
    case("neg_i64", "Neg", [("x", i64(1, -2, 3))], outputs=[("y", I64)])
    case("leakyrelu", "LeakyRelu", [("x", x)], {"alpha": 0.2})
    case("hardsigmoid", "HardSigmoid", [("x", x * 3)], {"alpha": 0.3, "beta": 0.4})
    case("prelu", "PRelu", [("x", rnd(2, 3, 4, 4))], inits=[("s", rnd(3, 1, 1))])
    case("clip6_attr", "Clip", [("x", x)], {"min": -0.5, "max": 0.7}, opset=6)
    case("clip13_min_only", "Clip", [("x", x)], inits=[("lo", np.array(-0.3, np.float32))],
         inputs=["x", "lo", ""], opset=13)
    case("clip13_both", "Clip", [("x", x)], inits=[("lo", np.array(-0.3, np.float32)),
                                                    ("hi", np.array(0.4, np.float32))], opset=13)
    case("gelu", "Gelu", [("x", x * 2)], opset=20)
    case("gelu_tanh", "Gelu", [("x", x * 2)], {"approximate": "tanh"}, opset=20)
    s = rnd(2, 3, 4) * 3
    case("softmax11_axis1", "Softmax", [("x", s)], {"axis": 1}, opset=11)
    case("softmax11_default", "Softmax", [("x", s)], opset=11)
    case("softmax13_axis1", "Softmax", [("x", s)], {"axis": 1}, opset=13)
    case("softmax13_default", "Softmax", [("x", s)], opset=13)
    case("logsoftmax11", "LogSoftmax", [("x", s)], {"axis": 1}, opset=11)
    case("logsoftmax13", "LogSoftmax", [("x", s)], {"axis": 0}, opset=13)
    three = [("a", rnd(2, 3)), ("b", rnd(3)), ("c", rnd(2, 1))]
    for op in ["Max", "Min", "Sum", "Mean"]:
        case(op.lower() + "_variadic", op, three)
    ints = [("a", RNG.integers(0, 4, (3, 4))), ("b", RNG.integers(0, 4, (4,)))]
    for op in ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"]:
        case(op.lower() + "_i64", op, ints, outputs=[("y", B)])
    case("less_f32", "Less", [("a", rnd(3, 4)), ("b", rnd(3, 1))], outputs=[("y", B)])
    bools = [("a", RNG.integers(0, 2, (3, 4)).astype(bool)), ("b", RNG.integers(0, 2, (4,)).astype(bool))]
    for op in ["And", "Or", "Xor"]:
        case(op.lower(), op, bools, outputs=[("y", B)])
    case("not", "Not", bools[:1], outputs=[("y", B)])
    case("where_bcast", "Where", [("c", RNG.integers(0, 2, (3, 1)).astype(bool)), ("x", rnd(3, 4)), ("y0", rnd(4))])


def shapes():
    x = rnd(2, 3, 4)
    case("reshape_0_neg1", "Reshape", [("x", x)], inits=[("s", i64(0, -1))])
    case("reshape_allowzero", "Reshape", [("x", np.zeros((0, 3), np.float32))],
         inits=[("s", i64(3, 0))], attrs={"allowzero": 1}, opset=14)
    for ax in [0, 2, -1]:
        case(f"flatten_axis{ax}".replace("-", "m"), "Flatten", [("x", x)], {"axis": ax})
    case("transpose_default", "Transpose", [("x", x)])
    case("transpose_perm", "Transpose", [("x", rnd(2, 3, 4, 5))], {"perm": [0, 2, 3, 1]})
    y = rnd(1, 3, 1, 4)
    case("squeeze11_attr", "Squeeze", [("x", y)], {"axes": [0, -2]}, opset=11)
    case("squeeze13_input", "Squeeze", [("x", y)], inits=[("a", i64(2))], opset=13)
    case("squeeze13_all", "Squeeze", [("x", y)], opset=13)
    case("unsqueeze11_attr", "Unsqueeze", [("x", x)], {"axes": [0, 4]}, opset=11)
    case("unsqueeze13_neg", "Unsqueeze", [("x", x)], inits=[("a", i64(-1, 1))], opset=13)
    case("concat_neg_axis", "Concat", [("a", rnd(2, 3)), ("b", rnd(2, 1)), ("c", rnd(2, 2))], {"axis": -1})
    z = rnd(5, 6)
    outs2 = (("y1", F), ("y2", F))
    case("split11_attr", "Split", [("x", z)], {"axis": 1, "split": [2, 4]}, opset=11, outputs=outs2)
    case("split13_input", "Split", [("x", z)], {"axis": 0}, inits=[("s", i64(1, 4))], opset=13, outputs=outs2)
    case("split13_equal", "Split", [("x", z)], {"axis": 1}, opset=13, outputs=(("y1", F), ("y2", F), ("y3", F)))
    case("split18_uneven", "Split", [("x", z)], {"axis": 0, "num_outputs": 2}, opset=18, outputs=outs2)
    w = rnd(4, 5, 6)
    case("slice9_attr", "Slice", [("x", w)], {"starts": [1, 0], "ends": [3, 100], "axes": [0, 2]}, opset=9)
    case("slice13_negstep", "Slice", [("x", w)], inits=[("s", i64(-1, 4)), ("e", i64(-100, 0)),
                                                         ("a", i64(0, 2)), ("st", i64(-1, -2))], opset=13)
    case("slice13_clamp", "Slice", [("x", w)], inits=[("s", i64(-10, 2)), ("e", i64(10, -1))], opset=13)
    case("slice13_step3", "Slice", [("x", w)], inits=[("s", i64(0)), ("e", i64(6)), ("a", i64(-1)),
                                                      ("st", i64(3))], opset=13)
    case("gather_axis0_neg", "Gather", [("x", rnd(5, 3))], inits=[("i", i64(0, -1, 2))])
    case("gather_axis1_2d", "Gather", [("x", rnd(2, 5, 3))], {"axis": 1},
         inits=[("i", np.array([[0, 4], [3, -2]], np.int64))])
    case("gather_scalar_idx", "Gather", [("x", rnd(5, 3))], inits=[("i", np.array(2, np.int64))])
    case("shape", "Shape", [("x", w)], outputs=[("y", I64)])
    case("shape15_start_end", "Shape", [("x", rnd(2, 3, 4, 5))], {"start": 1, "end": -1}, opset=15, outputs=[("y", I64)])
    case("size", "Size", [("x", w)], outputs=[("y", I64)])
    case("cast_f32_i64", "Cast", [("x", np.array([1.7, -1.7, 0.5, -0.2, 3.0], np.float32))], {"to": I64}, outputs=[("y", I64)])
    case("cast_i64_f32", "Cast", [("x", i64(1, -5, 7))], {"to": F})
    case("cast_f32_bool", "Cast", [("x", np.array([0.0, 1.5, -0.1], np.float32))], {"to": B}, outputs=[("y", B)])
    case("constant", "Constant", [], {"value": numpy_helper.from_array(rnd(2, 3), "v")})
    case("constantofshape_i64", "ConstantOfShape", [("s", i64(2, 3))],
         {"value": numpy_helper.from_array(np.array([7], np.int64), "v")}, outputs=[("y", I64)])
    case("constantofshape_default", "ConstantOfShape", [("s", i64(3))])
    case("identity", "Identity", [("x", w)])
    case("dropout13", "Dropout", [("x", w)], opset=13)
    case("expand", "Expand", [("x", rnd(3, 1))], inits=[("s", i64(2, 1, 4))])
    case("tile", "Tile", [("x", rnd(2, 3))], inits=[("r", i64(2, 3))])
    case("range_f32", "Range", [], inits=[("a", np.array(1.0, np.float32)), ("b", np.array(3.1, np.float32)),
                                           ("d", np.array(0.4, np.float32))])
    case("range_i64_neg", "Range", [("a", np.array(10, np.int64))], inits=[("b", np.array(-3, np.int64)),
                                                                           ("d", np.array(-4, np.int64))], outputs=[("y", I64)])
    case("topk_largest", "TopK", [("x", rnd(3, 6))], inits=[("k", i64(2))], outputs=(("v", F), ("i", I64)))
    case("topk_smallest_axis0", "TopK", [("x", rnd(5, 4))], {"axis": 0, "largest": 0},
         inits=[("k", i64(3))], outputs=(("v", F), ("i", I64)))


def pads_resize():
    x = rnd(1, 2, 4, 5)
    case("pad11_constant", "Pad", [("x", x)], inits=[("p", i64(0, 0, 1, 2, 0, 0, 2, 1)),
                                                     ("v", np.array(0.5, np.float32))], opset=11)
    case("pad11_reflect", "Pad", [("x", x)], {"mode": "reflect"}, inits=[("p", i64(0, 0, 2, 3, 0, 0, 1, 2))], opset=11)
    case("pad11_edge", "Pad", [("x", x)], {"mode": "edge"}, inits=[("p", i64(0, 1, 2, 0, 0, 0, 1, 3))], opset=11)
    case("pad11_negative", "Pad", [("x", x)], inits=[("p", i64(0, 0, -1, 1, 0, 0, 1, -2))], opset=11)
    case("pad18_axes", "Pad", [("x", x)], inits=[("p", i64(1, 2, 3, 0)), ("v", np.array(-1.0, np.float32)),
                                                 ("ax", i64(-1, 2))], opset=18)
    case("pad2_attr", "Pad", [("x", x)], {"pads": [0, 0, 1, 1, 0, 0, 1, 1], "value": 2.0}, opset=2)
    r = rnd(1, 2, 3, 4)
    e = np.zeros((0,), np.float32)

    def rs(name, attrs, scales=None, sizes=None, opset=13, xin=r):
        inits = [("roi", e)]
        names = ["x", "roi"]
        if scales is not None:
            inits.append(("sc", np.array(scales, np.float32)))
            names.append("sc")
        else:
            names.append("")
        if sizes is not None:
            inits.append(("sz", np.array(sizes, np.int64)))
            names.append("sz")
        case(name, "Resize", [("x", xin)], attrs, inits=inits, inputs=names, opset=opset)

    rs("resize_nearest_asym_floor", {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                                     "nearest_mode": "floor"}, scales=[1, 1, 2, 2])
    rs("resize_nearest_halfpixel_ceil", {"mode": "nearest", "nearest_mode": "round_prefer_ceil"},
       sizes=[1, 2, 5, 7])
    rs("resize_nearest_default_down", {"mode": "nearest"}, scales=[1, 1, 0.6, 0.5], xin=rnd(1, 1, 5, 8))
    rs("resize_nearest_align_corners", {"mode": "nearest", "coordinate_transformation_mode": "align_corners",
                                        "nearest_mode": "round_prefer_floor"}, sizes=[1, 2, 6, 9])
    rs("resize_linear_halfpixel_up", {"mode": "linear"}, scales=[1, 1, 2, 1.5])
    rs("resize_linear_halfpixel_down", {"mode": "linear"}, sizes=[1, 2, 2, 3], xin=rnd(1, 2, 5, 7))
    rs("resize_linear_align_corners", {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
       sizes=[1, 2, 5, 7])
    rs("resize_linear_pytorch", {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
       sizes=[1, 2, 1, 7])
    rs("resize_linear_asymmetric", {"mode": "linear", "coordinate_transformation_mode": "asymmetric"},
       scales=[1, 1, 2.5, 2])
    case("resize10_nearest", "Resize", [("x", r)], {"mode": "nearest"},
         inits=[("sc", np.array([1, 1, 2, 3], np.float32))], opset=10)


def reductions():
    x = rnd(2, 3, 4)
    case("reducemean13_attr", "ReduceMean", [("x", x)], {"axes": [1]}, opset=13)
    case("reducesum13_input", "ReduceSum", [("x", x)], {"keepdims": 0}, inits=[("a", i64(0, -1))], opset=13)
    case("reducesum13_all", "ReduceSum", [("x", x)], {"keepdims": 0}, opset=13)
    case("reducesum13_noop", "ReduceSum", [("x", x)], {"noop_with_empty_axes": 1}, opset=13)
    case("reducemax18_input", "ReduceMax", [("x", x)], inits=[("a", i64(2))], opset=18)
    case("reducemin13_nokeep", "ReduceMin", [("x", x)], {"axes": [0, 2], "keepdims": 0}, opset=13)
    case("reduceprod13", "ReduceProd", [("x", x)], {"axes": [2]}, opset=13)
    case("reducel2_18", "ReduceL2", [("x", x)], inits=[("a", i64(1))], opset=18)
    case("reducel1_13", "ReduceL1", [("x", x)], {"axes": [1]}, opset=13)
    case("reducelogsumexp_13", "ReduceLogSumExp", [("x", x)], {"axes": [2]}, opset=13)
    case("reducesumsquare_13", "ReduceSumSquare", [("x", x)], {"axes": [0]}, opset=13)
    case("reducesum_i64", "ReduceSum", [("x", RNG.integers(-5, 5, (3, 4)))], inits=[("a", i64(1))],
         outputs=[("y", I64)], opset=13)
    case("argmax_nokeep", "ArgMax", [("x", x)], {"axis": 1, "keepdims": 0}, outputs=[("y", I64)])
    ties = np.array([[1, 3, 3, 0], [2, 2, 1, 2]], np.int64)
    case("argmax_last_index", "ArgMax", [("x", ties)], {"axis": 1, "select_last_index": 1}, outputs=[("y", I64)])
    case("argmin_first", "ArgMin", [("x", ties)], {"axis": 1}, outputs=[("y", I64)])
    case("lrn", "LRN", [("x", rnd(1, 5, 3, 3))], {"size": 3, "alpha": 0.01, "beta": 0.75, "bias": 1.5})


def control():
    # If on a runtime condition; branches read outer-scope values.
    x = rnd(2, 3)
    then_g = helper.make_graph([helper.make_node("Add", ["x", "x"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", F, None)])
    else_g = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", F, None)])
    for val in [True, False]:
        nodes = [helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)]
        feeds = [("c", np.array(val)), ("x", x)]
        CASES.append((f"if_runtime_{str(val).lower()}",
                      model_of(nodes, feeds, [("w", rnd(3))], [("y", F)], 13), feeds))
    # If on a constant condition (folded away at plan time).
    nodes = [helper.make_node("If", ["cc"], ["y"], then_branch=then_g, else_branch=else_g)]
    feeds = [("x", x)]
    CASES.append(("if_const_cond", model_of(nodes, feeds, [("cc", np.array(False)), ("w", rnd(3))],
                                            [("y", F)], 13), feeds))
    # Loop: M iterations, carried accumulator, scan output, outer-scope value.
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "step"], ["acc_out"]),
         helper.make_node("Cast", ["i"], ["i_f"], to=F),
         helper.make_node("Mul", ["acc_out", "i_f"], ["scan"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("i", I64, []), helper.make_tensor_value_info("cond_in", B, []),
         helper.make_tensor_value_info("acc_in", F, None)],
        [helper.make_tensor_value_info("cond_out", B, []), helper.make_tensor_value_info("acc_out", F, None),
         helper.make_tensor_value_info("scan", F, None)])
    nodes = [helper.make_node("Loop", ["M", "", "acc0"], ["acc", "scans"], body=body)]
    feeds = [("M", np.array(4, np.int64)), ("acc0", rnd(2)), ("step", rnd(2))]
    CASES.append(("loop_scan", model_of(nodes, feeds, [], [("acc", F), ("scans", F)], 13), feeds))
    # Loop stopping on a condition computed in the body.
    body2 = helper.make_graph(
        [helper.make_node("Mul", ["v_in", "two"], ["v_out"]),
         helper.make_node("ReduceSum", ["v_out"], ["s"], keepdims=0),
         helper.make_node("Less", ["s", "lim"], ["cond_out"])],
        "body2",
        [helper.make_tensor_value_info("i", I64, []), helper.make_tensor_value_info("cond_in", B, []),
         helper.make_tensor_value_info("v_in", F, None)],
        [helper.make_tensor_value_info("cond_out", B, []), helper.make_tensor_value_info("v_out", F, None)],
        [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
         numpy_helper.from_array(np.array(100.0, np.float32), "lim")])
    nodes = [helper.make_node("Loop", ["M", "c", "v0"], ["v"], body=body2)]
    feeds = [("M", np.array(50, np.int64)), ("c", np.array(True)), ("v0", np.array([1.0, 2.0], np.float32))]
    CASES.append(("loop_cond", model_of(nodes, feeds, [], [("v", F)], 13), feeds))
    # A small chain: MLP-like, exercising folding of a Transpose on a constant.
    nodes = [helper.make_node("Transpose", ["w"], ["wt"]),
             helper.make_node("MatMul", ["x", "wt"], ["h"]),
             helper.make_node("Add", ["h", "b"], ["h2"]),
             helper.make_node("Relu", ["h2"], ["y"])]
    feeds = [("x", rnd(3, 4))]
    CASES.append(("nn_chain_fold", model_of(nodes, feeds, [("w", rnd(5, 4)), ("b", rnd(5))], [("y", F)], 13), feeds))


def nn():
    x = rnd(1, 4, 7, 7)
    w = rnd(6, 4, 3, 3) * 0.5
    b = rnd(6)
    case("nn_conv_pad1", "Conv", [("x", x)], {"pads": [1, 1, 1, 1]}, inits=[("w", w), ("b", b)])
    case("nn_conv_stride2_dil2", "Conv", [("x", rnd(2, 4, 9, 8))], {"strides": [2, 2], "dilations": [2, 2]},
         inits=[("w", w)])
    case("nn_conv_groups2", "Conv", [("x", x)], {"group": 2, "pads": [0, 1, 2, 1]},
         inits=[("w", rnd(6, 2, 3, 3)), ("b", b)])
    case("nn_conv_depthwise", "Conv", [("x", x)], {"group": 4, "pads": [1, 1, 1, 1]}, inits=[("w", rnd(4, 1, 3, 3))])
    for ap in ["SAME_UPPER", "SAME_LOWER", "VALID"]:
        case(f"nn_conv_auto_{ap.lower()}", "Conv", [("x", rnd(1, 4, 8, 7))], {"auto_pad": ap, "strides": [2, 2]},
             inits=[("w", rnd(3, 4, 4, 3))])
    case("nn_conv_1x1", "Conv", [("x", x)], inits=[("w", rnd(8, 4, 1, 1)), ("b", rnd(8))])
    case("nn_conv1d", "Conv", [("x", rnd(2, 3, 10))], {"pads": [1, 2]}, inits=[("w", rnd(4, 3, 3))])
    case("nn_convtranspose_s2", "ConvTranspose", [("x", rnd(1, 4, 4, 5))], {"strides": [2, 2]},
         inits=[("w", rnd(4, 3, 3, 3)), ("b", rnd(3))])
    case("nn_convtranspose_outpad", "ConvTranspose", [("x", rnd(1, 2, 3, 3))],
         {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}, inits=[("w", rnd(2, 3, 3, 3))])
    case("nn_convtranspose_groups", "ConvTranspose", [("x", rnd(1, 4, 3, 3))], {"group": 2},
         inits=[("w", rnd(4, 1, 2, 2))])
    case("nn_matmul_2d", "MatMul", [("a", rnd(5, 7)), ("b", rnd(7, 3))])
    case("nn_matmul_batched", "MatMul", [("a", rnd(2, 5, 7)), ("b", rnd(2, 7, 3))])
    case("nn_matmul_bcast", "MatMul", [("a", rnd(2, 1, 3, 4)), ("b", rnd(5, 4, 2))])
    case("nn_matmul_vec", "MatMul", [("a", rnd(4)), ("b", rnd(3, 4, 2))])
    case("nn_matmul_large", "MatMul", [("a", rnd(33, 70))], inits=[("b", rnd(70, 45))])
    case("nn_gemm_default", "Gemm", [("a", rnd(3, 5))], inits=[("b", rnd(5, 4)), ("c", rnd(4))])
    case("nn_gemm_trans_alpha_beta", "Gemm", [("a", rnd(5, 3))], {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0},
         inits=[("b", rnd(4, 5)), ("c", rnd(3, 1))])
    case("nn_gemm_no_c", "Gemm", [("a", rnd(3, 5)), ("b", rnd(5, 4))])
    c = 4
    case("nn_batchnorm", "BatchNormalization", [("x", rnd(2, c, 3, 3))],
         {"epsilon": 1e-3}, inits=[("s", rnd(c)), ("bb", rnd(c)), ("m", rnd(c)), ("v", rnd(c, lo=0.5, hi=2))])
    case("nn_layernorm_last", "LayerNormalization", [("x", rnd(2, 3, 8))], inits=[("s", rnd(8)), ("bb", rnd(8))])
    case("nn_layernorm_axis1", "LayerNormalization", [("x", rnd(2, 3, 4))], {"axis": 1, "epsilon": 1e-3},
         inits=[("s", rnd(3, 4))])
    case("nn_instancenorm", "InstanceNormalization", [("x", rnd(2, 3, 4, 5))], inits=[("s", rnd(3)), ("bb", rnd(3))])
    p = rnd(1, 2, 7, 8)
    case("nn_maxpool_ceil", "MaxPool", [("x", p)], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1})
    case("nn_maxpool_pads", "MaxPool", [("x", p)], {"kernel_shape": [3, 2], "pads": [1, 1, 1, 0]})
    case("nn_maxpool_dilation", "MaxPool", [("x", p)], {"kernel_shape": [2, 2], "dilations": [2, 2]})
    case("nn_avgpool_include_pad", "AveragePool", [("x", p)],
         {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1})
    case("nn_avgpool_exclude_pad", "AveragePool", [("x", p)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]})
    case("nn_avgpool_ceil", "AveragePool", [("x", p)], {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1})
    case("nn_globalavgpool", "GlobalAveragePool", [("x", p)])
    case("nn_globalmaxpool", "GlobalMaxPool", [("x", p)])
    seq, batch, inp, hid = 5, 2, 3, 4
    xs = rnd(seq, batch, inp)
    case("nn_lstm_forward", "LSTM", [("x", xs)], {"hidden_size": hid},
         inits=[("W", rnd(1, 4 * hid, inp)), ("R", rnd(1, 4 * hid, hid)), ("B", rnd(1, 8 * hid))],
         outputs=(("Y", F), ("Yh", F), ("Yc", F)))
    case("nn_lstm_bidir_init", "LSTM", [("x", xs), ("h0", rnd(2, batch, hid)), ("c0", rnd(2, batch, hid))],
         {"hidden_size": hid, "direction": "bidirectional"},
         inits=[("W", rnd(2, 4 * hid, inp)), ("R", rnd(2, 4 * hid, hid)), ("B", rnd(2, 8 * hid))],
         inputs=["x", "W", "R", "B", "", "h0", "c0"], outputs=(("Y", F), ("Yh", F)))
    for lbr in [0, 1]:
        case(f"nn_gru_lbr{lbr}", "GRU", [("x", xs)], {"hidden_size": hid, "linear_before_reset": lbr},
             inits=[("W", rnd(1, 3 * hid, inp)), ("R", rnd(1, 3 * hid, hid)), ("B", rnd(1, 6 * hid))],
             outputs=(("Y", F), ("Yh", F)))
    case("nn_gru_reverse", "GRU", [("x", xs)], {"hidden_size": hid, "direction": "reverse"},
         inits=[("W", rnd(1, 3 * hid, inp)), ("R", rnd(1, 3 * hid, hid))], outputs=(("Y", F),))


def main():
    elementwise()
    shapes()
    pads_resize()
    reductions()
    control()
    nn()
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    os.makedirs(ROOT)
    names = set()
    for name, model, feeds in CASES:
        assert name not in names, name
        names.add(name)
        try:
            sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            outs = sess.run(None, {n: a for n, a in feeds})
        except Exception as e:  # report the case, then stop
            raise SystemExit(f"case {name}: {e}")
        d = os.path.join(ROOT, name)
        os.makedirs(d)
        onnx.save(model, os.path.join(d, "model.onnx"))
        for i, (_, a) in enumerate(feeds):
            np.save(os.path.join(d, f"in{i}.npy"), a)
        for i, a in enumerate(outs):
            np.save(os.path.join(d, f"out{i}.npy"), np.asarray(a))
    print(f"wrote {len(CASES)} cases to {os.path.normpath(ROOT)}")


if __name__ == "__main__":
    main()

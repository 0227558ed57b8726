#!/usr/bin/env python3
"""Reference fixtures for the neural-network operators of edgeml-onnx.

Each case is one ONNX node run by onnxruntime (single thread) on seeded random inputs.
The script writes tests/fixtures/nn/<case>/ with
  case.txt  - op type, opset, attributes, input/output file names, tolerance, anchor
  *.npy     - inputs and expected outputs (file names carry the dtype: x.f32.npy)
The Rust tests (edgeml-onnx/tests/nn_*.rs) rebuild the node from case.txt, call the
operator factories directly and compare. Run from the repository root:

    python3 scripts/make_nn_fixtures.py
"""

import os
import shutil

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "nn")
RNG = np.random.default_rng(20261125)
NP2ONNX = {np.float32: TensorProto.FLOAT, np.int32: TensorProto.INT32, np.int64: TensorProto.INT64}
SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.int32): "i32", np.dtype(np.int64): "i64"}


def rnd(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def attr_line(name, v):
    if isinstance(v, float):
        return f"attr {name} f {v!r}"
    if isinstance(v, int):
        return f"attr {name} i {v}"
    if isinstance(v, str):
        return f"attr {name} s {v}"
    if isinstance(v, (list, tuple)):
        if all(isinstance(x, int) for x in v):
            return f"attr {name} is " + " ".join(str(x) for x in v)
        if all(isinstance(x, float) for x in v):
            return f"attr {name} fs " + " ".join(repr(x) for x in v)
        if all(isinstance(x, str) for x in v):
            return f"attr {name} ss " + " ".join(v)
    raise ValueError((name, v))


def case(name, op, inputs, n_outputs, opset=17, tol=1e-4, domain="", **attrs):
    """inputs: list of numpy arrays or None (omitted optional input)."""
    in_names = [f"in{i}" if a is not None else "" for i, a in enumerate(inputs)]
    out_names = [f"out{i}" for i in range(n_outputs)]
    node = helper.make_node(op, in_names, out_names, domain=domain or None, **attrs)
    graph_inputs = [
        helper.make_tensor_value_info(n, NP2ONNX[a.dtype.type], a.shape)
        for n, a in zip(in_names, inputs)
        if a is not None
    ]
    graph_outputs = [helper.make_empty_tensor_value_info(n) for n in out_names]
    graph = helper.make_graph([node], name, graph_inputs, graph_outputs)
    imports = [helper.make_opsetid("", 17 if domain else opset)]
    if domain:
        imports.append(helper.make_opsetid(domain, opset))
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = 8
    feeds = {n: a for n, a in zip(in_names, inputs) if a is not None}
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        outs = sess.run(out_names, feeds)
        anchor = f"onnxruntime {ort.__version__}"
    except Exception as e:  # noqa: BLE001 - fall back to the ONNX reference evaluator
        from onnx.reference import ReferenceEvaluator

        outs = ReferenceEvaluator(model).run(out_names, feeds)
        anchor = f"onnx.reference {onnx.__version__} (onnxruntime: {str(e).splitlines()[0][:80]})"
    d = os.path.join(ROOT, name)
    os.makedirs(d)
    lines = [f"op {op}", f"opset {opset}", f"tol {tol}", f"anchor {anchor}"]
    if domain:
        lines.insert(1, f"domain {domain}")
    for k, v in attrs.items():
        lines.append(attr_line(k, v))
    for i, a in enumerate(inputs):
        if a is None:
            lines.append("input -")
        else:
            f = f"in{i}.{SUFFIX[a.dtype]}.npy"
            np.save(os.path.join(d, f), a)
            lines.append(f"input {f}")
    for i, o in enumerate(outs):
        o = np.asarray(o)
        f = f"out{i}.{SUFFIX[o.dtype]}.npy"
        np.save(os.path.join(d, f), o)
        lines.append(f"output {f}")
    with open(os.path.join(d, "case.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


def conv_cases():
    case("conv2d_basic", "Conv", [rnd(1, 3, 7, 8), rnd(4, 3, 3, 3), rnd(4)], 1, pads=[1, 1, 1, 1])
    case("conv2d_stride_dil", "Conv", [rnd(2, 4, 9, 10), rnd(6, 4, 3, 2), rnd(6)], 1,
         strides=[2, 1], dilations=[1, 2], pads=[1, 0, 2, 1])
    case("conv2d_group", "Conv", [rnd(1, 6, 8, 8), rnd(4, 3, 3, 3)], 1, group=2, kernel_shape=[3, 3])
    case("conv2d_depthwise", "Conv", [rnd(2, 5, 9, 9), rnd(5, 1, 3, 3), rnd(5)], 1, group=5, strides=[2, 2], pads=[1, 1, 1, 1])
    case("conv2d_depthwise_mult", "Conv", [rnd(1, 3, 8, 7), rnd(6, 1, 3, 3)], 1, group=3, dilations=[2, 1], pads=[2, 1, 1, 0])
    case("conv2d_1x1", "Conv", [rnd(2, 16, 5, 5), rnd(8, 16, 1, 1), rnd(8)], 1)
    case("conv2d_1x1_stride", "Conv", [rnd(1, 8, 7, 7), rnd(4, 8, 1, 1)], 1, strides=[2, 2])
    for mode in ["SAME_UPPER", "SAME_LOWER", "VALID"]:
        case(f"conv2d_{mode.lower()}", "Conv", [rnd(1, 3, 7, 7), rnd(2, 3, 4, 4), rnd(2)], 1, auto_pad=mode, strides=[2, 2])
    case("conv1d", "Conv", [rnd(2, 3, 20), rnd(5, 3, 5), rnd(5)], 1, strides=[2], pads=[2, 1], dilations=[2])
    case("conv3d", "Conv", [rnd(1, 2, 5, 6, 7), rnd(3, 2, 3, 3, 2), rnd(3)], 1, strides=[1, 2, 1], pads=[1, 1, 0, 1, 1, 1])
    case("conv2d_deep", "Conv", [rnd(1, 40, 12, 11), rnd(70, 40, 3, 3, scale=0.1), rnd(70)], 1, pads=[1, 1, 1, 1], tol=3e-4)
    case("conv_transpose_basic", "ConvTranspose", [rnd(1, 3, 5, 5), rnd(3, 2, 3, 3), rnd(2)], 1, strides=[2, 2])
    case("conv_transpose_pads", "ConvTranspose", [rnd(2, 2, 4, 5), rnd(2, 3, 3, 3)], 1,
         strides=[2, 2], pads=[1, 0, 1, 2], output_padding=[1, 1])
    case("conv_transpose_group", "ConvTranspose", [rnd(1, 4, 4, 4), rnd(4, 2, 3, 3), rnd(4)], 1, group=2, pads=[1, 1, 1, 1])
    case("conv_transpose_output_shape", "ConvTranspose", [rnd(1, 2, 3, 3), rnd(2, 2, 3, 3)], 1, strides=[2, 2], output_shape=[6, 7])
    case("conv_transpose_same_upper", "ConvTranspose", [rnd(1, 2, 4, 4), rnd(2, 2, 3, 3)], 1, strides=[2, 2], auto_pad="SAME_UPPER")
    case("conv_transpose_1d_dil", "ConvTranspose", [rnd(1, 2, 7), rnd(2, 3, 4), rnd(3)], 1, strides=[3], dilations=[2])


def fused_conv_cases():
    """onnxruntime's contrib FusedConv (com.microsoft, opset 1): Conv + Z + activation."""
    ms = "com.microsoft"
    x, w, b = rnd(1, 4, 7, 7), rnd(6, 4, 3, 3), rnd(6)
    case("fusedconv_relu", "FusedConv", [x, w, b], 1, opset=1, domain=ms,
         pads=[1, 1, 1, 1], activation="Relu")
    case("fusedconv_relu_z", "FusedConv", [x, w, b, rnd(1, 6, 7, 7)], 1, opset=1, domain=ms,
         pads=[1, 1, 1, 1], activation="Relu")
    case("fusedconv_leaky", "FusedConv", [x, w, None], 1, opset=1, domain=ms,
         strides=[2, 2], activation="LeakyRelu", activation_params=[0.1])
    case("fusedconv_clip_dw", "FusedConv", [rnd(1, 4, 9, 9), rnd(4, 1, 3, 3), rnd(4)], 1,
         opset=1, domain=ms, group=4, pads=[1, 1, 1, 1], activation="Clip",
         activation_params=[0.0, 0.5])
    case("fusedconv_sigmoid_1x1", "FusedConv", [rnd(2, 8, 5, 5), rnd(3, 8, 1, 1), rnd(3)], 1,
         opset=1, domain=ms, activation="Sigmoid")
    case("fusedconv_tanh", "FusedConv", [x, w, b], 1, opset=1, domain=ms, activation="Tanh")
    case("fusedconv_hardsigmoid", "FusedConv", [x, w, b], 1, opset=1, domain=ms,
         pads=[1, 1, 1, 1], activation="HardSigmoid", activation_params=[0.3, 0.4])


def matmul_cases():
    case("matmul_2d", "MatMul", [rnd(5, 7), rnd(7, 3)], 1)
    case("matmul_batched", "MatMul", [rnd(2, 3, 4, 5), rnd(2, 3, 5, 6)], 1)
    case("matmul_broadcast", "MatMul", [rnd(2, 1, 4, 5), rnd(3, 5, 6)], 1)
    case("matmul_1d_left", "MatMul", [rnd(5), rnd(2, 5, 3)], 1)
    case("matmul_1d_right", "MatMul", [rnd(2, 4, 5), rnd(5)], 1)
    case("matmul_1d_both", "MatMul", [rnd(9), rnd(9)], 1)
    case("matmul_weights", "MatMul", [rnd(3, 10, 64), rnd(64, 100, scale=0.2)], 1)
    case("matmul_gemv", "MatMul", [rnd(1, 300), rnd(300, 70, scale=0.1)], 1)
    case("gemm_basic", "Gemm", [rnd(4, 6), rnd(6, 5), rnd(5)], 1, alpha=0.5, beta=2.0)
    case("gemm_trans", "Gemm", [rnd(6, 4), rnd(5, 6), rnd(4, 1)], 1, transA=1, transB=1)
    case("gemm_no_c", "Gemm", [rnd(3, 7), rnd(7, 2)], 1, alpha=1.5)
    case("gemm_scalar_c", "Gemm", [rnd(3, 7), rnd(2, 7), rnd(1)], 1, transB=1, beta=0.5)
    case("gemm_fc", "Gemm", [rnd(1, 200), rnd(30, 200, scale=0.1), rnd(30)], 1, transB=1)


def norm_cases():
    var = np.abs(rnd(3)) + 0.1
    case("batchnorm_4d", "BatchNormalization", [rnd(2, 3, 4, 5), rnd(3), rnd(3), rnd(3), var], 1, opset=15, epsilon=1e-3)
    case("batchnorm_3d", "BatchNormalization", [rnd(2, 3, 7), rnd(3), rnd(3), rnd(3), var], 1, opset=9)
    case("layernorm_last", "LayerNormalization", [rnd(2, 3, 8), rnd(8), rnd(8)], 3)
    case("layernorm_axis1", "LayerNormalization", [rnd(2, 3, 4), rnd(3, 4)], 3, axis=1, epsilon=1e-3)
    case("instancenorm", "InstanceNormalization", [rnd(2, 3, 4, 5), rnd(3), rnd(3)], 1)


def pool_cases():
    case("maxpool_basic", "MaxPool", [rnd(1, 2, 9, 9)], 1, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    case("maxpool_ceil", "MaxPool", [rnd(1, 1, 8, 8)], 1, kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    case("maxpool_ceil_pads", "MaxPool", [rnd(1, 2, 7, 6)], 1, kernel_shape=[2, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)
    case("maxpool_dilations", "MaxPool", [rnd(1, 2, 7, 7)], 1, kernel_shape=[2, 2], dilations=[2, 2])
    case("maxpool_same_upper", "MaxPool", [rnd(1, 2, 7, 7)], 1, kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")
    case("maxpool_indices", "MaxPool", [rnd(2, 2, 5, 6)], 2, kernel_shape=[2, 2], strides=[2, 2], opset=12)
    case("maxpool_1d", "MaxPool", [rnd(2, 3, 11)], 1, kernel_shape=[3], strides=[2], pads=[1, 0])
    case("maxpool_3d", "MaxPool", [rnd(1, 2, 4, 5, 6)], 1, kernel_shape=[2, 2, 3], strides=[2, 1, 2])
    case("avgpool_basic", "AveragePool", [rnd(1, 2, 9, 9)], 1, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    case("avgpool_include_pad", "AveragePool", [rnd(1, 2, 9, 9)], 1, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)
    case("avgpool_ceil_include_pad", "AveragePool", [rnd(1, 2, 8, 7)], 1, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 0], count_include_pad=1, ceil_mode=1)
    case("avgpool_same_lower", "AveragePool", [rnd(1, 2, 6, 7)], 1, kernel_shape=[2, 3], strides=[2, 2], auto_pad="SAME_LOWER")
    case("avgpool_1d", "AveragePool", [rnd(2, 3, 11)], 1, kernel_shape=[4], strides=[3])
    case("avgpool_3d", "AveragePool", [rnd(1, 2, 4, 5, 6)], 1, kernel_shape=[2, 3, 3], pads=[0, 1, 1, 1, 1, 0])
    case("global_avgpool", "GlobalAveragePool", [rnd(2, 3, 5, 6)], 1)
    case("global_maxpool", "GlobalMaxPool", [rnd(2, 3, 5, 6)], 1)


def rnn_cases():
    s, b, i, h = 5, 3, 4, 6
    case("lstm_forward", "LSTM", [rnd(s, b, i), rnd(1, 4 * h, i), rnd(1, 4 * h, h), rnd(1, 8 * h)], 3, hidden_size=h)
    lens = np.array([5, 2, 4], dtype=np.int32)
    case("lstm_bidirectional", "LSTM",
         [rnd(s, b, i), rnd(2, 4 * h, i), rnd(2, 4 * h, h), rnd(2, 8 * h), lens, rnd(2, b, h), rnd(2, b, h), rnd(2, 3 * h)],
         3, hidden_size=h, direction="bidirectional")
    case("lstm_reverse_clip", "LSTM", [rnd(s, b, i), rnd(1, 4 * h, i), rnd(1, 4 * h, h)], 2, hidden_size=h, direction="reverse", clip=0.7)
    case("lstm_activations", "LSTM", [rnd(s, b, i), rnd(1, 4 * h, i), rnd(1, 4 * h, h), rnd(1, 8 * h)], 3,
         hidden_size=h, activations=["HardSigmoid", "Tanh", "Softsign"], activation_alpha=[0.3], activation_beta=[0.4])
    case("lstm_layout1", "LSTM", [rnd(b, s, i), rnd(1, 4 * h, i), rnd(1, 4 * h, h), rnd(1, 8 * h), None, rnd(b, 1, h), rnd(b, 1, h)],
         3, hidden_size=h, layout=1, opset=14)
    case("gru_forward", "GRU", [rnd(s, b, i), rnd(1, 3 * h, i), rnd(1, 3 * h, h), rnd(1, 6 * h)], 2, hidden_size=h)
    case("gru_bidirectional_lbr", "GRU",
         [rnd(s, b, i), rnd(2, 3 * h, i), rnd(2, 3 * h, h), rnd(2, 6 * h), lens, rnd(2, b, h)],
         2, hidden_size=h, direction="bidirectional", linear_before_reset=1)
    case("gru_reverse", "GRU", [rnd(s, b, i), rnd(1, 3 * h, i), rnd(1, 3 * h, h), rnd(1, 6 * h), lens], 2, hidden_size=h, direction="reverse")


def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    os.makedirs(ROOT)
    conv_cases()
    matmul_cases()
    norm_cases()
    pool_cases()
    rnn_cases()
    fused_conv_cases()  # last: the cases above keep their random draws
    n = len(os.listdir(ROOT))
    print(f"wrote {n} cases to {os.path.normpath(ROOT)}")


if __name__ == "__main__":
    main()

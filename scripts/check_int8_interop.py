#!/usr/bin/env python3
"""Interop check for INT8 execution: MobileNetV2 (scripts/make_cnn_models.py) quantized
by onnxruntime's quantize_static in three formats (QDQ per-channel u8/s8, QDQ
per-tensor s8/s8, QOperator u8/s8), run by onnxruntime and by `edgeml run` (which fuses
the QDQ groups onto the INT8 kernels) on two inputs; the logits must agree within one
quantization step (the scale of the DequantizeLinear producing them) on >= 99.9% of
elements, or, where onnxruntime itself is not that stable, stay within onnxruntime's
own spread: its optimized run (fused INT8 kernels) against its unoptimized run
(ORT_DISABLE_ALL: QDQ executed node by node) on the same input. One-step rounding
differences of single elements compound through a deep network, and onnxruntime's two
modes differ by up to several steps on s8 activations. Calibration: 4 batches of smooth random images (blurred uniform noise in
[0, 1], normalised like ImageNet inputs): the weights are seeded, not trained, so this
checks arithmetic agreement, not accuracy. On CPUs where onnxruntime's u8 x s8 kernels
saturate (x86-64 without VNNI; scripts/ort_exact.py) the weights are quantized to 7 bits
(reduce_range=True) so that onnxruntime's results are exact.

Usage: python3 scripts/check_int8_interop.py EDGEML_BINARY WORKDIR
"""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from ort_exact import reduce_range  # noqa: E402

logging.getLogger().setLevel(logging.ERROR)
ort.set_default_logger_severity(3)
RNG = np.random.default_rng(7)


def image():
    x = RNG.uniform(0, 1, (1, 3, 56, 56)).astype(np.float32)
    x = np.repeat(np.repeat(x, 4, axis=2), 4, axis=3)  # 224x224, blocky like real images
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
    return (x - mean) / std


class Reader(CalibrationDataReader):
    def __init__(self):
        self.it = iter([{"input": image()} for _ in range(4)])

    def get_next(self):
        return next(self.it, None)


def out_step(path):
    m = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    prod = {o: n for n in m.graph.node for o in n.output}
    n = prod[m.graph.output[0].name]
    assert n.op_type == "DequantizeLinear", n.op_type
    return float(inits[n.input[1]].reshape(-1)[0])


def main():
    cli, work = sys.argv[1], sys.argv[2]
    fp = os.path.join(work, "mobilenet_v2.onnx")
    subprocess.run([sys.executable, os.path.join(HERE, "make_cnn_models.py"), "mobilenet_v2", fp], check=True)
    variants = {
        "qdq_u8s8_per_channel": dict(quant_format=QuantFormat.QDQ, per_channel=True,
                                     activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8),
        "qdq_s8s8_per_tensor": dict(quant_format=QuantFormat.QDQ, per_channel=False,
                                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8),
        "qoperator_u8s8": dict(quant_format=QuantFormat.QOperator, per_channel=False,
                               activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8),
    }
    rr = reduce_range("check_int8_interop")
    xs = [image() for _ in range(2)]
    failed = 0
    paths = None
    for name, kw in variants.items():
        q = os.path.join(work, f"mobilenet_v2_{name}.onnx")
        quantize_static(fp, q, Reader(), reduce_range=rr, **kw)
        step = out_step(q)
        sess = ort.InferenceSession(q, providers=["CPUExecutionProvider"])
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        plain = ort.InferenceSession(q, so, providers=["CPUExecutionProvider"])
        total = bad = 0
        worst = spread = 0.0
        for i, x in enumerate(xs):
            (want,) = sess.run(None, {"input": x})
            (ref,) = plain.run(None, {"input": x})
            spread = max(spread, float(np.abs(want - ref).max()))
            xin = os.path.join(work, f"x{i}.npy")
            np.save(xin, x)
            od = os.path.join(work, f"out_{name}_{i}")
            subprocess.run([cli, "run", q, "--input", f"input={xin}", "-o", od, "--threads", "2"], check=True,
                           capture_output=True)
            got = np.load(os.path.join(od, "logits.npy"))
            d = np.abs(got - want)
            total += d.size
            bad += int((d > step * 1.0001).sum())
            worst = max(worst, float(d.max()))
        ok = bad * 1000 <= total or worst <= spread * 1.0001
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {bad} of {total} logits differ by more than one step "
              f"({step:.4g}); max difference {worst / step:.2f} steps; onnxruntime optimized vs "
              f"unoptimized: {spread / step:.2f} steps")
        # Every INT8 kernel path this CPU has must give the same logits, bit for bit.
        if paths is None:
            rep = subprocess.run([cli, "bench", q, "--iters", "1", "--warmup", "0", "--json"], check=True,
                                 capture_output=True, text=True).stdout
            paths = json.loads(rep)["int8_available"]
        base = np.load(os.path.join(work, f"out_{name}_0", "logits.npy"))
        for p in paths:
            od = os.path.join(work, f"out_{name}_0_{p}")
            subprocess.run([cli, "run", q, "--input", f"input={os.path.join(work, 'x0.npy')}", "-o", od,
                            "--threads", "2"], check=True, capture_output=True,
                           env={**os.environ, "EDGEML_KERNELS": p})
            same = np.array_equal(np.load(os.path.join(od, "logits.npy")), base)
            failed += not same
            print(f"{'ok  ' if same else 'FAIL'} {name}: kernel path {p} gives the same logits bit for bit")
    if failed:
        sys.exit(f"{failed} INT8 interop checks failed")


if __name__ == "__main__":
    main()

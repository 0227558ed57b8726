#!/usr/bin/env python3
"""Quantize the bundled digits models with onnxruntime's quantizer and store, under
tests/fixtures/qmodels/<model>_<variant>/:

    model.onnx   the quantized model (QDQ or QOperator, static or dynamic)
    out0.npy     onnxruntime's output (probabilities) on tests/fixtures/digits/x_test.npy
    tol.txt      one quantization step of the logits (the scale of the tensor that
                 feeds the final Softmax): softmax moves a probability by at most half
                 the largest change of a logit, so outputs within one step of the
                 logits agree within this tolerance

On CPUs where onnxruntime's u8 x s8 kernels saturate (x86-64 without VNNI; see
scripts/ort_exact.py) the models are quantized with reduce_range=True (7-bit weights),
so that onnxruntime's outputs are the exact integer results edgeml computes.

Calibration uses the first 100 test images (the only split committed); the digits data
are real 8x8 handwritten digits (scikit-learn), not noise.

edgeml-quant/tests/onnx_models.rs runs each model with QDQ fusion and requires >= 99.9%
of output elements within tol of onnxruntime's. Set EDGEML_QMODELS_FIXTURES to write
elsewhere (CI regenerates them with the installed onnxruntime).

Usage: python3 scripts/make_qmodel_fixtures.py   (numpy, onnx, onnxruntime)
"""

import os
import shutil
import sys
import logging
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                      quantize_static)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from ort_exact import reduce_range  # noqa: E402

DIGITS = os.path.join(HERE, "..", "tests", "fixtures", "digits")
ROOT = os.environ.get("EDGEML_QMODELS_FIXTURES") or os.path.join(HERE, "..", "tests", "fixtures", "qmodels")
ort.set_default_logger_severity(3)
logging.getLogger().setLevel(logging.ERROR)


class Reader(CalibrationDataReader):
    def __init__(self, x):
        self.it = iter([{"x": x[i:i + 10]} for i in range(0, len(x), 10)])

    def get_next(self):
        return next(self.it, None)


def logit_step(model):
    """The scale of the DequantizeLinear feeding the final Softmax (its input's step)."""
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    sm = [n for n in g.node if n.op_type == "Softmax"]
    # QOperator models run Softmax quantized (com.microsoft QLinearSoftmax): then the
    # step is that of the DequantizeLinear producing the output.
    n = prod.get(sm[0].input[0]) if sm else prod.get(g.output[0].name)
    while n is not None and n.op_type != "DequantizeLinear":
        n = prod.get(n.input[0])
    if n is None:
        raise SystemExit("no DequantizeLinear before Softmax")
    return float(inits[n.input[1]].reshape(-1)[0])


VARIANTS = {
    "qdq_u8s8_per_channel": dict(quant_format=QuantFormat.QDQ, per_channel=True,
                                 activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8),
    "qdq_s8s8_per_tensor": dict(quant_format=QuantFormat.QDQ, per_channel=False,
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8),
    "qoperator_u8s8_per_tensor": dict(quant_format=QuantFormat.QOperator, per_channel=False,
                                      activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8),
}


def main():
    x = np.load(os.path.join(DIGITS, "x_test.npy"))
    if os.path.isdir(ROOT) and not os.environ.get("EDGEML_QMODELS_FIXTURES"):
        shutil.rmtree(ROOT)
    os.makedirs(ROOT, exist_ok=True)
    rr = reduce_range("make_qmodel_fixtures")
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for name in ["cnn", "mlp"]:
            src = os.path.join(DIGITS, f"{name}.onnx")
            for var, kw in VARIANTS.items():
                out = os.path.join(tmp, f"{name}_{var}.onnx")
                quantize_static(src, out, Reader(x[:100]), reduce_range=rr, **kw)
                jobs.append((f"{name}_{var}", out))
            if name == "mlp":
                out = os.path.join(tmp, f"{name}_dynamic_u8.onnx")
                quantize_dynamic(src, out, weight_type=QuantType.QInt8, reduce_range=rr)
                jobs.append((f"{name}_dynamic_u8", out))
        for case, path in jobs:
            m = onnx.load(path)
            d = os.path.join(ROOT, case)
            os.makedirs(d, exist_ok=True)
            onnx.save(m, os.path.join(d, "model.onnx"))
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            (probs,) = sess.run(None, {"x": x})
            np.save(os.path.join(d, "out0.npy"), probs)
            if "dynamic" in case:
                # Activations are quantized per batch at run time; a one-step change of
                # an input code moves a logit by about its scale times a weight row's
                # L1 norm: allow 0.02 on probabilities.
                tol = 0.02
            else:
                tol = logit_step(m)
            with open(os.path.join(d, "tol.txt"), "w") as fh:
                fh.write(f"{tol!r}\n")
            ops = sorted({(n.domain or "") + ":" + n.op_type for n in m.graph.node})
            acc = float((probs.argmax(1) == np.load(os.path.join(DIGITS, "y_test.npy"))).mean())
            print(f"{case}: accuracy {acc:.4f}, tol {tol:.4g}, ops {ops}")


if __name__ == "__main__":
    main()

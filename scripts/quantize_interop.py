#!/usr/bin/env python3
"""Interop and accuracy check of `edgeml quantize` against onnxruntime.

For the bundled digits CNN and MLP, per-tensor and per-channel weights, MinMax
calibration on the first 100 test images (batches of 10), and per-channel with the
entropy and percentile methods (against onnxruntime's same method):
1. `edgeml quantize` writes a QDQ model; onnxruntime must load and run it;
2. onnxruntime's outputs and `edgeml run`'s agree within one quantization step (the
   scale of the DequantizeLinear feeding the final Softmax, through float ops) on >= 99.9% of elements;
3. onnxruntime's own `quantize_static` (QDQ, u8 activations, s8 weights, same
   calibration batches) quantizes the same model; accuracies on all 450 test images
   are printed side by side, and ours must be >= theirs - 0.5 point.
Then `--format qoperator` (standard operators only) and `--format qoperator --contrib-ops`,
per-channel MinMax, with the same checks against onnxruntime's QOperator quantize_static.
Then `--mode weight-only`, `--mode fp16-weights` and `--mode bf16` (outputs within 1e-5 of onnxruntime's,
accuracy within 1 point of float), `--mode fp16` (a float16 model: onnxruntime runs it, and
onnxconverter-common's convert_float_to_float16 on the same model, within 2.5e-3 of `edgeml run`), and `--mode dynamic`
(per-tensor, per-channel, and per-channel with `--contrib-ops`, i.e. DynamicQuantizeMatMul): onnxruntime runs it, its outputs agree with `edgeml run`'s
within 1e-4 on >= 99.9% of elements (DynamicQuantizeLinear and the integer products
are exact in both; only the float scaling and Softmax round), accuracy within 1 point
of float and >= onnxruntime's `quantize_dynamic` (s8 weights) - 0.5 point.

Usage: python3 scripts/quantize_interop.py EDGEML_BINARY   (numpy, onnx, onnxruntime, onnxconverter-common)
"""
import logging
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnxconverter_common import float16
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)

HERE = os.path.dirname(os.path.abspath(__file__))
DIGITS = os.path.join(HERE, "..", "tests", "fixtures", "digits")
ort.set_default_logger_severity(3)
logging.getLogger().setLevel(logging.ERROR)


class Reader(CalibrationDataReader):
    def __init__(self, x):
        self.it = iter([{"x": x[i:i + 10]} for i in range(0, len(x), 10)])

    def get_next(self):
        return next(self.it, None)


def softmax_step(path):
    m = onnx.load(path)
    g = m.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    sm = [n for n in g.node if n.op_type == "Softmax"][0]
    # Float ops between (the MLP's bias Add) are exact in both runtimes: walk back.
    n = prod.get(sm.input[0])
    while n is not None and n.op_type != "DequantizeLinear":
        n = prod.get(n.input[0])
    if n is None:
        raise SystemExit(f"{path}: no DequantizeLinear before Softmax")
    return float(inits[n.input[1]].reshape(-1)[0])


def ort_run(path, x, optimize=True):
    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def main():
    edgeml = sys.argv[1]
    x = np.load(os.path.join(DIGITS, "x_test.npy"))
    y = np.load(os.path.join(DIGITS, "y_test.npy"))
    acc = lambda p: float((p.argmax(1) == y).mean())
    failures = []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        calib = os.path.join(tmp, "calib.npy")
        np.save(calib, x[:100])
        xin = os.path.join(tmp, "x.npy")
        np.save(xin, x)
        for name in ["cnn", "mlp"]:
            src = os.path.join(DIGITS, f"{name}.onnx")
            float_acc = acc(ort_run(src, x))
            for per_channel in [False, True]:
                tag = f"{name} {'per-channel' if per_channel else 'per-tensor'}"
                ours = os.path.join(tmp, f"{name}_{per_channel}.onnx")
                cmd = [edgeml, "quantize", src, "-o", ours, "--calibration", calib]
                if per_channel:
                    cmd.append("--per-channel")
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                onnx.checker.check_model(onnx.load(ours))
                p_ort = ort_run(ours, x)
                outdir = os.path.join(tmp, f"out_{name}_{per_channel}")
                subprocess.run([edgeml, "run", ours, "-i", xin, "-o", outdir, "--threads", "1"], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                p_ours = np.load(os.path.join(outdir, "probs.npy"))
                tol = softmax_step(ours)
                within = float((np.abs(p_ours - p_ort) <= tol * 1.0001).mean())
                theirs = os.path.join(tmp, f"{name}_{per_channel}_ort.onnx")
                quantize_static(src, theirs, Reader(x[:100]), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
                acc_ours, acc_theirs = acc(p_ort), acc(ort_run(theirs, x))
                size = os.path.getsize(ours) / os.path.getsize(src)
                size_theirs = os.path.getsize(theirs) / os.path.getsize(src)
                rows.append((tag, float_acc, acc_ours, acc(p_ours), acc_theirs, size, size_theirs, within))
                if within < 0.999:
                    failures.append(f"{tag}: only {within:.4%} of outputs within {tol:.3g} of onnxruntime")
                if acc_ours < acc_theirs - 0.005:
                    failures.append(f"{tag}: accuracy {acc_ours:.4f} < onnxruntime's quantizer {acc_theirs:.4f} - 0.005")
            # Histogram methods, per-channel: ours against onnxruntime's same method
            # (its own defaults: Entropy 128 bins, Percentile 2048 bins / 99.999).
            for method, cm in [("entropy", CalibrationMethod.Entropy), ("percentile", CalibrationMethod.Percentile)]:
                tag = f"{name} per-channel {method}"
                ours = os.path.join(tmp, f"{name}_{method}.onnx")
                subprocess.run([edgeml, "quantize", src, "-o", ours, "--calibration", calib, "--per-channel",
                                "--method", method], check=True, stdout=subprocess.DEVNULL)
                onnx.checker.check_model(onnx.load(ours))
                p_ort = ort_run(ours, x)
                outdir = os.path.join(tmp, f"out_{name}_{method}")
                subprocess.run([edgeml, "run", ours, "-i", xin, "-o", outdir, "--threads", "1"], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                p_ours = np.load(os.path.join(outdir, "probs.npy"))
                tol = softmax_step(ours)
                within = float((np.abs(p_ours - p_ort) <= tol * 1.0001).mean())
                theirs = os.path.join(tmp, f"{name}_{method}_ort.onnx")
                quantize_static(src, theirs, Reader(x[:100]), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=cm)
                acc_ours, acc_theirs = acc(p_ort), acc(ort_run(theirs, x))
                rows.append((tag, float_acc, acc_ours, acc(p_ours), acc_theirs, os.path.getsize(ours) / os.path.getsize(src),
                             os.path.getsize(theirs) / os.path.getsize(src), within))
                if within < 0.999:
                    failures.append(f"{tag}: only {within:.4%} of outputs within {tol:.3g} of onnxruntime")
                if acc_ours < acc_theirs - 0.005:
                    failures.append(f"{tag}: accuracy {acc_ours:.4f} < onnxruntime's quantizer {acc_theirs:.4f} - 0.005")
            # QOperator output (standard operators, then with onnxruntime's contrib
            # operators), per-channel MinMax, against onnxruntime's QOperator quantizer.
            for extra in [[], ["--contrib-ops"]]:
                tag = f"{name} per-channel qoperator{' + contrib ops' if extra else ''}"
                ours = os.path.join(tmp, f"{name}_qop{len(extra)}.onnx")
                subprocess.run([edgeml, "quantize", src, "-o", ours, "--calibration", calib, "--per-channel",
                                "--format", "qoperator"] + extra, check=True, stdout=subprocess.DEVNULL)
                onnx.checker.check_model(onnx.load(ours))
                domains = {n.domain for n in onnx.load(ours).graph.node}
                if domains - ({"", "com.microsoft"} if extra else {""}):
                    failures.append(f"{tag}: unexpected operator domains {domains}")
                p_ort = ort_run(ours, x)
                outdir = os.path.join(tmp, f"out_{name}_qop{len(extra)}")
                subprocess.run([edgeml, "run", ours, "-i", xin, "-o", outdir, "--threads", "1"], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                p_ours = np.load(os.path.join(outdir, "probs.npy"))
                tol = softmax_step(ours)
                within = float((np.abs(p_ours - p_ort) <= tol * 1.0001).mean())
                theirs = os.path.join(tmp, f"{name}_qop_ort.onnx")
                quantize_static(src, theirs, Reader(x[:100]), quant_format=QuantFormat.QOperator, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
                acc_ours, acc_theirs = acc(p_ort), acc(ort_run(theirs, x))
                rows.append((tag, float_acc, acc_ours, acc(p_ours), acc_theirs, os.path.getsize(ours) / os.path.getsize(src),
                             os.path.getsize(theirs) / os.path.getsize(src), within))
                if within < 0.999:
                    failures.append(f"{tag}: only {within:.4%} of outputs within {tol:.3g} of onnxruntime")
                if acc_ours < acc_theirs - 0.005:
                    failures.append(f"{tag}: accuracy {acc_ours:.4f} < onnxruntime's quantizer {acc_theirs:.4f} - 0.005")
            # Weight-only: float compute on the dequantized weights in both runtimes.
            wo = os.path.join(tmp, f"{name}_wo.onnx")
            subprocess.run([edgeml, "quantize", src, "-o", wo, "--mode", "weight-only", "--per-channel"], check=True,
                           stdout=subprocess.DEVNULL)
            onnx.checker.check_model(onnx.load(wo))
            acc_wo_ort = acc(ort_run(wo, x))
            # onnxruntime's optimizer rewrites DQ(weight) -> MatMul into a MatMul with
            # dynamically quantized activations (up to 0.016 off on the MLP's
            # probabilities); unoptimized, it computes the model as written.
            p_ort = ort_run(wo, x, optimize=False)
            outdir = os.path.join(tmp, f"out_{name}_wo")
            subprocess.run([edgeml, "run", wo, "-i", xin, "-o", outdir, "--threads", "1"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            p_ours = np.load(os.path.join(outdir, "probs.npy"))
            within = float((np.abs(p_ours - p_ort) <= 1e-5).mean())
            rows.append((f"{name} weight-only per-channel", float_acc, acc_wo_ort, acc(p_ours), float("nan"),
                         os.path.getsize(wo) / os.path.getsize(src), float("nan"), within))
            if within < 0.999:
                failures.append(f"{name} weight-only: only {within:.4%} of outputs within 1e-5 of onnxruntime")
            # FP16 and BF16 weights: float compute on the rounded weights in both runtimes.
            for half in ("fp16-weights", "bf16"):
                h16 = os.path.join(tmp, f"{name}_{half}.onnx")
                subprocess.run([edgeml, "quantize", src, "-o", h16, "--mode", half], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                onnx.checker.check_model(onnx.load(h16))
                p_ort = ort_run(h16, x)
                outdir = os.path.join(tmp, f"out_{name}_{half}")
                subprocess.run([edgeml, "run", h16, "-i", xin, "-o", outdir, "--threads", "1"], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                p_ours = np.load(os.path.join(outdir, "probs.npy"))
                within = float((np.abs(p_ours - p_ort) <= 1e-5).mean())
                label = "fp16 weights" if half == "fp16-weights" else "bf16 weights"
                rows.append((f"{name} {label}", float_acc, acc(p_ort), acc(p_ours), float("nan"),
                             os.path.getsize(h16) / os.path.getsize(src), float("nan"), within))
                if within < 0.999:
                    failures.append(f"{name} {half}: only {within:.4%} of outputs within 1e-5 of onnxruntime")
                if acc(p_ort) < float_acc - 0.01:
                    failures.append(f"{name} {half}: accuracy {acc(p_ort):.4f} < float {float_acc:.4f} - 0.01")
            # Whole-graph float16 against onnxconverter-common's convert_float_to_float16
            # (keep_io_types=True) on the same model: both files in onnxruntime, ours also in
            # edgeml, within 2.5e-3 on the probabilities (a float16 step at the logits,
            # through the Softmax).
            h16 = os.path.join(tmp, f"{name}_fp16.onnx")
            subprocess.run([edgeml, "quantize", src, "-o", h16, "--mode", "fp16"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            onnx.checker.check_model(onnx.load(h16), full_check=True)
            theirs = os.path.join(tmp, f"{name}_fp16_occ.onnx")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                onnx.save(float16.convert_float_to_float16(onnx.load(src), keep_io_types=True), theirs)
            p_ort = ort_run(h16, x)
            outdir = os.path.join(tmp, f"out_{name}_fp16")
            subprocess.run([edgeml, "run", h16, "-i", xin, "-o", outdir, "--threads", "1"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            p_ours = np.load(os.path.join(outdir, "probs.npy"))
            within = float((np.abs(p_ours - p_ort) <= 2.5e-3).mean())
            p_theirs = ort_run(theirs, x)
            rows.append((f"{name} fp16 (float16 model)", float_acc, acc(p_ort), acc(p_ours), acc(p_theirs),
                         os.path.getsize(h16) / os.path.getsize(src), os.path.getsize(theirs) / os.path.getsize(src),
                         within))
            if within < 0.999:
                failures.append(f"{name} fp16: only {within:.4%} of outputs within 2.5e-3 of onnxruntime")
            if np.abs(p_ort - p_theirs).max() > 2.5e-3:
                failures.append(f"{name} fp16: onnxruntime's outputs on our file and onnxconverter-common's differ "
                                f"by {np.abs(p_ort - p_theirs).max():.3g}")
            if acc(p_ort) < float_acc - 0.01:
                failures.append(f"{name} fp16: accuracy {acc(p_ort):.4f} < float {float_acc:.4f} - 0.01")
            for per_channel, contrib in [(False, False), (True, False), (True, True)]:
                tag = (f"{name} dynamic {'per-channel' if per_channel else 'per-tensor'}"
                       f"{' + contrib ops' if contrib else ''}")
                dyn = os.path.join(tmp, f"{name}_dyn_{per_channel}_{contrib}.onnx")
                cmd = [edgeml, "quantize", src, "-o", dyn, "--mode", "dynamic"]
                if per_channel:
                    cmd.append("--per-channel")
                if contrib:
                    cmd.append("--contrib-ops")
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                onnx.checker.check_model(onnx.load(dyn))
                p_ort = ort_run(dyn, x)
                outdir = os.path.join(tmp, f"out_{name}_dyn_{per_channel}_{contrib}")
                subprocess.run([edgeml, "run", dyn, "-i", xin, "-o", outdir, "--threads", "1"], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                p_ours = np.load(os.path.join(outdir, "probs.npy"))
                within = float((np.abs(p_ours - p_ort) <= 1e-4).mean())
                theirs = os.path.join(tmp, f"{name}_dyn_{per_channel}_ort.onnx")
                quantize_dynamic(src, theirs, per_channel=per_channel, weight_type=QuantType.QInt8)
                acc_ours, acc_theirs = acc(p_ort), acc(ort_run(theirs, x))
                rows.append((tag, float_acc, acc_ours, acc(p_ours), acc_theirs, os.path.getsize(dyn) / os.path.getsize(src),
                             os.path.getsize(theirs) / os.path.getsize(src), within))
                if within < 0.999:
                    failures.append(f"{tag}: only {within:.4%} of outputs within 1e-4 of onnxruntime")
                if acc_ours < float_acc - 0.01:
                    failures.append(f"{tag}: accuracy {acc_ours:.4f} < float {float_acc:.4f} - 0.01")
                if acc_ours < acc_theirs - 0.005:
                    failures.append(f"{tag}: accuracy {acc_ours:.4f} < onnxruntime's quantize_dynamic "
                                    f"{acc_theirs:.4f} - 0.005")
    print("| model | float | edgeml quantize (onnxruntime run) | (edgeml run) | onnxruntime quantize_static/dynamic "
          "| size edgeml | size onnxruntime | outputs within tolerance |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        theirs = "—" if np.isnan(r[4]) else f"{r[4]:.4f}"
        size_theirs = "—" if np.isnan(r[6]) else f"{r[6]:.1%}"
        print(f"| {r[0]} | {r[1]:.4f} | {r[2]:.4f} | {r[3]:.4f} | {theirs} | {r[5]:.1%} | {size_theirs} "
              f"| {r[7]:.2%} |")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

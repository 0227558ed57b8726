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
The digits CNN with its image given as two inputs (top and bottom halves, a Concat
before the CNN), calibrated from one `.npz` holding both, against onnxruntime's
quantize_static fed a dict per batch: the same checks as 1-3.
Then `--format qoperator` (standard operators only) and `--format qoperator --contrib-ops`,
per-channel MinMax, with the same checks against onnxruntime's QOperator quantize_static.
Then `--mode weight-only`, `--mode fp16-weights` and `--mode bf16` (outputs within 1e-5 of onnxruntime's,
accuracy within 1 point of float), `--mode fp16` (a float16 model: onnxruntime runs it, and
onnxconverter-common's convert_float_to_float16 on the same model, within 2.5e-3 of `edgeml run`), and `--mode dynamic`
(per-tensor, per-channel, and per-channel with `--contrib-ops`, i.e. DynamicQuantizeMatMul): onnxruntime runs it, its outputs agree with `edgeml run`'s
within 1e-4 on >= 99.9% of elements (DynamicQuantizeLinear and the integer products
are exact in both; only the float scaling and Softmax round), accuracy within 1 point
of float and >= onnxruntime's `quantize_dynamic` (s8 weights) - 0.5 point.

On CPUs where onnxruntime's u8 x s8 kernels saturate (x86-64 without VNNI;
scripts/ort_exact.py) every integer-compute model, ours and onnxruntime's, is quantized
with 7-bit weights (`--reduce-range`, `reduce_range=True`), so that onnxruntime computes
the exact integer results the agreement checks compare against.

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
sys.path.insert(0, HERE)
from ort_exact import reduce_range  # noqa: E402

DIGITS = os.path.join(HERE, "..", "tests", "fixtures", "digits")
ort.set_default_logger_severity(3)
logging.getLogger().setLevel(logging.ERROR)


class Reader(CalibrationDataReader):
    """Batches of 10 samples; `feeds` maps each input name to its samples."""

    def __init__(self, feeds):
        n = len(next(iter(feeds.values())))
        self.it = iter([{k: v[i:i + 10] for k, v in feeds.items()} for i in range(0, n, 10)])

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


def ort_run(path, feeds, optimize=True):
    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return s.run(None, feeds)[0]


def two_input_cnn(src, dst):
    """The CNN at `src` with its input `x` [N, 1, 8, 8] given as `top` and `bottom` [N, 1, 4, 8]."""
    m = onnx.load(src)
    g = m.graph
    x = [i for i in g.input if i.name == "x"][0]
    g.input.remove(x)
    for name in ("top", "bottom"):
        g.input.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["N", 1, 4, 8]))
    g.node.insert(0, onnx.helper.make_node("Concat", ["top", "bottom"], ["x"], axis=2))
    onnx.save(m, dst)


class Checks:
    """Runs a quantized file in onnxruntime and `edgeml run`, and records a table row and failures."""

    def __init__(self, edgeml, tmp, y, rr):
        self.edgeml, self.tmp, self.y, self.rr = edgeml, tmp, y, rr
        self.rows, self.failures = [], []

    def acc(self, p):
        return float((p.argmax(1) == self.y).mean())

    def quantize(self, src, out, args, integer=True):
        """`integer`: the model computes on integers (static and dynamic modes), so it
        takes `--reduce-range` where onnxruntime's kernels would saturate."""
        args = args + (["--reduce-range"] if integer and self.rr else [])
        subprocess.run([self.edgeml, "quantize", src, "-o", out] + args, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return out

    def edgeml_run(self, model, feeds):
        outdir = tempfile.mkdtemp(dir=self.tmp)
        args = []
        for k, v in feeds.items():
            path = os.path.join(outdir, f"in_{k}.npy")
            np.save(path, v)
            args += ["-i", f"{k}={path}"]
        subprocess.run([self.edgeml, "run", model] + args + ["-o", outdir, "--threads", "1"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return np.load(os.path.join(outdir, "probs.npy"))

    def check(self, tag, src, ours, feeds, float_acc, tol=None, theirs=None, beat_theirs=True, near_float=None,
              ort_optimize=True, full_check=False):
        """`tol`: allowed output difference (default one quantization step before the Softmax);
        `theirs`: the reference quantizer's file (accuracy column; ours must be within 0.5 point
        when `beat_theirs`); `near_float`: allowed accuracy loss against float."""
        onnx.checker.check_model(onnx.load(ours), full_check=full_check)
        p_ort = ort_run(ours, feeds, optimize=ort_optimize)
        p_ours = self.edgeml_run(ours, feeds)
        tol = softmax_step(ours) * 1.0001 if tol is None else tol
        within = float((np.abs(p_ours - p_ort) <= tol).mean())
        acc_ours = self.acc(p_ort)
        acc_theirs = self.acc(ort_run(theirs, feeds)) if theirs else float("nan")
        size = lambda f: os.path.getsize(f) / os.path.getsize(src)
        self.rows.append((tag, float_acc, acc_ours, self.acc(p_ours), acc_theirs, size(ours),
                          size(theirs) if theirs else float("nan"), within))
        if within < 0.999:
            self.failures.append(f"{tag}: only {within:.4%} of outputs within {tol:.3g} of onnxruntime")
        if theirs and beat_theirs and acc_ours < acc_theirs - 0.005:
            self.failures.append(f"{tag}: accuracy {acc_ours:.4f} < the reference quantizer's {acc_theirs:.4f} - 0.005")
        if near_float is not None and acc_ours < float_acc - near_float:
            self.failures.append(f"{tag}: accuracy {acc_ours:.4f} < float {float_acc:.4f} - {near_float}")
        return p_ort


def main():
    edgeml = sys.argv[1]
    x = np.load(os.path.join(DIGITS, "x_test.npy"))
    y = np.load(os.path.join(DIGITS, "y_test.npy"))
    with tempfile.TemporaryDirectory() as tmp:
        rr = reduce_range("quantize_interop")
        c = Checks(edgeml, tmp, y, rr)
        calib = os.path.join(tmp, "calib.npy")
        np.save(calib, x[:100])
        feeds = {"x": x}
        static = lambda src, theirs, per_channel, **kw: quantize_static(
            src, theirs, Reader({k: v[:100] for k, v in feeds.items()}), per_channel=per_channel,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=rr, **kw)
        for name in ["cnn", "mlp"]:
            src = os.path.join(DIGITS, f"{name}.onnx")
            float_acc = c.acc(ort_run(src, feeds))
            out = lambda tag: os.path.join(tmp, f"{name}_{tag}.onnx")
            for per_channel in [False, True]:
                tag = f"{name} {'per-channel' if per_channel else 'per-tensor'}"
                ours = c.quantize(src, out(tag), ["--calibration", calib] + (["--per-channel"] if per_channel else []))
                static(src, out(tag + "_ort"), per_channel, quant_format=QuantFormat.QDQ)
                c.check(tag, src, ours, feeds, float_acc, theirs=out(tag + "_ort"))
            # Histogram methods, per-channel: ours against onnxruntime's same method
            # (its own defaults: Entropy 128 bins, Percentile 2048 bins / 99.999).
            for method, cm in [("entropy", CalibrationMethod.Entropy), ("percentile", CalibrationMethod.Percentile)]:
                tag = f"{name} per-channel {method}"
                ours = c.quantize(src, out(method), ["--calibration", calib, "--per-channel", "--method", method])
                static(src, out(method + "_ort"), True, quant_format=QuantFormat.QDQ, calibrate_method=cm)
                c.check(tag, src, ours, feeds, float_acc, theirs=out(method + "_ort"))
            # QOperator output (standard operators, then with onnxruntime's contrib
            # operators), per-channel MinMax, against onnxruntime's QOperator quantizer.
            static(src, out("qop_ort"), True, quant_format=QuantFormat.QOperator)
            for extra in [[], ["--contrib-ops"]]:
                tag = f"{name} per-channel qoperator{' + contrib ops' if extra else ''}"
                ours = c.quantize(src, out(f"qop{len(extra)}"),
                                  ["--calibration", calib, "--per-channel", "--format", "qoperator"] + extra)
                domains = {n.domain for n in onnx.load(ours).graph.node}
                if domains - ({"", "com.microsoft"} if extra else {""}):
                    c.failures.append(f"{tag}: unexpected operator domains {domains}")
                c.check(tag, src, ours, feeds, float_acc, theirs=out("qop_ort"))
            # Weight-only: float compute on the dequantized weights in both runtimes.
            # onnxruntime's optimizer rewrites DQ(weight) -> MatMul into a MatMul with
            # dynamically quantized activations (up to 0.016 off on the MLP's
            # probabilities); unoptimized, it computes the model as written.
            wo = c.quantize(src, out("wo"), ["--mode", "weight-only", "--per-channel"], integer=False)
            c.check(f"{name} weight-only per-channel", src, wo, feeds, float_acc, tol=1e-5, ort_optimize=False)
            # FP16 and BF16 weights: float compute on the rounded weights in both runtimes.
            for half, label in (("fp16-weights", "fp16 weights"), ("bf16", "bf16 weights")):
                h16 = c.quantize(src, out(half), ["--mode", half], integer=False)
                c.check(f"{name} {label}", src, h16, feeds, float_acc, tol=1e-5, near_float=0.01)
            # Whole-graph float16 against onnxconverter-common's convert_float_to_float16
            # (keep_io_types=True) on the same model: both files in onnxruntime, ours also in
            # edgeml, within 2.5e-3 on the probabilities (a float16 step at the logits,
            # through the Softmax).
            h16 = c.quantize(src, out("fp16"), ["--mode", "fp16"], integer=False)
            theirs = out("fp16_occ")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                onnx.save(float16.convert_float_to_float16(onnx.load(src), keep_io_types=True), theirs)
            p_ort = c.check(f"{name} fp16 (float16 model)", src, h16, feeds, float_acc, tol=2.5e-3, theirs=theirs,
                            beat_theirs=False, near_float=0.01, full_check=True)
            diff = np.abs(p_ort - ort_run(theirs, feeds)).max()
            if diff > 2.5e-3:
                c.failures.append(f"{name} fp16: onnxruntime's outputs on our file and onnxconverter-common's "
                                  f"differ by {diff:.3g}")
            # Dynamic: DynamicQuantizeLinear and the integer products are exact in both;
            # only the float scaling and Softmax round.
            for per_channel, contrib in [(False, False), (True, False), (True, True)]:
                tag = (f"{name} dynamic {'per-channel' if per_channel else 'per-tensor'}"
                       f"{' + contrib ops' if contrib else ''}")
                dyn = c.quantize(src, out(f"dyn_{per_channel}_{contrib}"),
                                 ["--mode", "dynamic"] + (["--per-channel"] if per_channel else [])
                                 + (["--contrib-ops"] if contrib else []))
                theirs = out(f"dyn_{per_channel}_ort")
                quantize_dynamic(src, theirs, per_channel=per_channel, weight_type=QuantType.QInt8, reduce_range=rr)
                c.check(tag, src, dyn, feeds, float_acc, tol=1e-4, theirs=theirs, near_float=0.01)
        # Two inputs: one .npz holding both, against onnxruntime fed a dict per batch.
        src = os.path.join(tmp, "cnn_two_inputs.onnx")
        two_input_cnn(os.path.join(DIGITS, "cnn.onnx"), src)
        feeds = {"top": np.ascontiguousarray(x[:, :, :4]), "bottom": np.ascontiguousarray(x[:, :, 4:])}
        npz = os.path.join(tmp, "calib_two.npz")
        np.savez(npz, **{k: v[:100] for k, v in feeds.items()})
        float_acc = c.acc(ort_run(src, feeds))
        for per_channel in [False, True]:
            tag = f"cnn, two inputs, {'per-channel' if per_channel else 'per-tensor'}"
            ours = c.quantize(src, os.path.join(tmp, f"two_{per_channel}.onnx"),
                              ["--calibration", npz] + (["--per-channel"] if per_channel else []))
            theirs = os.path.join(tmp, f"two_{per_channel}_ort.onnx")
            static(src, theirs, per_channel, quant_format=QuantFormat.QDQ)
            c.check(tag, src, ours, feeds, float_acc, theirs=theirs)
    print("| model | float | edgeml quantize (onnxruntime run) | (edgeml run) | reference quantizer "
          "| size edgeml | size reference | outputs within tolerance |")
    print("|---|---|---|---|---|---|---|---|")
    for r in c.rows:
        theirs = "—" if np.isnan(r[4]) else f"{r[4]:.4f}"
        size_theirs = "—" if np.isnan(r[6]) else f"{r[6]:.1%}"
        print(f"| {r[0]} | {r[1]:.4f} | {r[2]:.4f} | {r[3]:.4f} | {theirs} | {r[5]:.1%} | {size_theirs} "
              f"| {r[7]:.2%} |")
    if c.failures:
        print("\n".join(c.failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

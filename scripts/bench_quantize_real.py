#!/usr/bin/env python3
"""Output SQNR of static INT8 quantization on trained models: `edgeml quantize` against
onnxruntime's `quantize_static` (QDQ, u8 activations, s8 weights) and, where it runs,
NNCF's `nncf.quantize` (ONNX backend, default preset), on the same calibration data.

Models (trained weights, from PyPI wheels, into target/real-models/; nothing committed):
  - yolov8n: nudenet 3.4.2 `320n.onnx` (YOLOv8n detector), 1x3x320x320;
  - ddddocr_ocr: ddddocr 1.6.1 `common.onnx` (CNN + LSTM OCR network), 1x1x64x256;
  - ppocr_cls: rapidocr-onnxruntime 1.4.4 `ch_ppocr_mobile_v2.0_cls_infer.onnx`
    (PaddleOCR's MobileNetV3 text-direction classifier), 1x3x48x192.
Models below opset 13 are converted to opset 13 (onnx.version_converter) first, for
per-channel QDQ; both tools quantize the same converted file.
Data (no Gaussian noise): crops, flips and rescalings of scikit-learn's two sample
photographs for the detector; text lines rendered with Pillow's default font for the
OCR models, normalised as each model's package does. Calibration: 32 samples in
batches of 8 (of 1 where the model fixes its batch at 1); evaluation: `--eval` other
samples (32 by default; BENCHMARKS.md uses 256, since on a two-class Softmax a few
ambiguous samples dominate the SQNR of a small set).

onnxruntime quantizes both the model as given and the output of its own
`quant_pre_process` (which folds BatchNormalization, as edgeml quantize does itself);
the better SQNR is reported. NNCF gets the 32 calibration samples one by one.

Output SQNR: the float model's outputs y against the quantized model's y^ on the
evaluation samples, both run by onnxruntime: 10 log10(sum y^2 / sum (y - y^)^2), the
lowest over the model's float outputs. The quantized models run with onnxruntime's graph
optimizations off, as written (QuantizeLinear, float operator, DequantizeLinear): its
fused u8 x s8 kernels saturate on x86-64 without VNNI (scripts/ort_exact.py), and the
numbers must not depend on the machine. Higher is better. Methods: MinMax per-tensor,
MinMax, Entropy and Percentile (99.999) per-channel, each tool with its own defaults
for the method.

    python3 scripts/bench_quantize_real.py [--models yolov8n,...] [--eval 256] [--edgeml target/release/edgeml]

Prints a Markdown table for BENCHMARKS.md ("Quantization accuracy on trained models").
"""

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "target", "real-models")
MODELS = {
    "yolov8n": ("nudenet==3.4.2", "nudenet/320n.onnx"),
    "ddddocr_ocr": ("ddddocr==1.6.1", "ddddocr/common.onnx"),
    "ppocr_cls": ("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
}
logging.getLogger().setLevel(logging.ERROR)
ort.set_default_logger_severity(3)


def fetch(req, member):
    """The model file, downloading the wheel once."""
    path = os.path.join(OUT, os.path.basename(os.path.dirname(member)) + "_" + os.path.basename(member))
    if member.startswith("nudenet/") or member.startswith("ddddocr/"):
        path = os.path.join(OUT, member.replace("/", "_"))  # as bench_real_models.py names them
    if os.path.exists(path):
        return path
    os.makedirs(OUT, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", OUT, req], check=True)
    name = req.split("==")[0].replace("-", "_")
    wheel = next(f for f in os.listdir(OUT) if f.startswith(name + "-") and f.endswith(".whl"))
    with zipfile.ZipFile(os.path.join(OUT, wheel)) as z, open(path, "wb") as f:
        f.write(z.read(member))
    return path


def photos(n, size, seed):
    """n RGB crops of the two scikit-learn sample photographs, [n, 3, size, size] in [0, 1]."""
    from PIL import Image
    from sklearn.datasets import load_sample_images
    imgs = load_sample_images().images
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = imgs[i % len(imgs)]
        h, w = img.shape[:2]
        s = int(rng.integers(size // 2, min(h, w)))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        crop = Image.fromarray(img[y:y + s, x:x + s]).resize((size, size), Image.BILINEAR)
        a = np.asarray(crop, dtype=np.float32) / 255.0
        if rng.random() < 0.5:
            a = a[:, ::-1]
        out.append(a.transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(out))


def text_lines(n, h, w, channels, seed):
    """n rendered text lines, [n, channels, h, w], normalised to [-1, 1] as PaddleOCR and
    ddddocr do ((x / 255 - 0.5) / 0.5)."""
    from PIL import Image, ImageDraw, ImageFont
    rng = np.random.default_rng(seed)
    chars = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz0123456789"
    out = []
    for _ in range(n):
        text = "".join(rng.choice(list(chars), int(rng.integers(4, 12))))
        bg, fg = int(rng.integers(180, 256)), int(rng.integers(0, 90))
        img = Image.new("L", (w * 2, h * 2), bg)
        font = ImageFont.load_default(size=int(rng.integers(h, int(h * 1.6))))
        ImageDraw.Draw(img).text((int(rng.integers(2, 20)), int(rng.integers(0, h // 3))), text, fill=fg, font=font)
        if rng.random() < 0.5 and channels == 3:
            img = img.rotate(180)  # the classifier's other class
        a = np.asarray(img.resize((w, h), Image.BILINEAR), dtype=np.float32) / 255.0
        a = (a - 0.5) / 0.5
        out.append(np.repeat(a[None], channels, axis=0))
    return np.ascontiguousarray(np.stack(out))


def data(key, n, seed):
    if key == "yolov8n":
        return photos(n, 320, seed)
    if key == "ddddocr_ocr":
        return text_lines(n, 64, 256, 1, seed)
    return text_lines(n, 48, 192, 3, seed)


class Reader(CalibrationDataReader):
    def __init__(self, name, x, bs):
        self.it = iter([{name: x[i:i + bs]} for i in range(0, len(x), bs)])

    def get_next(self):
        return next(self.it, None)


def ort_outputs(path, name, x, bs, quantized=False):
    # Quantized models run as written: see the docstring.
    opts = ort.SessionOptions()
    if quantized:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    outs = [s.run(None, {name: x[i:i + bs]}) for i in range(0, len(x), bs)]
    return [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]


def sqnr(ref, got):
    worst = np.inf
    for r, g in zip(ref, got):
        if r.dtype.kind != "f":
            continue
        r, g = r.astype(np.float64), g.astype(np.float64)
        noise = ((r - g) ** 2).sum()
        worst = min(worst, np.inf if noise == 0 else 10 * np.log10((r ** 2).sum() / noise))
    return worst


# (label, per-channel, edgeml --method, onnxruntime's method, more edgeml flags)
CONFIGS = [
    ("MinMax, per-tensor", False, "minmax", CalibrationMethod.MinMax, []),
    ("MinMax, per-tensor, edgeml `--bias-check`", False, "minmax", CalibrationMethod.MinMax, ["--bias-check"]),
    ("MinMax, per-channel", True, "minmax", CalibrationMethod.MinMax, []),
    ("Entropy, per-channel", True, "entropy", CalibrationMethod.Entropy, []),
    ("Percentile, per-channel", True, "percentile", CalibrationMethod.Percentile, []),
]


def nncf_sqnr(src, name, calib, x, ref, tmp, bs):
    try:
        import nncf
    except ImportError:
        return None, "nncf not installed"
    try:
        q = nncf.quantize(onnx.load(src), nncf.Dataset([{name: calib[i:i + 1]} for i in range(len(calib))]),
                          subset_size=len(calib))
        path = os.path.join(tmp, "nncf.onnx")
        onnx.save(q, path)
        return sqnr(ref, ort_outputs(path, name, x, bs, quantized=True)), None
    except Exception as e:  # noqa: BLE001 - NNCF's own failures are reported, not fatal
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:100]}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--edgeml", default=os.path.join(ROOT, "target", "release", "edgeml"))
    ap.add_argument("--eval", type=int, default=32, help="evaluation samples per model (default 32)")
    args = ap.parse_args()
    rows, notes = [], []
    for key in args.models.split(","):
        src = fetch(*MODELS[key])
        m = onnx.load(src)
        if next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) < 13:
            # Per-channel QDQ needs opset 13 in both tools: convert once, quantize that.
            from onnx import version_converter
            src = src.replace(".onnx", "_opset13.onnx")
            if not os.path.exists(src):
                onnx.save(version_converter.convert_version(m, 13), src)
        first = onnx.load(src).graph.input[0]
        name = first.name
        # Batches of 8, or of 1 for a model whose batch dimension is fixed at 1.
        bs = 1 if first.type.tensor_type.shape.dim[0].dim_value == 1 else 8
        calib, x = data(key, 32, 1), data(key, args.eval, 2)
        ref = ort_outputs(src, name, x, bs)
        with tempfile.TemporaryDirectory() as tmp:
            pre = os.path.join(tmp, "pre.onnx")
            here = os.getcwd()
            os.chdir(tmp)  # quant_pre_process leaves temporary files in the working directory
            try:
                quant_pre_process(src, pre)
            except Exception:  # noqa: BLE001 - its symbolic shape inference gives up on some models
                quant_pre_process(src, pre, skip_symbolic_shape=True)
            finally:
                os.chdir(here)
            cpath = os.path.join(tmp, "calib.npy")
            np.save(cpath, calib)
            theirs_best = {}
            for label, per_channel, method, cm, extra in CONFIGS:
                ours = os.path.join(tmp, "ours.onnx")
                cmd = [args.edgeml, "quantize", src, "-o", ours, "--calibration", cpath, "--batch-size", str(bs),
                       "--method", method] + extra
                if per_channel:
                    cmd.append("--per-channel")
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    raise SystemExit(f"{key} {label}: edgeml quantize failed: {r.stderr}")
                # onnxruntime on the model as is and after its own quant_pre_process (which
                # folds BatchNormalization as edgeml quantize does); the better counts. Rows
                # that differ only in edgeml's flags share onnxruntime's result.
                if (per_channel, cm) not in theirs_best:
                    best = -np.inf
                    for i, model_in in enumerate([src, pre]):
                        theirs = os.path.join(tmp, f"ort{i}.onnx")
                        quantize_static(model_in, theirs, Reader(name, calib, bs), quant_format=QuantFormat.QDQ,
                                        per_channel=per_channel, activation_type=QuantType.QUInt8,
                                        weight_type=QuantType.QInt8, calibrate_method=cm)
                        best = max(best, sqnr(ref, ort_outputs(theirs, name, x, bs, quantized=True)))
                    theirs_best[(per_channel, cm)] = best
                best = theirs_best[(per_channel, cm)]
                rows.append((key, label, sqnr(ref, ort_outputs(ours, name, x, bs, quantized=True)), best, None))
                print(rows[-1], file=sys.stderr, flush=True)
            n, why = nncf_sqnr(src, name, calib, x, ref, tmp, bs)
            rows.append((key, "NNCF default preset", None, None, n))
            print(rows[-1], why or "", file=sys.stderr, flush=True)
            if why:
                notes.append(f"{key}: NNCF failed: {why}")
    print("| model | method | edgeml | onnxruntime | NNCF | edgeml − onnxruntime |")
    print("|---|---|---|---|---|---|")
    fmt = lambda v: "—" if v is None else f"{v:.2f} dB"
    for key, label, e, o, n in rows:
        diff = "—" if e is None or o is None else f"{e - o:+.2f} dB"
        print(f"| {key} | {label} | {fmt(e)} | {fmt(o)} | {fmt(n)} | {diff} |")
    for n in notes:
        print(n)


if __name__ == "__main__":
    main()

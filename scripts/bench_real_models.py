#!/usr/bin/env python3
"""Float latency on trained models shipped inside PyPI wheels: edgeml vs onnxruntime.

Models (downloaded with `pip download --no-deps` into target/real-models/, the ONNX file
extracted from the wheel; nothing is committed):
  - nudenet 3.4.2 `320n.onnx`: a YOLOv8n detector, input 1x3x320x320;
  - ddddocr 1.6.1 `common_det.onnx`: a detector, input 1x3x416x416;
  - ddddocr 1.6.1 `common.onnx`: its OCR network, input 1x1x64x256 (`common_old.onnx`
    is left out: its LSTM is onnxruntime's com.microsoft DynamicQuantizeLSTM, which
    edgeml does not implement).
Architectures exported with `torch.onnx` by scripts/make_torch_models.py (seeded weights;
needs `pip install torch torchvision onnxscript`, generated once into target/real-models/):
  - torchvision MobileNetV3-small, MobileNetV3-large and EfficientNet-B0, 1x3x224x224;
  - a BERT-mini-sized transformer encoder (4 layers, d_model 256), input 1x128x256.

Inputs are uniform [0, 1) images (latency only). Per model and thread count, in
--rounds interleaved rounds: onnxruntime (CPUExecutionProvider, sequential execution,
intra_op_num_threads = threads, default optimizations) and `edgeml bench --shape`.
Cells are medians of per-round medians, the ratio the median of per-round ratios. The
machine line names the CPU and edgeml's float kernel path. Run from the repository root:

    python3 scripts/bench_real_models.py [--rounds 5] [--threads 1,2] [--models yolov8n,...]

Prints a Markdown table for BENCHMARKS.md ("Float inference, trained models").
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import zipfile

import numpy as np
import onnxruntime as ort

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "target", "real-models")
# name -> (pip requirement, member of the wheel, input shape)
MODELS = {
    "yolov8n": ("nudenet==3.4.2", "nudenet/320n.onnx", [1, 3, 320, 320]),
    "ddddocr_det": ("ddddocr==1.6.1", "ddddocr/common_det.onnx", [1, 3, 416, 416]),
    "ddddocr_ocr": ("ddddocr==1.6.1", "ddddocr/common.onnx", [1, 1, 64, 256]),
    "mobilenet_v3_small": ("torch", None, [1, 3, 224, 224]),
    "mobilenet_v3_large": ("torch", None, [1, 3, 224, 224]),
    "efficientnet_b0": ("torch", None, [1, 3, 224, 224]),
    "transformer": ("torch", None, [1, 128, 256]),
}


def export(key):
    """A model exported by scripts/make_torch_models.py, once."""
    path = os.path.join(OUT, f"torch_{key}.onnx")
    if not os.path.exists(path):
        os.makedirs(OUT, exist_ok=True)
        script = os.path.join(ROOT, "scripts", "make_torch_models.py")
        subprocess.run([sys.executable, script, key, path], check=True)
    return path


def fetch(req, member):
    """The model file, downloading and extracting the wheel once."""
    path = os.path.join(OUT, member.replace("/", "_"))
    if os.path.exists(path):
        return path
    os.makedirs(OUT, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", OUT, req], check=True)
    name = req.split("==")[0]
    wheel = next(f for f in os.listdir(OUT) if f.startswith(name + "-") and f.endswith(".whl"))
    with zipfile.ZipFile(os.path.join(OUT, wheel)) as z, open(path, "wb") as f:
        f.write(z.read(member))
    return path


def ort_ms(path, shape, threads, iters, warmup):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(warmup):
        sess.run(None, feed)
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        sess.run(None, feed)
        ts.append((time.perf_counter() - t) * 1e3)
    return float(np.median(ts))


def edgeml_ms(cli, path, name, shape, threads, iters, warmup):
    out = subprocess.run(
        [cli, "bench", path, "--threads", str(threads), "--iters", str(iters), "--warmup", str(warmup),
         "--shape", f"{name}={','.join(map(str, shape))}", "--json"],
        check=True, capture_output=True, text=True).stdout
    return float(json.loads(out)["median_ms"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    os.chdir(ROOT)
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "edgeml-cli"], check=True)
    cli = os.path.join(ROOT, "target", "release", "edgeml")
    rows = []
    for key in args.models.split(","):
        req, member, shape = MODELS[key]
        path = export(key) if req == "torch" else fetch(req, member)
        iname = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).get_inputs()[0].name
        for t in [int(v) for v in args.threads.split(",")]:
            o, e = [], []
            for _ in range(args.rounds):
                o.append(ort_ms(path, shape, t, args.iters, args.warmup))
                e.append(edgeml_ms(cli, path, iname, shape, t, args.iters, args.warmup))
            o, e = np.array(o), np.array(e)
            row = (key, "x".join(map(str, shape)), t, float(np.median(o)), float(np.median(e)),
                   float(np.median(e / o)))
            rows.append(row)
            print("{} {} {}t: onnxruntime {:.2f} ms, edgeml {:.2f} ms, {:.2f}x".format(*row), flush=True)
    cpu = platform.machine()
    with open("/proc/cpuinfo") as f:
        names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
    if names:
        cpu = names[0]
    print()
    print(f"Machine: {cpu}, {os.cpu_count()} cores; onnxruntime {ort.__version__}; "
          f"edgeml float kernels: the best this CPU has (`EDGEML_KERNELS` unset)")
    print(f"Reproduce: `python3 scripts/bench_real_models.py --rounds {args.rounds}`")
    print()
    print("| model | input | threads | onnxruntime (ms) | edgeml (ms) | edgeml / onnxruntime |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print("| {} | {} | {} | {:.2f} | {:.2f} | {:.2f}x |".format(*r))


if __name__ == "__main__":
    main()

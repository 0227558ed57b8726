#!/usr/bin/env python3
"""INT8 model latency: edgeml vs onnxruntime on the same quantized files, same run.

Models: the digits CNN, and the MobileNetV2 and ResNet-50 architectures written by
scripts/make_cnn_models.py. Each is quantized by
`onnxruntime.quantization.quantize_static` (QDQ, per-channel, u8 activations, s8
weights; 7-bit weights with --reduce-range) with 8 calibration batches of uniform [-1, 1) inputs (speed only: accuracy
is measured elsewhere, on real data), into target/int8-models/.

Per model and thread count, in --rounds interleaved rounds: onnxruntime INT8 (it fuses
the QDQ groups itself), edgeml INT8 (`edgeml bench`, which fuses them too), edgeml
float and onnxruntime float on the float file; on a CPU whose best INT8 path is `amx`,
also edgeml INT8 forced to `avx512vnni` (EDGEML_KERNELS), so both paths are in one
table. Cells are medians of per-round medians; ratios are medians of per-round ratios.

    python3 scripts/bench_int8_models.py [--rounds 5] [--threads 1,2] [--models mobilenet_v2,...]
"""

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_float import edgeml_median_ms, ort_median_ms  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "target", "int8-models")
MODELS = {
    "digits_cnn": "tests/fixtures/digits/cnn.onnx",
    "mobilenet_v2": None,
    "resnet50": None,
}
logging.getLogger().setLevel(logging.ERROR)
ort.set_default_logger_severity(3)


class Reader(CalibrationDataReader):
    def __init__(self, name, shape):
        rng = np.random.default_rng(0)
        self.it = iter([{name: rng.uniform(-1, 1, shape).astype(np.float32)} for _ in range(8)])

    def get_next(self):
        return next(self.it, None)


def prepare(key, src, reduce_range=False):
    os.makedirs(OUT, exist_ok=True)
    fp = os.path.join(OUT, f"{key}_float.onnx")
    q = os.path.join(OUT, f"{key}_qdq{'_rr' if reduce_range else ''}.onnx")
    if os.path.exists(fp) and os.path.exists(q):
        return fp, q
    if os.path.exists(fp):
        pass
    elif src is None:
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_cnn_models.py"), key, fp], check=True)
    else:
        shutil.copy(os.path.join(ROOT, src), fp)
    m = onnx.load(fp)
    inp = m.graph.input[0]
    shape = [d.dim_value if d.dim_value > 0 else 1 for d in inp.type.tensor_type.shape.dim]
    quantize_static(fp, q, Reader(inp.name, shape), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=reduce_range)
    return fp, q


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--reduce-range", action="store_true",
                    help="quantize weights to 7 bits (onnxruntime's advice for CPUs without VNNI)")
    args = ap.parse_args()
    os.chdir(ROOT)
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "edgeml-cli"], check=True)
    cli = os.path.join(ROOT, "target", "release", "edgeml")
    probe = json.loads(subprocess.run([cli, "bench", os.path.join(ROOT, MODELS["digits_cnn"]), "--iters", "1",
                                       "--warmup", "0", "--json"], check=True, capture_output=True,
                                      text=True).stdout)
    best = probe["int8_kernels"]
    alt = "avx512vnni" if best == "amx" else None
    rows = []
    for key in args.models.split(","):
        fp, q = prepare(key, MODELS[key], args.reduce_range)
        for t in [int(x) for x in args.threads.split(",")]:
            r = {"ort_q": [], "em_q": [], "em_alt": [], "em_f": [], "ort_f": []}
            for _ in range(args.rounds):
                r["ort_q"].append(ort_median_ms(q, t, args.iters, args.warmup))
                r["em_q"].append(edgeml_median_ms(cli, q, t, args.iters, args.warmup))
                r["em_alt"].append(edgeml_median_ms(cli, q, t, args.iters, args.warmup, alt) if alt else np.nan)
                r["em_f"].append(edgeml_median_ms(cli, fp, t, args.iters, args.warmup))
                r["ort_f"].append(ort_median_ms(fp, t, args.iters, args.warmup))
            a = {k: np.array(v) for k, v in r.items()}
            row = (key, t, *(float(np.median(a[k])) for k in ("ort_q", "em_q", "em_alt", "em_f", "ort_f")),
                   float(np.median(a["em_q"] / a["ort_q"])), float(np.median(a["em_f"] / a["em_q"])),
                   float(np.median(a["ort_f"] / a["ort_q"])))
            rows.append(row)
            print("{} {}t: ort int8 {:.3f} ms, edgeml int8 {:.3f} ms (alt path {:.3f} ms), edgeml float {:.3f} ms, "
                  "ort float {:.3f} ms; edgeml/ort int8 {:.2f}x, edgeml float/int8 {:.2f}x, "
                  "ort float/int8 {:.2f}x".format(*row), flush=True)
    cpu = platform.machine()
    with open("/proc/cpuinfo") as f:
        names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
    if names:
        cpu = names[0]
    print()
    print(f"Machine: {cpu}, {os.cpu_count()} cores; edgeml INT8 kernels: `{best}`; onnxruntime {ort.__version__}")
    rr = " --reduce-range" if args.reduce_range else ""
    print(f"Reproduce: `python3 scripts/bench_int8_models.py --rounds {args.rounds}{rr}`")
    print()
    alt_head = f" edgeml INT8 `{alt}` (ms) |" if alt else ""
    print(f"| model | threads | onnxruntime INT8 (ms) | edgeml INT8 `{best}` (ms) |{alt_head} edgeml float (ms) "
          "| onnxruntime float (ms) | edgeml / onnxruntime INT8 | edgeml float / INT8 | onnxruntime float / INT8 |")
    print("|---|---:|---:|---:|" + ("---:|" if alt else "") + "---:|---:|---:|---:|---:|")
    for row in rows:
        cells = list(row)
        alt_cell = f" {cells[4]:.3f} |" if alt else ""
        print("| {} | {} | {:.3f} | {:.3f} |".format(*cells[:4]) + alt_cell
              + " {:.3f} | {:.3f} | {:.2f}x | {:.2f}x | {:.2f}x |".format(*cells[5:]))


if __name__ == "__main__":
    main()

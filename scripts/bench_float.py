#!/usr/bin/env python3
"""Float inference latency: edgeml (`edgeml bench --json`) vs onnxruntime, same run.

For every model and thread count, onnxruntime (CPUExecutionProvider, sequential
execution, `intra_op_num_threads` = threads, default graph optimizations) and the
edgeml CLI (built with `cargo build --release -p edgeml-cli`) are timed back to back on
batch-1 inputs, uniform in [-1, 1). Each side reports the median of `--iters` timed runs
after `--warmup` untimed runs. edgeml runs once with its default kernels (the best the
CPU has) and once forced to AVX2 (`EDGEML_KERNELS=avx2`) when the CPU has both.

The machine is shared and its speed drifts by tens of percent within a minute, so each
row is measured in `--rounds` interleaved rounds (onnxruntime, then edgeml, then
onnxruntime again, ...): a row reports the median over rounds of each engine's
per-round median, and the ratio is the median of the per-round ratios, so a slow spell
hits both engines of a round alike.

The table is printed and written into the "Float inference" section of BENCHMARKS.md.
Run from the repository root:

    python3 scripts/bench_float.py            # writes BENCHMARKS.md
    python3 scripts/bench_float.py --no-write # print only
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ort_exact import cpu_flags  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MODELS = [
    ("digits CNN", "tests/fixtures/digits/cnn.onnx"),
    ("ResNet-50 (light)", "tests/fixtures/models/light_resnet50.onnx"),
    ("SqueezeNet 1.1 (light)", "tests/fixtures/models/light_squeezenet.onnx"),
    ("ShuffleNet (light)", "tests/fixtures/models/light_shufflenet.onnx"),
]
DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def ort_median_ms(path, threads, iters, warmup):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
        dt = DTYPES.get(i.type, np.float32)
        if dt == np.float32:
            feeds[i.name] = rng.uniform(-1, 1, shape).astype(np.float32)
        else:
            feeds[i.name] = np.zeros(shape, dtype=dt)
    for _ in range(warmup):
        sess.run(None, feeds)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def edgeml_median_ms(cli, path, threads, iters, warmup, kernels=None):
    env = dict(os.environ)
    if kernels:
        env["EDGEML_KERNELS"] = kernels
    out = subprocess.run(
        [cli, "bench", path, "--threads", str(threads), "--iters", str(iters), "--warmup", str(warmup), "--json"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    return float(json.loads(out)["median_ms"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=20, help="timed runs per engine and round")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per row")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--no-build", action="store_true", help="use the existing target/release/edgeml")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args()
    os.chdir(ROOT)
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "edgeml-cli"], check=True)
    cli = os.path.join(ROOT, "target", "release", "edgeml")
    flags = cpu_flags()
    variants = [("default", None)]
    if "avx512f" in flags and "avx2" in flags:
        variants = [("avx512", None), ("avx2", "avx2")]
    threads = [int(t) for t in args.threads.split(",")]
    rows = []
    for name, rel in MODELS:
        if not os.path.exists(rel):
            print(f"skipping {name}: {rel} not found", file=sys.stderr)
            continue
        for t in threads:
            ort_runs, our_runs = [], {label: [] for label, _ in variants}
            for _ in range(max(1, args.rounds)):
                ort_runs.append(ort_median_ms(rel, t, args.iters, args.warmup))
                for label, k in variants:
                    our_runs[label].append(edgeml_median_ms(cli, rel, t, args.iters, args.warmup, k))
            ort_ms = float(np.median(ort_runs))
            ours = [
                (label, float(np.median(v)), float(np.median(np.array(v) / np.array(ort_runs))))
                for label, v in our_runs.items()
            ]
            rows.append((name, t, ort_ms, ours))
            cells = ", ".join(f"edgeml[{label}] {ms:.3f} ms ({r:.2f}x)" for label, ms, r in ours)
            print(f"{name:24s} {t}t  onnxruntime {ort_ms:8.3f} ms  {cells}", flush=True)

    labels = [label for label, _ in variants]
    head = "| model | threads | onnxruntime (ms) | " + " | ".join(f"edgeml {lb} (ms) | ratio {lb}" for lb in labels) + " |"
    sep = "|---|---:|---:|" + "---:|---:|" * len(labels)
    lines = [head, sep]
    for name, t, ort_ms, ours in rows:
        cells = " | ".join(f"{ms:.3f} | {r:.2f}x" for _, ms, r in ours)
        lines.append(f"| {name} | {t} | {ort_ms:.3f} | {cells} |")
    table = "\n".join(lines)
    print()
    print(table)
    if args.no_write:
        return
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        if names:
            cpu = f"{names[0]} ({platform.machine()})"
    except OSError:
        pass
    isas = "avx512" if "avx512f" in flags else ("avx2" if "avx2" in flags else platform.machine())
    forced = ", `avx2` column forced with `EDGEML_KERNELS=avx2`" if isas == "avx512" else ""
    no512 = " (no AVX-512)" if isas == "avx2" else ""
    reproduce = "python3 scripts/bench_float.py"
    for opt in ("rounds", "iters", "warmup"):
        if getattr(args, opt) != ap.get_default(opt):
            reproduce += f" --{opt} {getattr(args, opt)}"
    section = f"""## Float inference (edgeml-onnx vs onnxruntime)

Batch-1 latency: {args.rounds} interleaved rounds per row, each engine timed for
{args.iters} runs after {args.warmup} warm-up runs per round; a cell is the median of
the per-round medians, a ratio the median of the per-round ratios. Both engines timed
in the same run by `scripts/bench_float.py`
(onnxruntime {ort.__version__}, CPUExecutionProvider, sequential execution,
`intra_op_num_threads` = threads, its default graph optimizations and spinning
workers; edgeml through `edgeml bench --json`, release build, kernels picked at run
time{forced}, its default spinning workers). Ratio = edgeml / onnxruntime (lower is
better; goal ≤ 1.5).
Machine: {cpu}, best float kernels here: `{isas}`{no512}; {os.cpu_count()} cores shared with
other jobs, so absolute numbers are noisy; compare within a row.

Reproduce: `{reproduce}` (kernel-level SGEMM numbers:
`cargo bench -p edgeml-benches --bench float_gemm`).

{table}
"""
    path = os.path.join(ROOT, "BENCHMARKS.md")
    with open(path) as f:
        text = f.read()
    pat = re.compile(r"## Float inference.*?(?=\n## |\Z)", re.S)
    m = pat.search(text)
    if m:
        # Hand-written notes after the marker survive a re-run.
        old = m.group(0)
        notes = old[old.index("<!-- notes -->"):] if "<!-- notes -->" in old else ""
        new = section.rstrip("\n") + "\n" + ("\n" + notes.rstrip("\n") + "\n" if notes else "")
        text = text[: m.start()] + new + text[m.end():]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)
    print(f"updated {path}")


if __name__ == "__main__":
    main()

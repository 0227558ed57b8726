#!/usr/bin/env python3
"""Global magnitude pruning: edgeml-prune (benches/bin/prune_bench.rs) versus numpy's
np.partition idiom, single-threaded, measured in the same run. Prints a markdown table
for the "Pruning" section of BENCHMARKS.md.

numpy baseline (the usual idiom): flat = np.concatenate([np.abs(w).ravel() ...]);
thr = np.partition(flat, k - 1)[k - 1]; masks = [np.abs(w) > thr ...]. It allocates
the concatenated copy; ties at the threshold are not broken to an exact count.
Weights: 10 layers of 10 M float32 from a normal distribution (numpy's generator on
the Python side, an Irwin-Hall SplitMix64 stream on the Rust side: same shape of
distribution, not the same values).

Usage: python3 scripts/bench_prune.py [--no-cargo] [--layers L] [--len N] [--reps R]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[v] = "1"
import numpy as np  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def med_time(f, reps):
    f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def cpu():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def numpy_global(layers, sparsity):
    total = sum(w.size for w in layers)
    k = round(sparsity * total)
    flat = np.concatenate([np.abs(w).ravel() for w in layers])
    thr = np.partition(flat, k - 1)[k - 1]
    return [np.abs(w) > thr for w in layers]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-cargo", action="store_true")
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--len", type=int, default=10_000_000)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    rows = []
    if not a.no_cargo:
        cmd = ["cargo", "run", "--release", "--locked", "-q", "-p", "edgeml-benches",
               "--bin", "prune_bench", "--", str(a.layers), str(a.len), str(a.reps)]
        out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            r = json.loads(line)
            rows.append((f"edgeml `{r['bench']}`", r["weights"], r["layers"], r["sparsity"],
                         r["seconds"]))
    rng = np.random.default_rng(0)
    layers = [rng.standard_normal(a.len, dtype=np.float32) * np.float32(0.05)
              for _ in range(a.layers)]
    total = a.layers * a.len
    for s in (0.5, 0.9):
        t = med_time(lambda: numpy_global(layers, s), a.reps)
        rows.append(("numpy concatenate + `np.partition`", total, a.layers, s, t))
    print(f"CPU: {cpu()}; numpy {np.__version__}; single thread; median of {a.reps} runs\n")
    print("| implementation | weights | layers | sparsity | time (s) |")
    print("|---|---:|---:|---:|---:|")
    for name, n, l, s, t in sorted(rows, key=lambda r: (r[3], r[0])):
        print(f"| {name} | {n:,} | {l} | {s} | {t:.3f} |")


if __name__ == "__main__":
    sys.exit(main())

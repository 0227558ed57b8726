#!/usr/bin/env python3
"""Times Hinton KD forward + backward (batch 256 x 1000 classes, T = 2, w_hard = 0.75,
w_soft = 0.25, T^2 on: edgeml-distill's KdConfig::default()) in numpy (float32, one
thread) and runs the Rust criterion bench `benches/benches/distill.rs` in the same run;
prints a markdown table with the ratios.

Run: python3 scripts/bench_distill.py [--reps 50]
"""
import argparse
import glob
import json
import os
import platform
import subprocess
import time

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[var] = "1"

import numpy as np  # noqa: E402  (after the thread settings)

B, C = 256, 1000
T, W_HARD, W_SOFT = 2.0, 0.75, 0.25
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def kd_numpy(zs, zt, y):
    """The same formula as edgeml's Kd, in float32 numpy: loss and gradient."""
    b = zs.shape[0]
    rows = np.arange(b)
    s = zs - zs.max(1, keepdims=True)
    e = np.exp(s)
    se = e.sum(1, keepdims=True)
    hard = -(s[rows, y] - np.log(se[:, 0])).mean()
    p1 = e / se
    bs = s / np.float32(T)
    eq = np.exp(bs)
    sq = eq.sum(1, keepdims=True)
    a = zt / np.float32(T)
    a -= a.max(1, keepdims=True)
    ep = np.exp(a)
    sp = ep.sum(1, keepdims=True)
    pt = ep / sp
    kl = (pt * ((a - np.log(sp)) - (bs - np.log(sq)))).sum() / b
    total = W_HARD * hard + W_SOFT * T * T * kl
    p1[rows, y] -= 1.0
    g = np.float32(W_HARD / b) * p1 + np.float32(W_SOFT * T / b) * (eq / sq - pt)
    return total, g


def time_numpy(zs, zt, y, reps):
    kd_numpy(zs, zt, y)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        kd_numpy(zs, zt, y)
        ts.append(time.perf_counter() - t0)
    return ts


def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def criterion_medians(target):
    out = {}
    for bj in glob.glob(os.path.join(target, "criterion", "kd_loss", "*", "new", "benchmark.json")):
        with open(bj) as f:
            full_id = json.load(f)["full_id"]
        with open(os.path.join(os.path.dirname(bj), "estimates.json")) as f:
            out[full_id] = json.load(f)["median"]["point_estimate"] * 1e-9
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    zs = rng.uniform(-6, 6, (B, C)).astype(np.float32)
    zt = rng.uniform(-6, 6, (B, C)).astype(np.float32)
    y = rng.integers(0, C, B)

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    before = time_numpy(zs, zt, y, args.reps)
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    cmd = ["cargo", "bench", "-j1", "-p", "edgeml-benches", "--bench", "distill", "--", "--noplot", "kd_loss/"]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    after = time_numpy(zs, zt, y, args.reps)
    numpy_s = float(np.median(before + after))
    rust = criterion_medians(target)

    stream = rust.get(f"kd_loss/stream_sum/{B}x{C}/1thread")
    print(f"Measured {started}, load average at start {load:.1f}. Machine: {cpu_name()} "
          f"({platform.machine()}), {os.cpu_count()} cores; numpy {np.__version__} float32, "
          f"1 thread, median of {2 * args.reps} calls (half before, half after the Rust bench); "
          "Rust: criterion medians, release build for the default target; the KD kernel runs on "
          "the ISA picked at run time (EDGEML_KERNELS forces one).")
    print(f"Command: `python3 scripts/bench_distill.py --reps {args.reps}`\n")
    print("| measurement | time (µs) | numpy / this | this / stream_sum |")
    print("|---|---:|---:|---:|")
    print(f"| numpy KD fwd+bwd, 1 thread | {numpy_s * 1e6:.1f} | 1.00x | "
          + (f"{numpy_s / stream:.1f}x |" if stream else "n/a |"))
    for name in sorted(rust):
        t = rust[name]
        ratio = f"{t / stream:.2f}x" if stream else "n/a"
        print(f"| `{name}` | {t * 1e6:.1f} | {numpy_s / t:.1f}x | {ratio} |")


if __name__ == "__main__":
    main()

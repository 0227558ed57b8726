#!/usr/bin/env python3
"""INT8 kernels of edgeml-quant vs onnxruntime (MLAS), measured in the same run.

onnxruntime (one thread, intra_op_num_threads=1, weights as initializers so MLAS
pre-packs them): MatMulInteger u8s8 and u8u8, QLinearMatMul, float MatMul, QLinearConv
and float Conv on the issue's shapes. Ours: the `int8_bench` release binary (JSON
medians of every available ISA, 1 and 2 threads, plus our float SGEMM). The table
replaces the "INT8 kernels" section of BENCHMARKS.md.

Run: python3 scripts/bench_int8.py [--reps N] [--no-write]
"""
import argparse
import json
import os
import platform
import subprocess
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
GEMM_SHAPES = [(1, 1024, 1024), (64, 1024, 1024), (256, 256, 2304), (1024, 1024, 1024)]
# name -> (C_in, C_out, H, W, kernel, group, pad); names match int8_bench's ids.
CONVS = {
    "conv3x3_64to64_56": (64, 64, 56, 56, 3, 1, 1),
    "dw3x3_32_112": (32, 32, 112, 112, 3, 32, 1),
    "conv1x1_64to256_56": (64, 256, 56, 56, 1, 1, 0),
}
rng = np.random.default_rng(0)


def session(nodes, inputs, outputs, inits, opset=13):
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def timeit(sess, feed, reps):
    for _ in range(3):
        sess.run(None, feed)
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        sess.run(None, feed)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def t(name, dt, shape):
    return helper.make_tensor_value_info(name, dt, shape)


def init(name, arr, dt):
    return helper.make_tensor(name, dt, list(arr.shape), arr.tobytes(), raw=True)


def ort_gemm(m, n, k, reps):
    a = rng.integers(0, 256, (m, k)).astype(np.uint8)
    res = {}
    for label, bdt, np_b in [("u8s8", TensorProto.INT8, np.int8), ("u8u8", TensorProto.UINT8, np.uint8)]:
        b = rng.integers(-128 if np_b == np.int8 else 0, 128 if np_b == np.int8 else 256, (k, n)).astype(np_b)
        s = session([helper.make_node("MatMulInteger", ["A", "B", "za", "zb"], ["Y"])],
                    [t("A", TensorProto.UINT8, [m, k])], [t("Y", TensorProto.INT32, [m, n])],
                    [init("B", b, bdt), init("za", np.array(3, np.uint8), TensorProto.UINT8),
                     init("zb", np.array(0 if np_b == np.int8 else 128, np_b), bdt)], opset=10)
        res["ort_matmulinteger_" + label] = timeit(s, {"A": a}, reps)
    b = rng.integers(-128, 128, (k, n)).astype(np.int8)
    s = session([helper.make_node("QLinearMatMul", ["A", "as", "az", "B", "bs", "bz", "ys", "yz"], ["Y"])],
                [t("A", TensorProto.UINT8, [m, k])], [t("Y", TensorProto.UINT8, [m, n])],
                [init("B", b, TensorProto.INT8), init("as", np.array(0.02, np.float32), TensorProto.FLOAT),
                 init("az", np.array(3, np.uint8), TensorProto.UINT8),
                 init("bs", np.array(0.01, np.float32), TensorProto.FLOAT),
                 init("bz", np.array(0, np.int8), TensorProto.INT8),
                 init("ys", np.array(0.5, np.float32), TensorProto.FLOAT),
                 init("yz", np.array(128, np.uint8), TensorProto.UINT8)], opset=10)
    res["ort_qlinearmatmul"] = timeit(s, {"A": a}, reps)
    bf = rng.standard_normal((k, n)).astype(np.float32)
    s = session([helper.make_node("MatMul", ["A", "B"], ["Y"])], [t("A", TensorProto.FLOAT, [m, k])],
                [t("Y", TensorProto.FLOAT, [m, n])], [init("B", bf, TensorProto.FLOAT)])
    res["ort_matmul_f32"] = timeit(s, {"A": a.astype(np.float32)}, reps)
    return res


def ort_conv(ci, co, h, w, k, g, p, reps):
    x = rng.integers(0, 256, (1, ci, h, w)).astype(np.uint8)
    wt = rng.integers(-128, 128, (co, ci // g, k, k)).astype(np.int8)
    attrs = dict(group=g, pads=[p] * 4, kernel_shape=[k, k], strides=[1, 1])
    oh, ow = h + 2 * p - k + 1, w + 2 * p - k + 1
    s = session([helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["Y"], **attrs)],
                [t("x", TensorProto.UINT8, [1, ci, h, w])], [t("Y", TensorProto.UINT8, [1, co, oh, ow])],
                [init("w", wt, TensorProto.INT8), init("xs", np.array(0.02, np.float32), TensorProto.FLOAT),
                 init("xz", np.array(3, np.uint8), TensorProto.UINT8),
                 init("ws", np.array(0.01, np.float32), TensorProto.FLOAT),
                 init("wz", np.array(0, np.int8), TensorProto.INT8),
                 init("ys", np.array(0.5, np.float32), TensorProto.FLOAT),
                 init("yz", np.array(128, np.uint8), TensorProto.UINT8)], opset=10)
    res = {"ort_qlinearconv": timeit(s, {"x": x}, reps)}
    s = session([helper.make_node("Conv", ["x", "w"], ["Y"], **attrs)], [t("x", TensorProto.FLOAT, [1, ci, h, w])],
                [t("Y", TensorProto.FLOAT, [1, co, oh, ow])],
                [init("w", rng.standard_normal(wt.shape).astype(np.float32), TensorProto.FLOAT)])
    res["ort_conv_f32"] = timeit(s, {"x": x.astype(np.float32)}, reps)
    return res


def ours(reps):
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "edgeml-benches", "--bin", "int8_bench"],
                   cwd=ROOT, check=True)
    out = subprocess.run([os.path.join(ROOT, "target", "release", "int8_bench"), "all", str(reps)],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {(r["kernel"], r["isa"], r["shape"], r["threads"]): r["median_s"] for r in rows}


def us(x):
    return "—" if x is None else f"{x * 1e6:,.0f}"


def ratio(a, b):
    return "—" if a is None or b is None else f"{a / b:.2f}×"


def table(reps):
    mine = ours(reps)

    def get(kernel, isa, shape, threads=1):
        return mine.get((kernel, isa, shape, threads))

    isas = [i for i in ["amx", "avx512vnni", "avxvnni", "avx2", "neon-dotprod", "neon", "scalar"]
            if any(k[1] == i for k in mine)]
    best = isas[0]
    lines = []
    cpu = platform.machine()
    with open("/proc/cpuinfo") as f:
        names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
    if names:
        cpu = f"{cpu}, {names[0]}"
    lines.append(f"Machine: {cpu}, onnxruntime {ort.__version__}, best path `{best}`; "
                 f"single thread unless noted; median of {reps} runs, µs. Ratios > 1 mean edgeml is faster.")
    lines.append("")
    lines.append("| GEMM M×N×K | ORT MatMulInteger u8s8 | ORT u8u8 | ORT QLinearMatMul | ORT f32 MatMul | "
                 + " | ".join(f"ours `{i}`" for i in isas if i != "scalar")
                 + " | ours vs ORT u8s8 | our f32 SGEMM | INT8 vs our f32 | ours 2 threads | 2T/1T |")
    lines.append("|" + "---|" * (10 + len([i for i in isas if i != "scalar"])))
    for (m, n, k) in GEMM_SHAPES:
        shape = f"{m}x{n}x{k}"
        o = ort_gemm(m, n, k, reps)
        b1 = get("gemm_u8i8", best, shape)
        b2 = get("gemm_u8i8", best, shape, 2)
        f32 = next((v for (kn, _, sh, th), v in mine.items() if kn == "sgemm_f32" and sh == shape), None)
        lines.append(f"| {m}×{n}×{k} | {us(o['ort_matmulinteger_u8s8'])} | {us(o['ort_matmulinteger_u8u8'])} | "
                     f"{us(o['ort_qlinearmatmul'])} | {us(o['ort_matmul_f32'])} | "
                     + " | ".join(us(get("gemm_u8i8", i, shape)) for i in isas if i != "scalar")
                     + f" | **{ratio(o['ort_matmulinteger_u8s8'], b1)}** | {us(f32)} | {ratio(f32, b1)} | "
                     f"{us(b2)} | {ratio(b1, b2)} |")
    lines.append("")
    lines.append("| conv (u8 in/out, i8 weights) | ORT QLinearConv | ORT f32 Conv | "
                 + " | ".join(f"ours `{i}`" for i in isas if i != "scalar")
                 + " | ours vs ORT QLinearConv | ours 2 threads |")
    lines.append("|" + "---|" * (5 + len([i for i in isas if i != "scalar"])))
    for name, (ci, co, h, w, k, g, p) in CONVS.items():
        o = ort_conv(ci, co, h, w, k, g, p, reps)
        shape = f"{ci}x{h}x{w}->{co}"
        b1 = get(name, best, shape)
        lines.append(f"| {name} | {us(o['ort_qlinearconv'])} | {us(o['ort_conv_f32'])} | "
                     + " | ".join(us(get(name, i, shape)) for i in isas if i != "scalar")
                     + f" | **{ratio(o['ort_qlinearconv'], b1)}** | {us(get(name, best, shape, 2))} |")
    return "\n".join(lines)


def write_section(body):
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read()
    head = "## INT8 kernels"
    start = text.index(head)
    nl = text.index("\n", start)
    nxt = text.find("\n## ", nl)
    nxt = len(text) if nxt < 0 else nxt
    section_body = text[nl + 1:nxt]
    # Keep hand-written notes after the generated table.
    marker = "<!-- end of generated table -->"
    notes = section_body.split(marker, 1)[1] if marker in section_body else "\n"
    new = (f"{text[:nl + 1]}\nReproduce: `python3 scripts/bench_int8.py` (writes this table).\n\n"
           f"{body}\n{marker}{notes}{text[nxt:]}")
    open(path, "w").write(new)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    body = table(args.reps)
    print(body)
    if not args.no_write:
        write_section(body)


if __name__ == "__main__":
    main()

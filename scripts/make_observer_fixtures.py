#!/usr/bin/env python3
"""Reference thresholds for the histogram observers of edgeml_quant::observe, written to
tests/fixtures/observers/:

    <name>.npy       float32 activations of the bundled digits models, run in onnxruntime on
                     the first 32 test images (relu: the CNN's Relu output 'r'; signed: its
                     Conv output 'c'; logits: the MLP's 'z'), fed to the observers in 4
                     batches of 16 images
    thresholds.txt   one case a line: name method bins qbins lo hi, where method is
                       entropy      onnxruntime's HistogramCollector.get_entropy_threshold
                                    (called as is) on edgeml's histogram grid (below):
                                    the Rust observer must give the same bin edges
                       entropy_ort  onnxruntime's whole entropy pipeline
                                    (HistogramCollector.collect + compute_collection_result,
                                    its own grid, the same 4 batches): compared within a
                                    tolerance, since the grids differ
                       mse          PyTorch's HistogramObserver._non_linear_param_search
                                    (torch/ao/quantization/observer.py), transcribed to numpy
                                    float64 below because torch is not installed, on edgeml's
                                    histogram grid restricted to the occupied bins

edgeml's histogram grid: `bins` bins of width w = 2^k, bin i covering
[(i - bins/2) w, (i - bins/2 + 1) w), with k the smallest integer such that
(bins/2) w > max|x|. A value's bin is floor(x / w) + bins/2 (exact in float64: w is a
power of two). Floats are written with repr() of the float32 value promoted to float64.

Usage: python3 scripts/make_observer_fixtures.py (numpy, onnx, onnxruntime, scipy).
"""
import math
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization.calibrate import HistogramCollector

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "observers")
DIGITS = os.path.join(ROOT, "tests", "fixtures", "digits")
BATCHES = 4


def f(x):
    return repr(float(np.float32(x)))


def intermediate(model_name, tensor, x):
    m = onnx.load(os.path.join(DIGITS, model_name))
    m.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run([tensor], {"x": x})[0].astype(np.float32)


def grid(values, bins):
    """edgeml's histogram: counts, bin width, exact min and max."""
    half = bins // 2
    amax = float(np.max(np.abs(values)))
    if amax == 0.0:
        k = -160
    else:
        k = math.ceil(math.log2(amax / half))
        while half * 2.0**k <= amax:
            k += 1
        while half * 2.0 ** (k - 1) > amax:
            k -= 1
    w = 2.0**k
    idx = np.floor(values.astype(np.float64) / w).astype(np.int64) + half
    assert idx.min() >= 0 and idx.max() < bins
    counts = np.bincount(idx, minlength=bins).astype(np.int64)
    return counts, w, np.float32(values.min()), np.float32(values.max())


def entropy_on_grid(values, bins, qbins):
    counts, w, lo, hi = grid(values, bins)
    edges = ((np.arange(bins + 1) - bins // 2) * w).astype(np.float32)
    coll = HistogramCollector("entropy", False, bins, qbins, 99.999, "same")
    t = coll.get_entropy_threshold((counts, edges, lo, hi, None), qbins)
    return float(t[0]), float(t[1])


def entropy_ort(batches, bins, qbins):
    coll = HistogramCollector("entropy", False, bins, qbins, 99.999, "same")
    for b in batches:
        coll.collect({"t": [b]})
    t = coll.compute_collection_result()["t"]
    return float(t[0]), float(t[1])


# --- PyTorch HistogramObserver's L2 search, transcribed (float64) -----------------------
def _get_norm(delta_begin, delta_end, density):
    return density * (delta_end * delta_end * delta_end - delta_begin * delta_begin * delta_begin) / 3


def _quantization_error(hist, bin_width, start, end, dst_nbins):
    bins = hist.size
    dst_bin_width = bin_width * (end - start + 1) / dst_nbins
    if dst_bin_width == 0.0:
        return 0.0
    src_bin = np.arange(bins, dtype=np.float64)
    src_begin = (src_bin - start) * bin_width
    src_end = src_begin + bin_width
    dst_of_begin = np.clip(np.floor(src_begin / dst_bin_width), 0, dst_nbins - 1)
    dst_of_begin_center = (dst_of_begin + 0.5) * dst_bin_width
    dst_of_end = np.clip(np.floor(src_end / dst_bin_width), 0, dst_nbins - 1)
    density = hist / bin_width
    norm = np.zeros(bins)
    norm += _get_norm(src_begin - dst_of_begin_center, np.full(bins, dst_bin_width / 2), density)
    norm += (dst_of_end - dst_of_begin - 1) * _get_norm(-dst_bin_width / 2, dst_bin_width / 2, density)
    dst_of_end_center = dst_of_end * dst_bin_width + dst_bin_width / 2
    norm += _get_norm(-dst_bin_width / 2, src_end - dst_of_end_center, density)
    return float(norm.sum())


def l2_search(hist, min_val, bin_width, dst_nbins=256):
    bins = hist.size
    total = float(hist.sum())
    csum = np.cumsum(hist).tolist()
    stepsize = 1e-5
    alpha, beta = 0.0, 1.0
    start_bin, end_bin = 0, bins - 1
    norm_min = float("inf")
    while alpha < beta:
        next_alpha = alpha + stepsize
        next_beta = beta - stepsize
        l, r = start_bin, end_bin
        while l < end_bin and csum[l] < next_alpha * total:
            l += 1
        while r > start_bin and csum[r] > next_beta * total:
            r -= 1
        next_start, next_end = start_bin, end_bin
        if (l - start_bin) > (end_bin - r):
            next_start = l
            alpha = next_alpha
        else:
            next_end = r
            beta = next_beta
        if next_start == start_bin and next_end == end_bin:
            continue
        norm = _quantization_error(hist.astype(np.float64), bin_width, next_start, next_end, dst_nbins)
        if norm > norm_min:
            break
        norm_min = norm
        start_bin, end_bin = next_start, next_end
    return min_val + bin_width * start_bin, min_val + bin_width * (end_bin + 1)


def mse_on_grid(values, bins):
    counts, w, lo, hi = grid(values, bins)
    half = bins // 2
    i0 = int(math.floor(float(lo) / w)) + half
    i1 = int(math.floor(float(hi) / w)) + half
    a, b = l2_search(counts[i0 : i1 + 1], (i0 - half) * w, w)
    return max(a, float(lo)), min(b, float(hi))


def main():
    os.makedirs(OUT, exist_ok=True)
    x = np.load(os.path.join(DIGITS, "x_test.npy"))[:32]
    tensors = {
        "relu": intermediate("cnn.onnx", "r", x),
        "signed": intermediate("cnn.onnx", "c", x),
        "logits": intermediate("mlp.onnx", "z", x),
    }
    lines = []
    for name, t in tensors.items():
        np.save(os.path.join(OUT, f"{name}.npy"), t)
        flat = t.reshape(-1)
        batches = [b.reshape(-1) for b in np.split(t, BATCHES)]
        for bins, qbins in ((2048, 128), (512, 128), (128, 128)):
            lo, hi = entropy_on_grid(flat, bins, qbins)
            lines.append(f"{name} entropy {bins} {qbins} {f(lo)} {f(hi)}")
            lo, hi = entropy_ort(batches, bins, qbins)
            lines.append(f"{name} entropy_ort {bins} {qbins} {f(lo)} {f(hi)}")
        for bins in (2048, 512):
            lo, hi = mse_on_grid(flat, bins)
            lines.append(f"{name} mse {bins} 0 {f(lo)} {f(hi)}")
    with open(os.path.join(OUT, "thresholds.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes tests/fixtures/prune/*.json: reference masks and schedule values for
edgeml-prune.

PyTorch and TensorFlow are not installable on the build machines, so this is a numpy
REPLICATION of the anchors, following their source semantics:

- torch.nn.utils.prune.l1_unstructured  (torch/nn/utils/prune.py: L1Unstructured,
  _compute_nparams_toprune): a float amount prunes round(amount * n) weights (Python
  round, half to even), an int prunes that many; the pruned weights are the
  `topk(|w|, k, largest=False)` ones.
- torch.nn.utils.prune.ln_structured  (prune.py: LnStructured, _compute_norm): the
  norm of every slice along `dim` (torch.norm over the other dims), keeps the
  n - round(amount * n) slices with the largest norm.
- torch.nn.utils.prune.global_unstructured  (prune.py: global_unstructured):
  concatenates the flattened parameters and applies L1Unstructured to the vector.
- TF-MOT PolynomialDecay / ConstantSparsity  (tensorflow_model_optimization/python/
  core/sparsity/keras/pruning_schedule.py): float32 arithmetic,
  p = clip(float32(step - begin) / (end - begin), 0, 1),
  s = float32(initial - final) * (1 - p) ** power + float32(final);
  should_prune = begin <= step and (step <= end or end == -1) and
  (step - begin) % frequency == 0.
- TF-MOT threshold masks  (keras/pruning_impl.py: Pruning._update_mask):
  k = max(round(float32(n) * (1 - s)), 1) in float32, threshold = k-th largest |w|,
  mask = |w| >= threshold.

Ties: PyTorch's topk leaves the order of equal magnitudes unspecified. The inputs
below contain many exact ties (values on a 0.25 grid, sign flips, repeated channels);
this replication breaks them with a stable argsort, i.e. the lower index is pruned
first, which is the rule edgeml documents. Norms are computed in float64 from the
float32 weights (torch uses float32); on the 0.25-grid inputs every norm is exact in
both, so the order is the same.

Run: python3 scripts/make_prune_fixtures.py  (EDGEML_PRUNE_FIXTURES=DIR to write
elsewhere; scripts/ci/prune.sh does that).
"""
import json
import os

import numpy as np

OUT = os.environ.get("EDGEML_PRUNE_FIXTURES") or os.path.join(
    os.path.dirname(__file__), "..", "tests", "fixtures", "prune")
rng = np.random.default_rng(16)


def grid(shape):
    """float32 weights on a 0.25 grid in [-2, 2]: many exact ties, zeros and -0.0."""
    w = (rng.integers(-8, 9, size=shape) * 0.25).astype(np.float32)
    flat = w.reshape(-1)
    zeros = np.flatnonzero(flat == 0)
    if len(zeros):
        flat[zeros[0]] = np.float32(-0.0)
    return w


def normal(shape):
    return rng.standard_normal(size=shape).astype(np.float32)


def bits(mask):
    """A 0/1 mask as a compact string of '0' and '1'."""
    return "".join("1" if v else "0" for v in np.asarray(mask).reshape(-1))


def floats(a):
    return [float(v) for v in np.asarray(a, dtype=np.float32).reshape(-1)]


def n_to_prune(amount, n):
    if isinstance(amount, int):
        return amount
    return round(amount * n)  # Python round: half to even


def l1_unstructured(w, amount):
    a = np.abs(w.reshape(-1))
    k = n_to_prune(amount, a.size)
    mask = np.ones(a.size, dtype=np.int64)
    mask[np.argsort(a, kind="stable")[:k]] = 0
    return mask


def ln_structured(w, amount, n, dim):
    axes = tuple(i for i in range(w.ndim) if i != dim)
    w64 = np.abs(w.astype(np.float64))
    norms = w64.sum(axis=axes) if n == 1 else np.sqrt((w64 ** 2).sum(axis=axes))
    k = n_to_prune(amount, w.shape[dim])
    keep_ch = np.ones(w.shape[dim], dtype=np.int64)
    keep_ch[np.argsort(norms, kind="stable")[:k]] = 0
    shape = [1] * w.ndim
    shape[dim] = w.shape[dim]
    return np.broadcast_to(keep_ch.reshape(shape), w.shape).reshape(-1).copy()


def global_unstructured(ws, amount):
    flat = np.concatenate([np.abs(w.reshape(-1)) for w in ws])
    mask = l1_unstructured(flat, amount)
    out, o = [], 0
    for w in ws:
        out.append(mask[o:o + w.size])
        o += w.size
    return out


def tfmot_mask(w, sparsity):
    a = np.abs(w.reshape(-1))
    s = np.float32(sparsity)
    k = int(max(np.round(np.float32(a.size) * (np.float32(1) - s)), np.float32(1)))
    thr = np.sort(a)[::-1][k - 1]
    return (a >= thr).astype(np.int64), float(thr)


def should_prune(step, begin, end, freq):
    in_range = step >= begin and (step <= end or end < 0)
    return bool(in_range and (step - begin) % freq == 0)


def poly(step, initial, final, begin, end, power):
    f32 = np.float32
    p = f32(step - begin) / f32(end - begin)
    p = np.minimum(f32(1.0), np.maximum(f32(0.0), p))
    return f32(initial - final) * np.power(f32(1.0) - p, f32(power)) + f32(final)


def main():
    os.makedirs(OUT, exist_ok=True)
    l1 = []
    for name, w in [("grid_6x5", grid((6, 5))), ("grid_4x3x3", grid((4, 3, 3))),
                    ("grid_17", grid((17,))), ("normal_2x2x3x3", normal((2, 2, 3, 3))),
                    ("grid_10", grid((10,))), ("normal_16x9", normal((16, 9)))]:
        cases = [{"amount": a, "amount_is_count": isinstance(a, int),
                  "mask": bits(l1_unstructured(w, a))}
                 for a in [0.0, 0.25, 0.3, 0.5, 0.85, 3, 0]]
        l1.append({"name": name, "shape": list(w.shape), "weights": floats(w),
                   "cases": cases})
    ln = []
    conv = grid((8, 4, 3, 3))
    conv[5] = -conv[2]          # equal norms across output filters
    conv[:, 3] = conv[:, 1]     # equal norms across input channels
    for name, w in [("conv_8x4x3x3", conv), ("normal_6x5", normal((6, 5))),
                    ("grid_5x6", grid((5, 6))), ("normal_3x8x2", normal((3, 8, 2)))]:
        cases = [{"amount": a, "amount_is_count": isinstance(a, int), "n": n, "dim": dim,
                  "mask": bits(ln_structured(w, a, n, dim))}
                 for n in (1, 2) for dim in (0, 1) for a in [0.25, 0.5, 0.3, 2]]
        ln.append({"name": name, "shape": list(w.shape), "weights": floats(w),
                   "cases": cases})
    glob = []
    for name, ws in [("grid3", [grid((4, 6)), grid((10,)), grid((3, 3, 2))]),
                     ("mixed", [normal((5, 7)), grid((12,)), normal((2, 3, 3))])]:
        cases = [{"amount": a, "amount_is_count": isinstance(a, int),
                  "masks": [bits(m) for m in global_unstructured(ws, a)]}
                 for a in [0.4, 0.55, 0.9, 7]]
        glob.append({"name": name, "shapes": [list(w.shape) for w in ws],
                     "weights": [floats(w) for w in ws], "cases": cases})
    tfm = []
    for name, w in [("grid_6x5", grid((6, 5))), ("normal_40", normal((40,))),
                    ("grid_33", grid((33,)))]:
        cases = []
        for s in [0.0, 0.1, 0.5, 0.8, 0.97, 0.999]:
            mask, thr = tfmot_mask(w, s)
            cases.append({"sparsity": s, "mask": bits(mask), "threshold": thr})
        tfm.append({"name": name, "weights": floats(w), "cases": cases})
    with open(os.path.join(OUT, "torch_masks.json"), "w") as f:
        json.dump({"l1_unstructured": l1, "ln_structured": ln,
                   "global_unstructured": glob, "tfmot_masks": tfm}, f)

    sched = {"polynomial": [], "constant": []}
    for (i, fi, b, e, pw, fr) in [(0.5, 0.8, 0, 1000, 3, 100), (0.0, 0.9, 100, 1100, 3, 100),
                                   (0.2, 0.875, 7, 250, 2, 13), (0.9, 0.1, 10, 90, 3, 1),
                                   (0.0, 0.95, 0, 3, 3, 1)]:
        steps = sorted(set(range(0, e + 2 * fr + 5, max(1, (e + 2 * fr) // 97))) |
                       {b, e, e + 1, b + fr, max(b - 1, 0)})
        sched["polynomial"].append({
            "initial": i, "final": fi, "begin": b, "end": e, "power": pw, "frequency": fr,
            "steps": steps,
            "sparsity": [float(poly(t, i, fi, b, e, pw)) for t in steps],
            "should_prune": [should_prune(t, b, e, fr) for t in steps]})
    for (s, b, e, fr) in [(0.5, 0, -1, 100), (0.75, 30, 400, 7), (0.0, 5, 5, 3)]:
        steps = sorted(set(range(0, 2000, 9)) | {b, b + fr, max(e, 0), e + 1})
        sched["constant"].append({
            "target": s, "begin": b, "end": e, "frequency": fr, "steps": steps,
            "sparsity": [float(np.float32(s))] * len(steps),
            "should_prune": [should_prune(t, b, e, fr) for t in steps]})
    with open(os.path.join(OUT, "tfmot_schedules.json"), "w") as f:
        json.dump(sched, f)


if __name__ == "__main__":
    main()

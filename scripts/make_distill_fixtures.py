#!/usr/bin/env python3
"""Writes tests/fixtures/distill/losses.json: reference values and gradients for the
edgeml-distill losses.

This is a numpy replication of PyTorch's definitions, in float64 (PyTorch is not
installed here): F.cross_entropy (weight, ignore_index, label_smoothing, reduction
'mean', following aten/src/ATen/native/LossNLL.cpp: the NLL part and the smoothing part
are both divided by the summed weights of the non-ignored samples),
F.kl_div(log_q, p, reduction='batchmean') (sum of xlogy(p, p) - p*log_q over the batch,
divided by the batch size), F.mse_loss (mean over all elements),
F.cosine_embedding_loss with target 1 (1 - cos, cos = x.y / sqrt((|x|^2 + 1e-12) *
(|y|^2 + 1e-12)), batch mean), and the attention-transfer loss of Zagoruyko &
Komodakis' code ((at(s) - at(t)).pow(2).mean(), at(x) = F.normalize(x.pow(2).mean(1)
.view(B, -1)), F.normalize's eps 1e-12). Per-sample weights s_i are edgeml's
extension: they multiply each sample's weight in numerator and normaliser (a 0/1 mask
then equals ignore_index, which the script checks).

Inputs are drawn as float32 (what the Rust losses take) and the references computed
exactly on those values in float64. Gradients are analytic and cross-checked here by
central finite differences.

Run: python3 scripts/make_distill_fixtures.py   (EDGEML_DISTILL_FIXTURES=DIR to write elsewhere)
"""
import json
import os

import numpy as np

OUT = os.environ.get("EDGEML_DISTILL_FIXTURES") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "distill")


def log_softmax(z):
    m = np.max(z, axis=1, keepdims=True)
    s = z - m
    return s - np.log(np.sum(np.exp(s), axis=1, keepdims=True))


def xlogy(x, y):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x == 0, 0.0, x * np.log(np.where(x == 0, 1.0, y)))


# ---------------------------------------------------------------- cross-entropy
def cross_entropy(z, y, weight=None, ignore_index=-100, label_smoothing=0.0, sw=None):
    """F.cross_entropy(..., reduction='mean') and its gradient (s_i: edgeml's weights)."""
    b, c = z.shape
    lp = log_softmax(z)
    w = np.ones(c) if weight is None else weight
    s = np.ones(b) if sw is None else sw
    keep = (y != ignore_index).astype(np.float64)
    yk = np.where(y != ignore_index, y, 0)
    wy = w[yk] * s * keep
    d = wy.sum()
    if d == 0:  # PyTorch: 0/0 = NaN; edgeml: 0 with a zero gradient
        return 0.0, np.zeros_like(z)
    eps = label_smoothing
    nll = -(wy * lp[np.arange(b), yk]).sum() / d
    smooth = -((lp * w).sum(1) * s * keep).sum() / d
    loss = (1 - eps) * nll + eps / c * smooth
    a = (s * keep / d)[:, None]
    p = np.exp(lp)
    onehot = np.zeros_like(z)
    onehot[np.arange(b), yk] = 1.0
    wyc = w[yk][:, None]
    g = a * (((1 - eps) * wyc + eps / c * w.sum()) * p - (1 - eps) * wyc * onehot - eps / c * w[None, :])
    return loss, g


# ---------------------------------------------------------------- soft losses
def teacher_logits(t, kind):
    if kind == "probabilities":
        with np.errstate(divide="ignore"):
            return np.log(t)
    return t  # logits, or log-probabilities (a softmax ignores the row constant)


def soft_rows(zs, zt, temperature, divergence):
    """Per-row divergence and its gradient w.r.t. z_s (unweighted, unscaled)."""
    lq = log_softmax(zs / temperature)
    lp = log_softmax(zt / temperature)
    p, q = np.exp(lp), np.exp(lq)
    if divergence == "forward_kl":  # F.kl_div(lq, p): xlogy(p, p) - p*lq
        loss = (xlogy(p, p) - p * lq).sum(1)
        g = (q - p) / temperature
    elif divergence == "soft_ce":  # F.cross_entropy(zs/T, p)
        loss = -(p * lq).sum(1)
        g = (q - p) / temperature
    elif divergence == "reverse_kl":  # F.kl_div(lp, q)
        loss = (xlogy(q, q) - q * lp).sum(1)
        h = lq - lp
        g = q * (h - (q * h).sum(1, keepdims=True)) / temperature
    elif divergence == "js":
        lm = np.logaddexp(lp, lq) - np.log(2.0)
        with np.errstate(invalid="ignore"):
            loss = 0.5 * np.where(p > 0, p * (lp - lm), 0.0).sum(1) + 0.5 * (q * (lq - lm)).sum(1)
        h = 0.5 * (lq - lm)
        g = q * (h - (q * h).sum(1, keepdims=True)) / temperature
    else:
        raise ValueError(divergence)
    return loss, g


def weighted_mean(rows, g, sw, scale):
    b = rows.shape[0]
    s = np.ones(b) if sw is None else sw
    if s.sum() == 0:
        return 0.0, np.zeros_like(g)
    c = s / s.sum() * scale
    return float((c * rows).sum()), g * c[:, None]


def soft_loss(zs, t, kind, temperature, divergence, t_squared=True, sw=None):
    zt = teacher_logits(t, kind)
    rows, g = soft_rows(zs, zt, temperature, divergence)
    return weighted_mean(rows, g, sw, temperature ** 2 if t_squared else 1.0)


def kd(zs, t, kind, y, temperature, hard_weight, soft_weight, t_squared=True, sw=None,
       weight=None, ignore_index=-100, label_smoothing=0.0):
    hard, gh = (0.0, np.zeros_like(zs))
    if hard_weight > 0:
        hard, gh = cross_entropy(zs, y, weight, ignore_index, label_smoothing, sw)
    soft, gs = soft_loss(zs, t, kind, temperature, "forward_kl", False, sw)
    scale = temperature ** 2 if t_squared else 1.0
    total = hard_weight * hard + soft_weight * scale * soft
    return total, hard, soft, hard_weight * gh + soft_weight * scale * gs


# ---------------------------------------------------------------- feature losses
def mse(x, y, sw=None):
    rows = ((x - y) ** 2).sum(1) / x.shape[1]
    return weighted_mean(rows, 2 * (x - y) / x.shape[1], sw, 1.0)


def cosine_embedding(x, y, sw=None):
    eps = 1e-12
    xy = (x * y).sum(1)
    xx = (x * x).sum(1) + eps
    yy = (y * y).sum(1) + eps
    d = np.sqrt(xx * yy)
    cos = xy / d
    g = -(y - (xy / xx)[:, None] * x) / d[:, None]
    return weighted_mean(1 - cos, g, sw, 1.0)


def attention_transfer(x, y, spatial, sw=None):
    b = x.shape[0]
    xs = x.reshape(b, -1, spatial)
    ys = y.reshape(b, -1, spatial)
    a = (xs ** 2).mean(1)
    na = np.sqrt((a ** 2).sum(1))
    u = a / np.maximum(na, 1e-12)[:, None]
    at = (ys ** 2).mean(1)
    v = at / np.maximum(np.sqrt((at ** 2).sum(1)), 1e-12)[:, None]
    rows = ((u - v) ** 2).sum(1) / spatial
    gu = 2 * (u - v) / spatial
    big = na > 1e-12
    proj = np.where(big, (u * gu).sum(1), 0.0)
    ga = (gu - u * proj[:, None]) / np.maximum(na, 1e-12)[:, None]
    gx = ga[:, None, :] * 2 * xs / xs.shape[1]
    return weighted_mean(rows, gx.reshape(b, -1), sw, 1.0)


# ---------------------------------------------------------------- checks
def fd_check(f, x, g, name, h=1e-6):
    """Central differences of the scalar f at x against the analytic gradient g."""
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        num[idx] = (f(xp) - f(xm)) / (2 * h)
    scale = max(np.abs(g).max(), 1e-12)
    err = np.abs(num - g).max() / scale
    assert err < 1e-5, f"{name}: finite differences disagree ({err:e})"


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def arr(a):
    return [float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def main():
    rng = np.random.default_rng(20261205)
    out = {"kd": [], "ce": [], "soft": [], "feature": []}

    # ---- cross-entropy
    ce_cases = [
        ("plain", 5, 7, {}, None),
        ("smoothing", 5, 7, {"label_smoothing": 0.1}, None),
        ("ignore_smoothing_weights", 6, 5,
         {"label_smoothing": 0.2, "ignore_index": 2, "weight": "random"}, None),
        ("default_ignore", 4, 6, {"label_smoothing": 0.05}, "ignore-100"),
        ("sample_weights", 5, 4, {"weight": "random"}, "weights"),
        ("mask", 6, 5, {"label_smoothing": 0.1}, "mask"),
        ("all_ignored", 3, 4, {}, "all-ignored"),
    ]
    for name, b, c, opts, extra in ce_cases:
        z = f32(rng.normal(0, 3, (b, c)))
        y = rng.integers(0, c, b)
        sw = None
        if extra == "ignore-100":
            y[1] = -100
        if extra == "all-ignored":
            y[:] = -100
        if extra == "weights":
            sw = f32(rng.uniform(0, 2, b))
        if extra == "mask":
            sw = f32([1, 0, 1, 1, 0, 1])
        weight = f32(rng.uniform(0.2, 2, c)) if opts.get("weight") == "random" else None
        ii = opts.get("ignore_index", -100)
        ls = opts.get("label_smoothing", 0.0)
        ls = float(np.float32(ls))
        loss, g = cross_entropy(z, y, weight, ii, ls, sw)
        fd_check(lambda zz: cross_entropy(zz, y, weight, ii, ls, sw)[0], z, g, "ce " + name)
        if extra == "mask":  # a 0/1 mask is ignore_index
            y2 = np.where(sw == 0, ii, y)
            assert abs(cross_entropy(z, y2, weight, ii, ls)[0] - loss) < 1e-14
        out["ce"].append({
            "name": name, "batch": b, "classes": c, "student": arr(z), "labels": [int(v) for v in y],
            "sample_weights": None if sw is None else arr(sw),
            "class_weights": None if weight is None else arr(weight),
            "ignore_index": ii, "label_smoothing": ls, "loss": float(loss), "grad": arr(g)})

    # ---- KD
    def teacher(kind, b, c, spread=3.0, one_hot=False):
        z = rng.normal(0, spread, (b, c))
        if kind == "logits":
            return f32(z)
        lp = log_softmax(z)
        if one_hot:
            p = np.zeros((b, c))
            p[np.arange(b), rng.integers(0, c, b)] = 1.0
            return f32(p) if kind == "probabilities" else f32(np.log(np.maximum(p, 0)))
        return f32(np.exp(lp)) if kind == "probabilities" else f32(lp)

    kd_cases = [
        # name, b, c, kind, T, w_hard, w_soft, t_squared, extra
        ("default", 6, 10, "logits", 2.0, 0.75, 0.25, True, {}),
        ("t1", 4, 8, "logits", 1.0, 0.5, 0.5, True, {}),
        ("t4_no_t2", 4, 8, "logits", 4.0, 0.3, 0.7, False, {}),
        ("soft_only", 5, 6, "logits", 3.0, 0.0, 1.0, True, {}),
        ("probabilities", 5, 9, "probabilities", 2.5, 0.5, 0.5, True, {}),
        ("log_probabilities", 5, 9, "log_probabilities", 0.5, 0.5, 0.5, True, {}),
        ("one_hot_probabilities", 4, 6, "probabilities", 2.0, 0.5, 0.5, True, {"one_hot": True}),
        ("smoothing_ignore_weights", 6, 7, "logits", 2.0, 0.6, 0.4, True,
         {"label_smoothing": 0.1, "ignore": True, "weight": True, "sw": True}),
        ("smoothing_t1_mask", 6, 5, "logits", 1.0, 0.6, 0.4, True,
         {"label_smoothing": 0.15, "mask": True}),
        ("wide_t20", 3, 300, "logits", 20.0, 0.5, 0.5, True, {}),
    ]
    for name, b, c, kind, temp, wh, ws, t2, ex in kd_cases:
        zs = f32(rng.normal(0, 3, (b, c)))
        t = teacher(kind, b, c, one_hot=ex.get("one_hot", False))
        y = rng.integers(0, c, b)
        if ex.get("ignore"):
            y[2] = -100
        sw = None
        if ex.get("sw"):
            sw = f32(rng.uniform(0, 2, b))
        if ex.get("mask"):
            sw = f32([1, 1, 0, 1, 0, 1])
        weight = f32(rng.uniform(0.2, 2, c)) if ex.get("weight") else None
        ls = float(np.float32(ex.get("label_smoothing", 0.0)))
        args = dict(temperature=temp, hard_weight=wh, soft_weight=ws, t_squared=t2, sw=sw,
                    weight=weight, label_smoothing=ls)
        total, hard, soft, g = kd(zs, t, kind, y, **args)
        fd_check(lambda z: kd(z, t, kind, y, **args)[0], zs, g, "kd " + name)
        out["kd"].append({
            "name": name, "batch": b, "classes": c, "student": arr(zs), "teacher": arr(t),
            "teacher_kind": kind, "labels": [int(v) for v in y], "temperature": temp,
            "hard_weight": wh, "soft_weight": ws, "t_squared": t2,
            "sample_weights": None if sw is None else arr(sw),
            "class_weights": None if weight is None else arr(weight), "label_smoothing": ls,
            "loss": float(total), "hard": float(hard), "soft": float(soft), "grad": arr(g)})

    # ---- soft divergences
    for div in ["forward_kl", "reverse_kl", "js", "soft_ce"]:
        for name, b, c, kind, temp, t2, use_sw in [
            ("t1", 5, 8, "logits", 1.0, True, False),
            ("t3", 4, 12, "logits", 3.0, True, True),
            ("t2_no_t2_probabilities", 4, 6, "probabilities", 2.0, False, False),
        ]:
            zs = f32(rng.normal(0, 2.5, (b, c)))
            t = teacher(kind, b, c)
            sw = f32(rng.uniform(0, 2, b)) if use_sw else None
            loss, g = soft_loss(zs, t, kind, temp, div, t2, sw)
            fd_check(lambda z: soft_loss(z, t, kind, temp, div, t2, sw)[0], zs, g, f"{div} {name}")
            out["soft"].append({
                "name": f"{div}/{name}", "divergence": div, "batch": b, "classes": c,
                "student": arr(zs), "teacher": arr(t), "teacher_kind": kind,
                "temperature": temp, "t_squared": t2,
                "sample_weights": None if sw is None else arr(sw),
                "loss": float(loss), "grad": arr(g)})

    # ---- feature losses
    for name, b, w, use_sw in [("plain", 4, 16, False), ("weighted", 5, 9, True)]:
        x = f32(rng.normal(0, 1, (b, w)))
        y = f32(rng.normal(0.3, 1.5, (b, w)))
        sw = f32(rng.uniform(0, 2, b)) if use_sw else None
        for kind, fn in [("mse", mse), ("cosine", cosine_embedding)]:
            loss, g = fn(x, y, sw)
            fd_check(lambda z: fn(z, y, sw)[0], x, g, f"{kind} {name}")
            out["feature"].append({
                "name": f"{kind}/{name}", "loss_kind": kind, "batch": b, "width": w,
                "student": arr(x), "teacher": arr(y),
                "sample_weights": None if sw is None else arr(sw),
                "loss": float(loss), "grad": arr(g)})
    for name, b, cs, ct, hw, use_sw in [("c3_c5", 3, 3, 5, 12, False), ("c4_c2_weighted", 4, 4, 2, 9, True)]:
        x = f32(rng.normal(0, 1, (b, cs * hw)))
        y = f32(rng.normal(0, 2, (b, ct * hw)))
        sw = f32(rng.uniform(0, 2, b)) if use_sw else None
        loss, g = attention_transfer(x, y, hw, sw)
        fd_check(lambda z: attention_transfer(z, y, hw, sw)[0], x, g, "at " + name)
        out["feature"].append({
            "name": f"attention/{name}", "loss_kind": "attention", "batch": b, "width": cs * hw,
            "spatial": hw, "student": arr(x), "teacher": arr(y),
            "sample_weights": None if sw is None else arr(sw),
            "loss": float(loss), "grad": arr(g)})

    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "losses.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"), allow_nan=False)
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()

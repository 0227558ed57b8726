#!/usr/bin/env python3
"""Writes tests/fixtures/drift/*.json: reference values for edgeml-drift from scipy,
numpy and river.

Large samples are not stored: they are described by a generator spec
{"gen": [seed, n, loc, scale, kind, k]} that both this script and the Rust tests
expand with the same SplitMix64 recurrence and exact IEEE arithmetic (no libm calls),
so the streams are bit-identical.

kind "ih": loc + scale * (u1 + u2 + u3 + u4 - 2)   (Irwin-Hall, roughly normal)
kind "int": loc + floor(u * k)                     (integers, lots of ties)

Run: python3 scripts/make_drift_fixtures.py
"""
import json
import math
import os
import sys

import numpy as np
import scipy
from scipy import stats
from scipy.spatial import distance

OUT = os.environ.get("EDGEML_DRIFT_FIXTURES") or os.path.join(
    os.path.dirname(__file__), "..", "tests", "fixtures", "drift")
MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.s = seed & MASK

    def next_u64(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def next_f64(self):
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))


def gen(seed, n, loc, scale, kind="ih", k=0):
    r = SplitMix64(seed)
    out = []
    for _ in range(n):
        if kind == "ih":
            s = r.next_f64() + r.next_f64() + r.next_f64() + r.next_f64()
            out.append(loc + scale * (s - 2.0))
        elif kind == "int":
            out.append(float(loc) + math.floor(r.next_f64() * k))
        else:
            raise ValueError(kind)
    return out


def expand(spec):
    if isinstance(spec, dict):
        return gen(*spec["gen"])
    return list(map(float, spec))


def G(seed, n, loc=0.0, scale=1.0, kind="ih", k=0):
    return {"gen": [seed, n, loc, scale, kind, k]}


def f(x):
    x = float(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if math.isnan(x):
        return "nan"
    return x


PAIRS = [
    ("small", [1, 2, 3], [4, 5]),
    ("ties", [1, 1, 2, 2, 3], [1, 2, 2, 4]),
    ("size1_vs_3", [0.5], [0.1, 0.2, 0.9]),
    ("size1_both", [1.0], [2.0]),
    ("const_equal", [3, 3, 3], [3, 3]),
    ("const_diff", [1, 1, 1], [2, 2]),
    ("n50_shift", G(1, 50), G(2, 50, 0.3)),
    ("n100_80", G(3, 100), G(4, 80, 0.1, 1.3)),
    ("n1000_700", G(5, 1000), G(6, 700, 0.05)),
    ("int_ties_300_200", G(7, 300, 0, 1, "int", 10), G(8, 200, 0, 1, "int", 11)),
    ("n10000_10000", G(9, 10000), G(10, 10000, 0.02)),
    ("n9000_10000", G(11, 9000), G(12, 10000, 0.03)),
    ("n20000_15000", G(13, 20000), G(14, 15000, 0.01)),
    ("n20000_20000_shift", G(15, 20000), G(16, 20000, 0.05)),
    ("n20000_50", G(17, 20000), G(18, 50, 0.2)),
    ("n3000_2990_prefix", G(19, 3000), G(19, 2990)),
    ("n12000_11000_far", G(20, 12000), G(21, 11000, 0.5)),
    ("tiny_p_300_300", G(22, 300), G(23, 300, 1.0)),
    ("tiny_p_500_400", G(24, 500), G(25, 400, 0.8)),
    ("tiny_p_asymp_15000", G(26, 15000), G(27, 15000, 0.12)),
]


def ks_cases():
    out = []
    for name, a, b in PAIRS:
        xa, xb = expand(a), expand(b)
        methods = ["auto"]
        if len(xa) * len(xb) <= 10000 * 10000 and max(len(xa), len(xb)) <= 1000:
            methods += ["exact", "asymp"]
        if name == "n3000_2990_prefix":
            methods = ["asymp"]
        for m in methods:
            r = stats.ks_2samp(xa, xb, method=m)
            out.append({"name": name, "a": a, "b": b, "method": m,
                        "statistic": f(r.statistic), "pvalue": f(r.pvalue)})
    return out


def ks_one_sided_cases():
    import warnings
    out = []
    names = {"small", "ties", "size1_vs_3", "const_diff", "n50_shift", "n100_80", "n1000_700",
             "int_ties_300_200", "tiny_p_300_300", "n20000_50", "n9000_10000"}
    for name, a, b in PAIRS:
        if name not in names:
            continue
        xa, xb = expand(a), expand(b)
        methods = ["auto", "asymp"] if len(xa) + len(xb) > 2000 else ["auto", "exact", "asymp"]
        for alt in ["less", "greater"]:
            for m in methods:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = stats.ks_2samp(xa, xb, alternative=alt, method=m)
                out.append({"name": name, "a": a, "b": b, "method": m, "alternative": alt,
                            "statistic": f(r.statistic), "pvalue": f(r.pvalue)})
    return out


def kstwo_cases():
    out = []
    for n in [3, 5, 20, 50, 140, 141, 500, 5000, 120000]:
        for x in [0.6 / n, 0.9 / n, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.9, 1 - 0.5 / n]:
            out.append({"n": n, "x": x, "sf": f(stats.kstwo.sf(x, n))})
    return out


def mwu_cases():
    out = []
    extra = [
        ("exact_5_7", [0.1, 2.5, 3.3, 4.1, 5.7], [1.2, 1.9, 2.2, 6.1, 7.3, 8.8, 9.0]),
        ("exact_8_20", G(30, 8), G(31, 20, 0.7)),
        ("exact_3_40", G(32, 3), G(33, 40, 0.2)),
    ]
    for name, a, b in PAIRS[:10] + extra + [p for p in PAIRS if p[0].startswith("tiny_p_")]:
        xa, xb = expand(a), expand(b)
        for m in ["auto", "asymptotic"]:
            r = stats.mannwhitneyu(xa, xb, method=m)
            out.append({"name": name, "a": a, "b": b, "method": m,
                        "statistic": f(r.statistic), "pvalue": f(r.pvalue)})
    return out


def chi2_cases():
    tables = [
        [[10, 20], [30, 25]],
        [[3, 0], [5, 9]],
        [[12, 7, 30], [15, 2, 28]],
        [[1, 2, 3, 4], [5, 6, 7, 8], [9, 1, 2, 0]],
        [[100, 200, 300, 50, 1], [120, 190, 280, 70, 9]],
        [[10], [20]],
        [[5000, 5200], [5100, 4900]],
        [[900, 50, 50], [100, 450, 450]],
        [[400, 10], [20, 380]],
    ]
    out = []
    for t in tables:
        r = stats.chi2_contingency(t)
        out.append({"table": t, "statistic": f(r.statistic), "pvalue": f(r.pvalue),
                    "dof": int(r.dof)})
    return out


def fisher_cases():
    tables = [[[8, 2], [1, 5]], [[0, 5], [5, 0]], [[3, 3], [3, 3]], [[10, 20], [30, 25]],
              [[1, 9], [11, 3]], [[100, 2], [3, 120]], [[0, 0], [4, 5]], [[7, 0], [2, 9]],
              [[500, 480], [450, 530]], [[90, 5], [4, 95]], [[300, 20], [25, 310]]]
    out = []
    for t in tables:
        r = stats.fisher_exact(t)
        out.append({"table": t, "statistic": f(r.statistic), "pvalue": f(r.pvalue)})
    return out


def hist_cases():
    hs = [([1, 2, 3, 4], [4, 3, 2, 1]), ([10, 0, 5, 5], [2, 8, 0, 10]),
          ([0.2, 0.3, 0.5], [0.25, 0.25, 0.5]), ([1, 1e-9, 5], [1e-9, 1, 5]),
          ([5, 5, 0], [5, 5, 0])]
    out = []
    for p, q in hs:
        pn = np.asarray(p, float) / np.sum(p)
        qn = np.asarray(q, float) / np.sum(q)
        eps = 1e-4
        pe = np.where(pn == 0, eps, pn)
        qe = np.where(qn == 0, eps, qn)
        out.append({
            "p": p, "q": q,
            "kl": f(stats.entropy(p, q)), "kl2": f(stats.entropy(p, q, base=2)),
            "js": f(distance.jensenshannon(p, q)), "js2": f(distance.jensenshannon(p, q, base=2)),
            "hellinger": f(np.sqrt(0.5 * np.sum((np.sqrt(pn) - np.sqrt(qn)) ** 2))),
            "tv": f(0.5 * np.sum(np.abs(pn - qn))),
            "psi_eps": f(np.sum((qe - pe) * np.log(qe / pe))),
        })
    return out


def sample_dist_cases():
    out = []
    for name, a, b in PAIRS[:12]:
        xa, xb = expand(a), expand(b)
        out.append({"name": name, "a": a, "b": b,
                    "wasserstein": f(stats.wasserstein_distance(xa, xb)),
                    "wasserstein_norm": f(stats.wasserstein_distance(xa, xb) / max(np.std(xa), 1e-3)),
                    "energy": f(stats.energy_distance(xa, xb))})
    return out


def binning_cases():
    out = []
    for name, a, b in PAIRS[:10]:
        xa, xb = expand(a), expand(b)
        pooled = np.asarray(xa + xb)
        case = {"name": name, "a": a, "b": b}
        for rule in ["sturges", "doane"]:
            case[rule] = [f(v) for v in np.histogram_bin_edges(pooled, bins=rule)]
        case["fixed7"] = [f(v) for v in np.histogram_bin_edges(pooled, bins=7)]
        e = np.histogram_bin_edges(pooled, bins="sturges")
        case["hist_a_sturges"] = [int(c) for c in np.histogram(xa, e)[0]]
        q = np.unique(np.quantile(xa, np.linspace(0, 1, 11)))
        case["quantile10_inner"] = [f(v) for v in q[1:-1]]
        out.append(case)
    return out


def multitest_cases():
    ps = [0.01, 0.04, 0.03, 0.005, 0.5, 0.2, 0.04, 1e-8, 0.9]
    return {"p": ps, "bh": [f(v) for v in stats.false_discovery_control(ps, method="bh")],
            "bonferroni": [f(min(1.0, p * len(ps))) for p in ps]}


def mmd_cases():
    out = []
    for name, a, b, s in [("small", [0.1, 0.5, 0.9], [1.0, 1.5], 0.7),
                          ("gen", G(40, 60), G(41, 50, 0.5), 1.0)]:
        x = np.asarray(expand(a)); y = np.asarray(expand(b))
        k = lambda u, v: np.exp(-((u[:, None] - v[None, :]) ** 2) / (2 * s * s))
        mmd2 = k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
        out.append({"name": name, "a": a, "b": b, "sigma": s, "mmd2": f(mmd2)})
    return out


def ztest_cases():
    out = []
    for k1, n1, k2, n2 in [(30, 100, 45, 110), (5, 1000, 9, 800), (0, 10, 3, 10), (500, 1000, 560, 1000)]:
        p1, p2 = k1 / n1, k2 / n2
        P = (p1 * n1 + p2 * n2) / (n1 + n2)
        z = (p1 - p2) / math.sqrt(P * (1 - P) * (1 / n1 + 1 / n2))
        out.append({"k1": k1, "n1": n1, "k2": k2, "n2": n2, "z": z, "pvalue": f(2 * stats.norm.sf(abs(z)))})
    return out


def stream(seed, segments):
    """Real stream: segments of (length, loc, scale) Irwin-Hall values; binary stream:
    segments of (length, p) -> 1.0 with probability p. One generator for all segments."""
    r = SplitMix64(seed)
    out = []
    for seg in segments:
        if len(seg) == 3:
            n, loc, scale = seg
            for _ in range(n):
                t = r.next_f64() + r.next_f64() + r.next_f64() + r.next_f64()
                out.append(loc + scale * (t - 2.0))
        else:
            n, p = seg
            for _ in range(n):
                out.append(1.0 if r.next_f64() < p else 0.0)
    return out


REAL_STREAMS = [
    ("steps", 101, [[1000, 0.0, 1.0], [1000, 1.0, 1.0], [1000, -0.5, 2.0], [1000, 3.0, 0.5]]),
    ("small_shift", 102, [[2000, 0.0, 1.0], [2000, 0.3, 1.0]]),
    ("big_jumps", 103, [[300, 0.0, 1.0], [300, 10.0, 1.0], [300, -10.0, 1.0], [300, 50.0, 5.0]]),
    ("stationary", 104, [[5000, 0.0, 1.0]]),
]
BIN_STREAMS = [
    ("err_up", 201, [[1000, 0.1], [1000, 0.3], [1000, 0.6]]),
    ("err_slow", 202, [[2000, 0.2], [2000, 0.25], [2000, 0.4]]),
    ("err_down_up", 203, [[1000, 0.4], [1000, 0.05], [1000, 0.5]]),
]


def run_detector(det, xs, warnings=False):
    d, w = [], []
    for i, x in enumerate(xs):
        det.update(x)
        if det.drift_detected:
            d.append(i)
        if warnings and getattr(det, "warning_detected", False):
            w.append(i)
    return d, w


def detector_cases():
    import river
    from river import drift
    from river.drift import binary
    out = {"river": river.__version__, "real": [], "binary": []}
    real_cfgs = [
        ("adwin", {}, lambda: drift.ADWIN()),
        ("adwin", {"delta": 0.05, "clock": 4}, lambda: drift.ADWIN(delta=0.05, clock=4)),
        ("adwin", {"delta": 0.002, "clock": 1, "max_buckets": 3, "min_window_length": 10,
                   "grace_period": 50},
         lambda: drift.ADWIN(delta=0.002, clock=1, max_buckets=3, min_window_length=10,
                             grace_period=50)),
        ("page_hinkley", {}, lambda: drift.PageHinkley()),
        ("page_hinkley", {"threshold": 20.0, "mode": "up"},
         lambda: drift.PageHinkley(threshold=20.0, mode="up")),
        ("page_hinkley", {"threshold": 20.0, "mode": "down", "min_instances": 10},
         lambda: drift.PageHinkley(threshold=20.0, mode="down", min_instances=10)),
        ("kswin", {"seed": 1}, lambda: drift.KSWIN(seed=1)),
        ("kswin", {"seed": 42, "window_size": 60, "stat_size": 20, "alpha": 0.01},
         lambda: drift.KSWIN(seed=42, window_size=60, stat_size=20, alpha=0.01)),
    ]
    for sname, seed, segs in REAL_STREAMS:
        xs = stream(seed, segs)
        for name, cfg, mk in real_cfgs:
            d, _ = run_detector(mk(), xs)
            out["real"].append({"stream": sname, "seed": seed, "segments": segs,
                                "detector": name, "config": cfg, "drifts": d})
    bin_cfgs = [
        ("ddm", {}, lambda: binary.DDM()),
        ("ddm", {"warm_start": 100, "drift_threshold": 2.5}, lambda: binary.DDM(warm_start=100, drift_threshold=2.5)),
        ("eddm", {}, lambda: binary.EDDM()),
        ("eddm", {"alpha": 0.9, "beta": 0.8}, lambda: binary.EDDM(alpha=0.9, beta=0.8)),
        ("hddm_a", {}, lambda: binary.HDDMA()),
        ("hddm_a", {"two_sided_test": True}, lambda: binary.HDDMA(two_sided_test=True)),
        ("hddm_w", {}, lambda: binary.HDDMW()),
        ("hddm_w", {"two_sided_test": True, "lambda": 0.1}, lambda: binary.HDDMW(two_sided_test=True, lambda_val=0.1)),
    ]
    for sname, seed, segs in BIN_STREAMS:
        xs = stream(seed, segs)
        for name, cfg, mk in bin_cfgs:
            d, w = run_detector(mk(), xs, warnings=True)
            out["binary"].append({"stream": sname, "seed": seed, "segments": segs,
                                  "detector": name, "config": cfg, "drifts": d, "warnings": w})
    return out


def cvm_cases():
    import warnings
    out = []
    pairs = PAIRS[:10] + [("exact_20_15", G(50, 20), G(51, 15, 0.8)),
                          ("exact_ties_12_9", G(52, 12, 0, 1, "int", 5), G(53, 9, 0, 1, "int", 5))]
    for name, a, b in pairs:
        xa, xb = expand(a), expand(b)
        for m in ["auto", "asymptotic"]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = stats.cramervonmises_2samp(xa, xb, method=m)
            out.append({"name": name, "a": a, "b": b, "method": m,
                        "statistic": f(r.statistic), "pvalue": f(r.pvalue)})
    return out


def ad_cases():
    import warnings
    out = []
    sets = [
        ("two_small", [[1, 2, 3, 4, 5], [3, 4, 5, 6, 7, 8]]),
        ("two_gen", [G(60, 100), G(61, 80, 0.3)]),
        ("two_gen_far", [G(62, 100), G(63, 80, 2.0)]),
        ("two_same", [G(64, 200), G(65, 150)]),
        ("ties", [G(66, 50, 0, 1, "int", 6), G(67, 40, 0, 1, "int", 6)]),
        ("three", [G(68, 60), G(69, 70, 0.2), G(70, 50, -0.1)]),
        ("four_ties", [G(71, 30, 0, 1, "int", 4), G(72, 30, 0, 1, "int", 4), G(73, 30, 0, 1, "int", 5), G(74, 25, 0, 1, "int", 4)]),
    ]
    for name, ss in sets:
        xs = [expand(x) for x in ss]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = stats.anderson_ksamp(xs)
        out.append({"name": name, "samples": ss, "statistic": f(r.statistic),
                    "critical": [f(v) for v in r.critical_values], "pvalue": f(r.pvalue)})
    return out


EVIDENTLY_CODE = r"""
import json, sys
import pandas as pd
from evidently import Report, Dataset, DataDefinition
from evidently.presets import DataDriftPreset
spec = json.load(sys.stdin)
out = []
for case in spec:
    ref = pd.DataFrame(case["ref"]); cur = pd.DataFrame(case["cur"])
    dd = DataDefinition(numerical_columns=case["num"], categorical_columns=case["cat"])
    snap = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(cur, data_definition=dd),
        reference_data=Dataset.from_pandas(ref, data_definition=dd))
    res = {}
    for m in snap.dict()["metrics"]:
        name = m["metric_name"]
        if name.startswith("ValueDrift("):
            inner = dict(kv.split("=", 1) for kv in name[len("ValueDrift("):-1].split(","))
            res[inner["column"]] = {"method": inner["method"], "threshold": float(inner["threshold"]),
                                    "value": m["value"]}
    out.append(res)
print(json.dumps(out))
"""


def evidently_cases():
    """Evidently DataDriftPreset scores on SplitMix64 data (needs EVIDENTLY_PYTHON or
    /tmp/evvenv/bin/python with evidently; returns None when unavailable)."""
    import subprocess
    py = os.environ.get("EVIDENTLY_PYTHON") or "/tmp/evvenv/bin/python"
    if not os.path.exists(py):
        return None
    cases = []
    for tag, nr, nc in [("small", 500, 400), ("large", 3000, 2500)]:
        cols = {
            "num": (lambda s, n, loc: gen(s, n, loc, 1.0)),
            "num_shift": (lambda s, n, loc: gen(s, n, loc + 0.3, 1.0)),
            "few4": (lambda s, n, loc: gen(s, n, 0.0, 1.0, "int", 4)),
            "bin2": (lambda s, n, loc: gen(s, n, 0.0, 1.0, "int", 2)),
        }
        ref, cur = {}, {}
        for j, (name, fn) in enumerate(cols.items()):
            ref[name] = fn(1000 + j, nr, 0.0)
            cur[name] = fn(2000 + j, nc, 0.0)
        for j, (name, k) in enumerate([("cat5", 5), ("cat2", 2)]):
            labels = "abcde"
            ref[name] = [labels[int(v)] for v in gen(3000 + j, nr, 0.0, 1.0, "int", k)]
            cur[name] = [labels[int(v)] for v in gen(4000 + j, nc, 0.0, 1.0, "int", k)]
        cases.append({"tag": tag, "ref": ref, "cur": cur,
                      "num": ["num", "num_shift", "few4", "bin2"], "cat": ["cat5", "cat2"]})
    out = subprocess.run([py, "-c", EVIDENTLY_CODE], input=json.dumps(cases), capture_output=True,
                         text=True, timeout=600)
    if out.returncode != 0:
        print("evidently failed:", out.stderr[-500:], file=sys.stderr)
        return None
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return [{"tag": c["tag"], "n_ref": len(c["ref"]["num"]), "n_cur": len(c["cur"]["num"]),
             "columns": r} for c, r in zip(cases, res)]


def main():
    os.makedirs(OUT, exist_ok=True)
    data = {
        "versions": {"scipy": scipy.__version__, "numpy": np.__version__},
        "ks": ks_cases(), "ks_one_sided": ks_one_sided_cases(), "kstwo": kstwo_cases(), "mwu": mwu_cases(), "chi2": chi2_cases(),
        "fisher": fisher_cases(), "hist": hist_cases(), "samples": sample_dist_cases(),
        "binning": binning_cases(), "multitest": multitest_cases(), "mmd": mmd_cases(),
        "ztest": ztest_cases(), "cvm": cvm_cases(), "anderson": ad_cases(),
    }
    with open(os.path.join(OUT, "stats.json"), "w") as fh:
        json.dump(data, fh, indent=0)
    ev = evidently_cases()
    if ev is not None:
        with open(os.path.join(OUT, "evidently.json"), "w") as fh:
            json.dump(ev, fh, indent=1)
    if "--no-detectors" not in sys.argv:
        with open(os.path.join(OUT, "detectors.json"), "w") as fh:
            json.dump(detector_cases(), fh, indent=0)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(__file__))
    main()

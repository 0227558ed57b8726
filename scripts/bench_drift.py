#!/usr/bin/env python3
"""Drift statistics: edgeml-drift (criterion, benches/benches/drift.rs) versus scipy,
river and Evidently, measured in the same run; writes the "Drift statistics" section
of BENCHMARKS.md.

Usage: python3 scripts/bench_drift.py [--no-cargo] [--no-write]

Evidently 0.7 does not import with pandas 3; install it in a separate environment and
point EVIDENTLY_PYTHON at it, e.g.
    python3 -m venv /tmp/evvenv && /tmp/evvenv/bin/pip install evidently 'pandas<3'
    EVIDENTLY_PYTHON=/tmp/evvenv/bin/python python3 scripts/bench_drift.py
(default: /tmp/evvenv/bin/python when it exists). Without it the report baseline is
reported as not measured.
"""
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
N = 1_000_000
ROWS = 100_000


def med_time(f, reps):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def scipy_baselines():
    from scipy import stats
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=N), rng.normal(0.01, 1.0, size=N)
    return {
        "ks_2samp": med_time(lambda: stats.ks_2samp(a, b), 5),
        "wasserstein": med_time(lambda: stats.wasserstein_distance(a, b), 5),
        "energy_distance": med_time(lambda: stats.energy_distance(a, b), 5),
    }


def river_adwin():
    from river.drift import ADWIN
    rng = np.random.default_rng(1)
    n = 200_000
    xs = np.concatenate([rng.normal(size=n // 2), rng.normal(0.5, 1.0, size=n // 2)]).tolist()

    def run():
        d = ADWIN()
        for x in xs:
            d.update(x)

    return med_time(run, 3) / n  # seconds per update


EVIDENTLY_SCRIPT = r"""
import sys, time, statistics, json
import numpy as np, pandas as pd
from evidently import Report, Dataset, DataDefinition
from evidently.presets import DataDriftPreset
rows = int(sys.argv[1])
def frame(seed, shifted):
    rng = np.random.default_rng(seed)
    d = {}
    for j in range(15):
        d[f"num{j}"] = rng.normal(0.2 if shifted and j < 5 else 0.0, 1.0, rows)
    lv = np.array(list("abcde"))
    for j in range(5):
        u = rng.random(rows)
        if shifted and j < 2:
            u = u * u
        d[f"cat{j}"] = lv[(u * 5).astype(int)]
    return pd.DataFrame(d)
ref, cur = frame(1, False), frame(2, True)
dd = DataDefinition(numerical_columns=[f"num{j}" for j in range(15)],
                    categorical_columns=[f"cat{j}" for j in range(5)])
r = Dataset.from_pandas(ref, data_definition=dd)
c = Dataset.from_pandas(cur, data_definition=dd)
ts = []
for _ in range(3):
    t = time.perf_counter()
    Report([DataDriftPreset()]).run(current_data=c, reference_data=r)
    ts.append(time.perf_counter() - t)
print(json.dumps({"median_s": statistics.median(ts)}))
"""


def evidently_report():
    py = os.environ.get("EVIDENTLY_PYTHON")
    if not py and os.path.exists("/tmp/evvenv/bin/python"):
        py = "/tmp/evvenv/bin/python"
    py = py or sys.executable
    try:
        out = subprocess.run([py, "-c", EVIDENTLY_SCRIPT, str(ROWS)], capture_output=True,
                             text=True, timeout=1800)
        if out.returncode != 0:
            return None, out.stderr.strip().splitlines()[-1] if out.stderr else "failed"
        line = out.stdout.strip().splitlines()[-1]
        v = subprocess.run([py, "-c", "import evidently,pandas;print(evidently.__version__, pandas.__version__)"],
                           capture_output=True, text=True).stdout.strip()
        return json.loads(line)["median_s"], v
    except Exception as e:  # noqa: BLE001
        return None, str(e)


def cargo_bench():
    cmd = ["cargo", "bench", "-p", "edgeml-benches", "--bench", "drift", "--",
           "--warm-up-time", "1", "--measurement-time", "5"]
    subprocess.run(cmd, cwd=ROOT, check=True)


def criterion_median(name):
    p = os.path.join(ROOT, "target", "criterion", "drift", name, "new", "estimates.json")
    with open(p) as fh:
        return json.load(fh)["median"]["point_estimate"] * 1e-9


def main():
    t0 = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()
    if "--no-cargo" not in sys.argv:
        cargo_bench()
    ours = {
        "ks_2samp": criterion_median("ks_2samp_scalar_1000000x1000000"),
        "wasserstein": criterion_median("wasserstein_scalar_1000000x1000000"),
        "energy_distance": criterion_median("energy_distance_scalar_1000000x1000000"),
        "adwin": criterion_median("adwin_update_scalar_1000000") / N,
        "report": criterion_median("report_default_scalar_100000x20"),
    }
    base = scipy_baselines()
    river_s = river_adwin()
    ev_s, ev_info = evidently_report()
    import river
    import scipy
    rows = []
    for k, label in [("ks_2samp", "KS two-sample, 1e6 vs 1e6 (`ks_2samp`, asymptotic p)"),
                     ("wasserstein", "Wasserstein-1, 1e6 vs 1e6"),
                     ("energy_distance", "Energy distance, 1e6 vs 1e6")]:
        rows.append((label, f"{ours[k]*1e3:.1f} ms", f"scipy {scipy.__version__}: {base[k]*1e3:.1f} ms",
                     f"{base[k]/ours[k]:.1f}x"))
    rows.append(("ADWIN update (default config), per update", f"{ours['adwin']*1e9:.1f} ns "
                 f"({1/ours['adwin']/1e6:.1f} M updates/s)",
                 f"river {river.__version__}: {river_s*1e9:.0f} ns ({1/river_s/1e6:.2f} M/s)",
                 f"{river_s/ours['adwin']:.1f}x"))
    if ev_s is not None:
        rows.append(("Drift report, 100k rows x 20 cols (15 num + 5 cat), default tests",
                     f"{ours['report']*1e3:.0f} ms", f"Evidently {ev_info.split()[0]} DataDriftPreset: {ev_s*1e3:.0f} ms",
                     f"{ev_s/ours['report']:.1f}x"))
    else:
        rows.append(("Drift report, 100k rows x 20 cols", f"{ours['report']*1e3:.0f} ms",
                     f"Evidently not measured ({ev_info})", "-"))
    md = ["## Drift statistics (edgeml-drift vs scipy, river, Evidently)", "",
          f"Measured {t0} on {platform.machine()} ({os.cpu_count()} cores shared with other jobs; "
          f"load average at start {load[0]:.1f}, so absolute times are inflated for both sides). "
          "Ours: criterion medians (`benches/benches/drift.rs`; KS, Wasserstein and energy sort "
          "their two samples on two threads when both exceed 131072 values, everything else "
          "is single-threaded; scipy, river and Evidently are single-threaded); baselines: "
          "median of 5 (scipy), 3 (river, 2e5 updates; Evidently) runs in the same process run.",
          "", "| workload | edgeml-drift | baseline | speed-up |", "|---|---|---|---|"]
    md += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    md += ["", "Reproduce: `EVIDENTLY_PYTHON=/tmp/evvenv/bin/python python3 scripts/bench_drift.py` "
           "(runs `cargo bench -p edgeml-benches --bench drift` and the Python baselines, then "
           "rewrites this section).", ""]
    text = "\n".join(md)
    print(text)
    if "--no-write" not in sys.argv:
        p = os.path.join(ROOT, "BENCHMARKS.md")
        s = open(p).read()
        start = s.index("## Drift statistics")
        nxt = s.find("\n## ", start + 5)
        # Hand-written notes after the marker survive a re-run.
        old = s[start:len(s) if nxt < 0 else nxt]
        notes = old[old.index("<!-- notes -->"):] if "<!-- notes -->" in old else ""
        text += ("\n" + notes.rstrip("\n") + "\n") if notes else ""
        s = s[:start] + text + ("" if nxt < 0 else s[nxt:])
        open(p, "w").write(s if s.endswith("\n") else s + "\n")


if __name__ == "__main__":
    main()

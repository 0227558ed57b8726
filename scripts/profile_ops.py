#!/usr/bin/env python3
"""Where does a model's time go? Per-operator medians from `EDGEML_PROFILE`.

Runs `edgeml bench` with `EDGEML_PROFILE=1` (every plan step prints its wall time to
stderr), then prints the median time of each step, summed per operator type, and the
slowest individual nodes. No Python packages needed beyond the standard library.

    cargo build --release -p edgeml-cli
    python3 scripts/profile_ops.py tests/fixtures/models/light_squeezenet.onnx [--threads 1] [--iters 20] [--top 15]
    python3 scripts/profile_ops.py nudenet_320n.onnx --shape images=1,3,320,320

`--shape NAME=D,D,...` (repeatable) fixes an input's dynamic dimensions, as in `edgeml bench`.
"""

import argparse
import collections
import os
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "edgeml"))
    ap.add_argument("--shape", action="append", default=[], metavar="NAME=D,D,...",
                    help="an input's shape (repeatable), passed to `edgeml bench --shape`")
    a = ap.parse_args()
    env = dict(os.environ, EDGEML_PROFILE="1")
    cmd = [a.bin, "bench", a.model, "--threads", str(a.threads), "--iters", str(a.iters)]
    for sh in a.shape:
        cmd += ["--shape", sh]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    per = collections.defaultdict(list)
    for line in r.stderr.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0] == "edgeml-profile":
            per[parts[1]].append(int(parts[2]))
    if not per:
        sys.exit("no profile lines: is the binary built from this checkout?")
    med = {d: sorted(v)[len(v) // 2] for d, v in per.items()}
    summarise(a.model, med, a.top, "steps")


def summarise(title, med, top, noun):
    """Print per-operator totals and the `top` slowest entries of `med`, which maps
    `'<OpType> "<name>"'` to a median time in nanoseconds (shared with profile_ort.py)."""
    by_op = collections.defaultdict(lambda: [0, 0])
    for d, ns in med.items():
        op = d.split(" ", 1)[0]
        by_op[op][0] += ns
        by_op[op][1] += 1
    total = sum(med.values())
    print(f"{title}: {total / 1e6:.3f} ms summed over {len(med)} {noun} (medians)")
    print(f"{'operator':<28}{'nodes':>6}{'ms':>10}{'share':>8}")
    for op, (ns, n) in sorted(by_op.items(), key=lambda kv: -kv[1][0]):
        print(f"{op:<28}{n:>6}{ns / 1e6:>10.3f}{100 * ns / total:>7.1f}%")
    print(f"\nslowest {top} {noun}:")
    for d, ns in sorted(med.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {ns / 1e6:8.3f} ms  {d}")

if __name__ == "__main__":
    main()

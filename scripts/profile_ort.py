#!/usr/bin/env python3
"""Where does onnxruntime spend a model's time? Per-operator medians from ORT's profiler.

The counterpart of `scripts/profile_ops.py` for the baseline: runs the model with
`SessionOptions.enable_profiling`, then prints the median kernel time of each node, summed
per operator type, and the slowest nodes. ORT renames nodes it rewrites (NCHWc convs show
as `r<N>_nchwc`, fused ones keep their type `FusedConv`), so compare operator totals and
shapes, not names. Profiling adds a few µs per node, so the total exceeds `bench_float.py`.

    python3 scripts/profile_ort.py tests/fixtures/models/light_squeezenet.onnx [--threads 1] [--iters 30] [--top 25]
    python3 scripts/profile_ort.py nudenet_320n.onnx --shape images=1,3,320,320

`--shape NAME=D,D,...` (repeatable) gives an input's shape; other dynamic dimensions are 1.
"""

import argparse
import collections
import json
import os
import tempfile

import numpy as np
import onnxruntime as ort
from profile_ops import summarise


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--shape", action="append", default=[], metavar="NAME=D,D,...",
                    help="an input's shape (repeatable); other dynamic dimensions are 1")
    a = ap.parse_args()
    given = {}
    for sh in a.shape:
        name, _, dims = sh.partition("=")
        given[name] = [int(d) for d in dims.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "ort")
        s = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feeds = {}
        for i in s.get_inputs():
            shape = given.get(i.name) or [d if isinstance(d, int) else 1 for d in i.shape]
            feeds[i.name] = rng.random(shape, dtype=np.float32)
        for _ in range(a.iters):
            s.run(None, feeds)
        with open(s.end_profiling()) as f:
            events = json.load(f)
    per = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per[(e["args"]["op_name"], e["name"][: -len("_kernel_time")])].append(e["dur"])
    # µs → ns, keyed like edgeml's profile lines so both scripts print alike.
    med = {f'{op} "{name}"': 1000 * sorted(v)[len(v) // 2] for (op, name), v in per.items()}
    summarise(f"{a.model} (onnxruntime {ort.__version__})", med, a.top, "nodes")

if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What bounded execution costs: float latency of the same models through three builds of
`edgeml bench`, interleaved in one run.

* `before`: a build of the commit before run budgets existed (`--baseline-cli`, e.g. 3a1ff64,
  the parent of 3e185ee): no deadline, cancellation, loop or live-memory accounting;
* `now`: the current build with no deadline (the loop and live-memory limits are always
  on; the in-kernel polls are skipped);
* `now --timeout`: the current build with a deadline far in the future, so every check
  runs (between steps, inside GEMM/convolution tiles and packing).

Each row is `--rounds` interleaved rounds (before, now, now --timeout, before, ...) of
`--iters` timed runs after `--warmup`; cells are the median of the per-round medians and
ratios the median of the per-round ratios. `now / before` also includes every other
change since the baseline commit; `--timeout / now` is the cost of the polls alone. A
build that cannot run a model (the baseline predates fixes YOLOv8n needs) shows "—". Run it on an idle machine:

    git worktree add /tmp/before 3e185ee^
    (cd /tmp/before && CARGO_TARGET_DIR=/tmp/before-target cargo build --release -p edgeml-cli)
    cargo build --release -p edgeml-cli
    python3 scripts/bench_bounded.py --baseline-cli /tmp/before-target/release/edgeml
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MODELS = [
    ("digits CNN", "tests/fixtures/digits/cnn.onnx", [1, 2], []),
    ("ResNet-50 (light)", "tests/fixtures/models/light_resnet50.onnx", [1, 2], []),
    ("SqueezeNet 1.1 (light)", "tests/fixtures/models/light_squeezenet.onnx", [1, 2], []),
    ("ShuffleNet (light)", "tests/fixtures/models/light_shufflenet.onnx", [1, 2], []),
    # Trained models with dynamic input dimensions (scripts/bench_real_models.py
    # downloads them), at the shapes of the "trained models" float table.
    ("YOLOv8n (nudenet 320n)", "target/real-models/nudenet_320n.onnx", [1], ["--shape", "images=1,3,320,320"]),
    ("ddddocr OCR", "target/real-models/ddddocr_common.onnx", [1], ["--shape", "input1=1,1,64,256"]),
    # INT8 (QDQ models fused onto the INT8 kernels; scripts/bench_int8_models.py makes them).
    ("MobileNetV2 INT8 (QDQ)", "target/int8-models/mobilenet_v2_qdq.onnx", [1, 2], []),
    ("ResNet-50 INT8 (QDQ)", "target/int8-models/resnet50_qdq.onnx", [1, 2], []),
]


def median_ms(cli, path, threads, iters, warmup, extra):
    out = subprocess.run(
        [cli, "bench", path, "--threads", str(threads), "--iters", str(iters), "--warmup", str(warmup), "--json"]
        + extra,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(json.loads(out)["median_ms"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline-cli", required=True, help="edgeml built from before run budgets")
    ap.add_argument("--cli", default=os.path.join(ROOT, "target", "release", "edgeml"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--only", help="rows whose model name contains this text")
    ap.add_argument("--threads", help="only these thread counts, e.g. 1")
    args = ap.parse_args()
    os.chdir(ROOT)
    arms = [
        ("before", args.baseline_cli, []),
        ("now", args.cli, []),
        ("now --timeout", args.cli, ["--timeout", "3600"]),
    ]
    print("| model | threads | before (ms) | now (ms) | now / before | now --timeout (ms) | --timeout / now |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, rel, threads, shape in MODELS:
        if args.only and args.only not in name:
            continue
        if not os.path.exists(rel):
            print(f"SKIP {name}: {rel} not found (scripts/bench_real_models.py downloads it)", file=sys.stderr)
            continue
        for t in threads:
            if args.threads and str(t) not in args.threads.split(","):
                continue
            runs = {label: [] for label, _, _ in arms}
            for _ in range(max(1, args.rounds)):
                for label, cli, extra in arms:
                    if runs[label] is None:
                        continue
                    try:
                        runs[label].append(median_ms(cli, rel, t, args.iters, args.warmup, shape + extra))
                    except subprocess.CalledProcessError as e:
                        print(f"SKIP {label} on {name}: it cannot run the model: {e.stderr.strip()}", file=sys.stderr)
                        runs[label] = None

            def cell(label):
                return f"{statistics.median(runs[label]):.3f}" if runs[label] else "—"

            def ratio(a, b):
                if not runs[a] or not runs[b]:
                    return "—"
                return f"{statistics.median(x / y for x, y in zip(runs[a], runs[b])):.3f}x"

            print(
                f"| {name} | {t} | {cell('before')} | {cell('now')} | {ratio('now', 'before')} "
                f"| {cell('now --timeout')} | {ratio('now --timeout', 'now')} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Cross-compiles the test suites of the crates with aarch64 code paths and runs them
# under qemu-user: as a Cortex-A76 (Raspberry Pi 5: NEON + dotprod) all of them, and as
# a Cortex-A72 (Raspberry Pi 4: NEON, no dotprod) those of edgeml-quant's that do not
# loop over every kernel path: it is the only crate that picks code by dotprod (its
# INT8 kernels; edgeml-onnx's float kernels are the same NEON code on both). Clippy
# runs on the aarch64 build first.
#
# Every cargo command here selects the same three packages: another selection resolves
# other features of shared dependencies and rebuilds the whole aarch64 tree.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
QEMU="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$QEMU"
# Tests that re-run their own binary in a child process (edgeml-quant's env_override)
# start it through the same emulator.
export EDGEML_TEST_RUNNER="$QEMU"
SELECT=(--locked --target aarch64-unknown-linux-gnu -p edgeml-core -p edgeml-onnx -p edgeml-quant)
CARGO=(cargo test "${SELECT[@]}")
# The NEON kernels only compile for this target, so lint them here as well.
cargo clippy "${SELECT[@]}" --all-targets -- -D warnings
# Suites of target-independent logic (protobuf I/O, graph editing, plan bookkeeping,
# the run fuzzer's generator) run on the host only; every suite that computes
# (kernels, operators, models, passes that fold and compare) runs here too. A new
# suite runs here unless it is named in HOST_ONLY.
HOST_ONLY=" graph_edit io_attr_types io_bad_models io_dims io_encodings io_external io_mutations
  io_roundtrip io_topo nn_errors ops_plan plan_guard run_fuzz "
TARGETS=(--lib)
for t in edgeml-onnx/tests/*.rs edgeml-quant/tests/*.rs; do
  t="$(basename "$t" .rs)"
  [[ "$HOST_ONLY" == *" $t "* ]] || TARGETS+=(--test "$t")
done
# The test executables of edgeml-quant, for the Cortex-A72 run.
quant_bins="$("${CARGO[@]}" "${TARGETS[@]}" --no-run --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "edgeml-quant" in m["package_id"]:
        print(m["executable"])')"
echo "--- QEMU_CPU=cortex-a76"
QEMU_CPU=cortex-a76 "${CARGO[@]}" "${TARGETS[@]}"
echo "--- QEMU_CPU=cortex-a72 (edgeml-quant)"
[ -n "$quant_bins" ] || { echo "no edgeml-quant test executables found" >&2; exit 1; }
# Suites that loop over every kernel path the CPU has already ran the `neon` path
# above, beside `neon-dotprod`; here they would repeat it. What differs without
# dotprod is the dispatch: the models, operators and quantizer suites run on `neon` as
# the best path, and `kernels`' path check sees dotprod missing.
PER_PATH=" depthwise_wide direct_conv env_override ort_fixtures requant smoke sparse_gemm sparse_onnx "
# cargo runs each test executable in its package's folder; so does this.
cd edgeml-quant
for exe in $quant_bins; do
  name="$(basename "$exe")"
  name="${name%-*}"
  if [[ "$PER_PATH" == *" $name "* ]]; then
    echo "    SKIP: $name (loops over every kernel path: its neon path ran above)"
    continue
  fi
  filter=()
  [ "$name" = kernels ] && filter=(every_available_path_is_exercised --nocapture)
  echo "    Running $name"
  QEMU_CPU=cortex-a72 $QEMU "$exe" "${filter[@]}"
done

#!/usr/bin/env bash
# Cross-compiles the test suites of the crates with aarch64 code paths and runs them
# under qemu-user, once as a Cortex-A72 (Raspberry Pi 4: NEON, no dotprod) and once as a
# Cortex-A76 (Raspberry Pi 5: NEON + dotprod). Clippy runs on the aarch64 build first.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
# Tests that re-run their own binary in a child process (edgeml-quant's env_override)
# start it through the same emulator.
export EDGEML_TEST_RUNNER="$CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER"
CRATES=(-p edgeml-core -p edgeml-onnx -p edgeml-quant)
# The NEON kernels only compile for this target, so lint them here as well.
cargo clippy --locked --target aarch64-unknown-linux-gnu "${CRATES[@]}" --all-targets -- -D warnings
cargo test --locked --target aarch64-unknown-linux-gnu "${CRATES[@]}" --no-run
for cpu in cortex-a72 cortex-a76; do
  echo "--- QEMU_CPU=$cpu"
  QEMU_CPU=$cpu cargo test --locked --target aarch64-unknown-linux-gnu "${CRATES[@]}"
done

#!/usr/bin/env bash
# Runs both fuzz targets for a bounded time each (FUZZ_SECONDS, default 60):
# `load` (fuzz/fuzz_targets/load.rs), seeded with the bundled good and bad models, and
# `run` (fuzz/fuzz_targets/run.rs, generated graphs under tight run limits).
# Both targets are built by one `cargo fuzz build`, so the sanitizer build of the
# dependencies is shared.
# Only a stable toolchain is needed: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its
# nightly-only flags; ASan is used when the toolchain ships its runtime, otherwise
# the run falls back to `--sanitizer none` (libFuzzer still catches panics, aborts,
# timeouts and the RSS limit).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS="${FUZZ_SECONDS:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p fuzz/corpus/load fuzz/corpus/run
for f in tests/fixtures/models/*.onnx tests/fixtures/bad/*.onnx; do
  [ "$(stat -c %s "$f")" -le 65536 ] && cp "$f" fuzz/corpus/load/
done
export RUSTC_BOOTSTRAP=1
load_args=(-max_total_time="$SECS" -rss_limit_mb=2048 -max_len=65536 -timeout=10)
# `run` options as in fuzz/README.md's campaigns: inputs decode into graphs whose runs
# are bounded by a 5 s deadline, so a 20 s timeout only fires on a real hang.
run_args=(-max_total_time="$SECS" -rss_limit_mb=2048 -max_len=512 -timeout=20)
cd fuzz
san=address
if ! cargo fuzz build --release --sanitizer address 2>/dev/null; then
  echo "fuzz.sh: ASan build unavailable, running with --sanitizer none"
  san=none
fi
cargo fuzz run --release --sanitizer "$san" load corpus/load -- "${load_args[@]}"
cargo fuzz run --release --sanitizer "$san" run corpus/run -- "${run_args[@]}"

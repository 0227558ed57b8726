#!/usr/bin/env bash
# Runs the loader fuzz target (fuzz/fuzz_targets/load.rs) for a bounded time
# (FUZZ_SECONDS, default 60), seeded with the bundled good and bad models.
# Only a stable toolchain is needed: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its
# nightly-only flags; ASan is used when the toolchain ships its runtime, otherwise
# the run falls back to `--sanitizer none` (libFuzzer still catches panics, aborts,
# timeouts and the RSS limit).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS="${FUZZ_SECONDS:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
corpus=fuzz/corpus/load
mkdir -p "$corpus"
for f in tests/fixtures/models/*.onnx tests/fixtures/bad/*.onnx; do
  [ "$(stat -c %s "$f")" -le 65536 ] && cp "$f" "$corpus/"
done
export RUSTC_BOOTSTRAP=1
args=(-max_total_time="$SECS" -rss_limit_mb=2048 -max_len=65536 -timeout=10)
cd fuzz
if cargo fuzz build --release --sanitizer address load 2>/dev/null; then
  cargo fuzz run --release --sanitizer address load "corpus/load" -- "${args[@]}"
else
  echo "fuzz.sh: ASan build unavailable, running with --sanitizer none"
  cargo fuzz run --release --sanitizer none load "corpus/load" -- "${args[@]}"
fi

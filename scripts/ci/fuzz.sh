#!/usr/bin/env bash
# Runs both fuzz targets for a bounded time each (FUZZ_SECONDS, default 30):
# `load` (fuzz/fuzz_targets/load.rs), seeded with the bundled good and bad models, and
# `run` (fuzz/fuzz_targets/run.rs, generated graphs under tight run limits).
#
# The targets are built the way `cargo fuzz build --release` builds them (its
# instrumentation flags, `--cfg fuzzing`, debug assertions and overflow checks, for the
# host target so build scripts and proc macros stay uninstrumented), by plain cargo:
# installing cargo-fuzz on a fresh CI machine took 9 of the 45 minutes this CI may use.
# `cargo fuzz run` (fuzz/README.md) runs the same targets for campaigns.
# Only a stable toolchain is needed: RUSTC_BOOTSTRAP=1 allows `-Zsanitizer=address`;
# ASan is used when the toolchain ships its runtime, otherwise the run goes on without
# it (libFuzzer still catches panics, aborts, timeouts and the RSS limit).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS="${FUZZ_SECONDS:-30}"
host="$(rustc -vV | sed -n 's/^host: //p')"
mkdir -p fuzz/corpus/load fuzz/corpus/run fuzz/artifacts/load fuzz/artifacts/run
for f in tests/fixtures/models/*.onnx tests/fixtures/bad/*.onnx; do
  [ "$(stat -c %s "$f")" -le 65536 ] && cp "$f" fuzz/corpus/load/
done
flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
flags+=" -Cllvm-args=-sanitizer-coverage-pc-table"
flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares"
flags+=" -Cllvm-args=-sanitizer-coverage-stack-depth"
flags+=" --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
build() {
  RUSTC_BOOTSTRAP=1 RUSTFLAGS="$flags $1" cargo build --release --manifest-path fuzz/Cargo.toml \
    --target "$host" --bins
}
if ! build "-Zsanitizer=address"; then
  echo "fuzz.sh: ASan build unavailable, fuzzing without a sanitizer"
  build ""
fi
bin="fuzz/target/$host/release"
export ASAN_OPTIONS="detect_odr_violation=0:${ASAN_OPTIONS:-}"
# `run` options as in fuzz/README.md's campaigns: inputs decode into graphs whose runs
# are bounded by a 5 s deadline, so a 20 s timeout only fires on a real hang.
"$bin/load" -artifact_prefix=fuzz/artifacts/load/ -max_total_time="$SECS" -rss_limit_mb=2048 \
  -max_len=65536 -timeout=10 fuzz/corpus/load
"$bin/run" -artifact_prefix=fuzz/artifacts/run/ -max_total_time="$SECS" -rss_limit_mb=2048 \
  -max_len=512 -timeout=20 fuzz/corpus/run

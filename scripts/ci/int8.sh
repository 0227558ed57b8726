#!/usr/bin/env bash
# Interop check of the INT8 kernels against the installed onnxruntime: regenerates the
# fixtures of tests/fixtures/int8/ (seeded, deterministic) and runs the cross-check
# tests on them. A change in onnxruntime's results shows up as a test failure here and
# as a diff of the fixture files.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 scripts/make_int8_fixtures.py
cargo test --locked --workspace --test ort_fixtures
git diff --stat -- tests/fixtures/int8 || true

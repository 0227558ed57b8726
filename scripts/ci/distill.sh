#!/usr/bin/env bash
# Interop check for edgeml-distill: regenerate the numpy replications of PyTorch's loss
# definitions into a temporary folder and run the fixture tests on them.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
EDGEML_DISTILL_FIXTURES="$tmp" python3 scripts/make_distill_fixtures.py
EDGEML_DISTILL_FIXTURES="$tmp" cargo test --locked -p edgeml-distill --no-default-features \
  --test pytorch_fixtures

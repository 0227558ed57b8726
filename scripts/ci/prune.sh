#!/usr/bin/env bash
# Fixture check for edgeml-prune: regenerate the numpy replications of
# torch.nn.utils.prune and TF-MOT into a temporary folder and run the fixture tests on
# them (the crate's `onnx` feature is not needed).
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
EDGEML_PRUNE_FIXTURES="$tmp" python3 scripts/make_prune_fixtures.py
EDGEML_PRUNE_FIXTURES="$tmp" cargo test --locked -p edgeml-prune --no-default-features \
  --test torch_fixtures --test tfmot_schedules

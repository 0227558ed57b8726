#!/usr/bin/env bash
# Interop check for edgeml-drift: regenerate the scipy/river fixtures with whatever
# versions are installed, into a temporary folder, and run the fixture tests on them.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
EDGEML_DRIFT_FIXTURES="$tmp" python3 scripts/make_drift_fixtures.py
EDGEML_DRIFT_FIXTURES="$tmp" cargo test --locked -p edgeml-drift \
  --test scipy_fixtures --test river_fixtures

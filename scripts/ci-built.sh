# Sourced by the scripts in scripts/ci/ that run edgeml's binaries. They run the ones
# `.ci/run`'s tests step already built (`cargo test --workspace`: the test profile,
# opt-level 1 with debug assertions), so no script compiles anything of its own: each
# `-p` selection of a package resolves other features of shared dependencies and
# recompiled the dependency tree, and the separate release builds cost CI about ten of
# its 45 minutes. Run standalone, the first script builds that test tree.
# Sets EDGEML (the CLI) and EXAMPLES (the folder of the built examples).
cargo test --locked --workspace --no-run -q
EDGEML="${CARGO_TARGET_DIR:-target}/debug/edgeml"
EXAMPLES="${CARGO_TARGET_DIR:-target}/debug/examples"
[ -x "$EDGEML" ] || { echo "ci-built.sh: $EDGEML is missing after the test build" >&2; exit 1; }

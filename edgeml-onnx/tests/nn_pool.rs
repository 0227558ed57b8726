//! onnxruntime reference fixtures for the pool operators (see `nn_util`).
#![allow(missing_docs)]

mod nn_util;

#[test]
fn pool_fixtures_match_onnxruntime() {
    nn_util::run_all(&["maxpool", "avgpool", "global"]);
}

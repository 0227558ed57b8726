//! onnxruntime reference fixtures for the norm operators (see `nn_util`).
#![allow(missing_docs)]

mod nn_util;

#[test]
fn norm_fixtures_match_onnxruntime() {
    nn_util::run_all(&["batchnorm", "layernorm", "instancenorm"]);
}

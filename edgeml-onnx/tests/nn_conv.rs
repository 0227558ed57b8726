//! onnxruntime reference fixtures for the conv operators (see `nn_util`).
#![allow(missing_docs)]

mod nn_util;

#[test]
fn conv_fixtures_match_onnxruntime() {
    nn_util::run_all(&["conv"]);
}

#[test]
fn fused_conv_fixtures_match_onnxruntime() {
    nn_util::run_all(&["fusedconv"]);
}

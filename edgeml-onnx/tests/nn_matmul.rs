//! onnxruntime reference fixtures for the matmul operators (see `nn_util`).
#![allow(missing_docs)]

mod nn_util;

#[test]
fn matmul_fixtures_match_onnxruntime() {
    nn_util::run_all(&["matmul", "gemm"]);
}

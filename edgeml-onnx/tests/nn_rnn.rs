//! onnxruntime reference fixtures for the rnn operators (see `nn_util`).
#![allow(missing_docs)]

mod nn_util;

#[test]
fn rnn_fixtures_match_onnxruntime() {
    nn_util::run_all(&["lstm", "gru"]);
}

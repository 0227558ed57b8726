//! Fuzzes the ONNX loader: any bytes must give a model or a typed error, never a panic,
//! an abort or an unbounded allocation; whatever loads must save and reload.
#![no_main]

use edgeml_onnx::{Limits, LoadOptions, Model};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default()
        .max_model_bytes(1 << 20)
        .max_tensor_elements(1 << 22)
        .max_total_weight_bytes(64 << 20)
        .max_nodes(100_000);
    let opts = LoadOptions::new().limits(limits);
    if let Ok(m) = Model::from_bytes_with(data, &opts) {
        let _ = m.summary();
        let _ = m.graph.topo_order();
        let bytes = m.to_bytes().expect("a loaded model encodes");
        let back = Model::from_bytes_with(&bytes, &opts).expect("an encoded model reloads");
        assert_eq!(back.to_bytes().expect("encodes again"), bytes, "re-encoding is stable");
    }
});

//! Fuzzes the interpreter: bytes become a small valid graph (operators, attributes,
//! loop trip counts and folding bombs from a menu, see
//! `edgeml-onnx/tests/common/gen.rs`), which is planned and run within tight
//! `RunLimits` and a deadline. Any panic, abort, internal error, hang or allocation past
//! the RSS limit is a finding. `edgeml-onnx/tests/run_fuzz.rs` runs the same check
//! with proptest on stable.
#![no_main]

#[path = "../../edgeml-onnx/tests/common/gen.rs"]
mod generator;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    generator::check_bounded(&generator::generate(data));
});

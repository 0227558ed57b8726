//! The run fuzzer's graph generator (`tests/common/gen.rs`) on stable: proptest feeds
//! it random bytes, and every generated model must plan and run within its limits or
//! fail with a typed error, never an internal error (a caught panic) or a hang. The
//! cargo-fuzz target `fuzz/fuzz_targets/run.rs` runs the same check on nightly.

#[path = "common/gen.rs"]
mod generator;

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn generated_models_run_bounded(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        generator::check_bounded(&generator::generate(&data));
    }
}

/// The generator really builds what it is meant to exercise: most inputs give a model
/// that plans and runs, and the menu reaches loops, branches and folding bombs.
#[test]
fn the_generator_builds_runnable_models_with_control_flow() {
    use edgeml_onnx::{Plan, PlanOptions, RunOptions, Tensor};
    let mut ran = 0;
    let mut ops = std::collections::HashSet::new();
    for seed in 0u32..300 {
        let data: Vec<u8> = (0..120u32)
            .map(|i| {
                (seed
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(i.wrapping_mul(40_503))
                    >> 13) as u8
            })
            .collect();
        let g = generator::generate(&data);
        ops.extend(g.model.graph.nodes.iter().map(|n| n.op_type.clone()));
        let mut o = PlanOptions::with_threads(1);
        o.limits = generator::fuzz_limits();
        let Ok(plan) = Plan::new(&g.model, o) else {
            continue;
        };
        let refs: Vec<(&str, &Tensor)> = g.inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
        if plan.run_with(&refs, &RunOptions::new()).is_ok() {
            ran += 1;
        }
    }
    assert!(ran >= 150, "only {ran} of 300 generated models ran");
    for op in ["Loop", "If", "ConstantOfShape", "MatMul", "Concat"] {
        assert!(ops.contains(op), "the generator never made a {op}");
    }
}

//! Schedules against numpy replications of TF-MOT's `PolynomialDecay` and
//! `ConstantSparsity` (tests/fixtures/prune/tfmot_schedules.json).

mod common;
use common::{fixture, usizes};
use edgeml_prune::{ConstantSparsity, PolynomialDecay, Schedule};

/// Both sides compute in float32; `powf` may differ from numpy's by an ulp.
const TOL: f32 = 2e-7;

#[test]
fn polynomial_decay_matches_tfmot() {
    let f = fixture("tfmot_schedules.json");
    let mut failures = vec![];
    for c in f["polynomial"].as_array().expect("cases") {
        let g = |k: &str| c[k].as_f64().expect(k);
        let s = PolynomialDecay::new(g("initial"), g("final"), g("begin") as u64, g("end") as u64)
            .and_then(|s| s.with_power(g("power") as f32))
            .and_then(|s| s.with_frequency(g("frequency") as u64))
            .expect("schedule");
        let steps = usizes(&c["steps"]);
        for (i, &t) in steps.iter().enumerate() {
            let want = c["sparsity"][i].as_f64().expect("s") as f32;
            let got = s.sparsity(t as u64);
            if (got - want).abs() > TOL {
                failures.push(format!("{c:.40} step {t}: {got} vs {want}"));
            }
            if s.should_prune(t as u64) != c["should_prune"][i].as_bool().expect("b") {
                failures.push(format!("should_prune step {t}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn constant_sparsity_matches_tfmot() {
    let f = fixture("tfmot_schedules.json");
    let mut failures = vec![];
    for c in f["constant"].as_array().expect("cases") {
        let end = c["end"].as_i64().expect("end");
        let s = ConstantSparsity::new(
            c["target"].as_f64().expect("target"),
            c["begin"].as_u64().expect("begin"),
            u64::try_from(end).ok(),
            c["frequency"].as_u64().expect("frequency"),
        )
        .expect("schedule");
        for (i, &t) in usizes(&c["steps"]).iter().enumerate() {
            let want = c["sparsity"][i].as_f64().expect("s") as f32;
            if s.sparsity(t as u64) != want {
                failures.push(format!("sparsity step {t}"));
            }
            if s.should_prune(t as u64) != c["should_prune"][i].as_bool().expect("b") {
                failures.push(format!("end {end} should_prune step {t}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

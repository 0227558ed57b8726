//! Shared helpers of the fixture tests.
#![allow(dead_code, unreachable_pub)]

use edgeml_drift::rng::SplitMix64;
use serde_json::Value;

/// Loads `tests/fixtures/drift/<name>` from the repository root.
pub fn fixture(name: &str) -> Value {
    // scripts/ci/drift.sh points this at freshly generated fixtures
    let dir = std::env::var_os("EDGEML_DRIFT_FIXTURES").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/drift"),
        std::path::PathBuf::from,
    );
    let p = dir.join(name);
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&s).expect("fixture json")
}

/// The generator twin of `gen()` in scripts/make_drift_fixtures.py.
pub fn generate(seed: u64, n: usize, loc: f64, scale: f64, kind: &str, k: f64) -> Vec<f64> {
    let mut r = SplitMix64::new(seed);
    (0..n)
        .map(|_| match kind {
            "ih" => {
                let s = r.next_f64() + r.next_f64() + r.next_f64() + r.next_f64();
                loc + scale * (s - 2.0)
            }
            "int" => loc + (r.next_f64() * k).floor(),
            _ => panic!("kind {kind}"),
        })
        .collect()
}

/// A number from the fixture (strings "inf", "-inf", "nan" allowed).
pub fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        Value::String(s) if s == "nan" => f64::NAN,
        _ => v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")),
    }
}

/// A sample: an explicit list or a generator spec.
pub fn sample(v: &Value) -> Vec<f64> {
    if let Some(g) = v.get("gen") {
        let g = g.as_array().expect("gen");
        return generate(
            g[0].as_u64().expect("seed"),
            g[1].as_u64().expect("n") as usize,
            num(&g[2]),
            num(&g[3]),
            g[4].as_str().expect("kind"),
            num(&g[5]),
        );
    }
    v.as_array().expect("list").iter().map(num).collect()
}

pub fn vecf(v: &Value) -> Vec<f64> {
    v.as_array().expect("list").iter().map(num).collect()
}

/// Relative closeness: 1e-9 (1e-6 for values below 1e-10), with an absolute floor.
pub fn close(got: f64, want: f64, abs_floor: f64) -> bool {
    if got == want || (got.is_nan() && want.is_nan()) {
        return true;
    }
    let tol = if want.abs() < 1e-10 { 1e-6 } else { 1e-9 };
    (got - want).abs() <= tol * want.abs() || (got - want).abs() <= abs_floor
}

#[track_caller]
pub fn check(what: &str, got: f64, want: f64, abs_floor: f64) {
    assert!(
        close(got, want, abs_floor),
        "{what}: got {got:e}, want {want:e}"
    );
}

//! Shared helpers of the fixture tests.
#![allow(dead_code, unreachable_pub)]

use serde_json::Value;

/// Loads `tests/fixtures/prune/<name>` (or `$EDGEML_PRUNE_FIXTURES/<name>`).
pub fn fixture(name: &str) -> Value {
    // scripts/ci/prune.sh points this at freshly generated fixtures
    let dir = std::env::var_os("EDGEML_PRUNE_FIXTURES").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/prune"),
        std::path::PathBuf::from,
    );
    let p = dir.join(name);
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&s).expect("fixture json")
}

pub fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("list")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

pub fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("list")
        .iter()
        .map(|x| x.as_u64().expect("integer") as usize)
        .collect()
}

/// A mask written as a string of '0' and '1'.
pub fn mask(v: &Value) -> Vec<bool> {
    v.as_str()
        .expect("mask string")
        .bytes()
        .map(|b| b == b'1')
        .collect()
}

/// `amount` as edgeml's `Amount` (the fixture says whether it was a Python int).
pub fn amount(c: &Value) -> edgeml_prune::Amount {
    if c["amount_is_count"].as_bool().expect("flag") {
        edgeml_prune::Amount::Count(c["amount"].as_u64().expect("count") as usize)
    } else {
        edgeml_prune::Amount::Fraction(c["amount"].as_f64().expect("fraction"))
    }
}

pub fn show(m: &[bool]) -> String {
    m.iter().map(|&k| if k { '1' } else { '0' }).collect()
}

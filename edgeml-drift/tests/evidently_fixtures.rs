//! The report's default test choice and scores against Evidently 0.7's
//! DataDriftPreset (tests/fixtures/drift/evidently.json, written by
//! scripts/make_drift_fixtures.py when Evidently is available).

mod common;
use common::{fixture, generate};
use edgeml_drift::report::{ColumnValues, ReportConfig, TestKind, feature_drift};

fn columns(n: usize, base: u64) -> Vec<(String, ColumnValues)> {
    let mut v = vec![];
    let specs: [(&str, f64, &str, f64); 4] = [
        ("num", 0.0, "ih", 0.0),
        ("num_shift", 0.3, "ih", 0.0),
        ("few4", 0.0, "int", 4.0),
        ("bin2", 0.0, "int", 2.0),
    ];
    for (j, (name, loc, kind, k)) in specs.iter().enumerate() {
        v.push((
            name.to_string(),
            ColumnValues::Numeric(generate(base + j as u64, n, *loc, 1.0, kind, *k)),
        ));
    }
    for (j, (name, k)) in [("cat5", 5.0), ("cat2", 2.0)].iter().enumerate() {
        let seed = if base == 1000 { 3000 } else { 4000 } + j as u64;
        let labels = ["a", "b", "c", "d", "e"];
        let vals = generate(seed, n, 0.0, 1.0, "int", *k)
            .iter()
            .map(|&x| Some(labels[x as usize].to_string()))
            .collect();
        v.push((name.to_string(), ColumnValues::Categorical(vals)));
    }
    v
}

#[test]
fn default_tests_and_scores_match_evidently() {
    let fx = fixture("evidently.json");
    let mut failures = vec![];
    for case in fx.as_array().expect("cases") {
        let (nr, nc) = (
            case["n_ref"].as_u64().expect("n") as usize,
            case["n_cur"].as_u64().expect("n") as usize,
        );
        let (r, c) = (columns(nr, 1000), columns(nc, 2000));
        for ((name, rv), (_, cv)) in r.iter().zip(&c) {
            let want = &case["columns"][name.as_str()];
            let f = feature_drift(name, rv, cv, &ReportConfig::default()).expect("feature");
            let kind = match want["method"].as_str().expect("method") {
                "K-S p_value" => TestKind::Ks,
                "chi-square p_value" => TestKind::Chi2,
                "Z-test p_value" => TestKind::Z,
                "Wasserstein distance (normed)" => TestKind::Wasserstein,
                "Jensen-Shannon distance" => TestKind::Js,
                other => panic!("unknown Evidently method {other}"),
            };
            if f.test != kind {
                failures.push(format!(
                    "{} {name}: test {:?} vs Evidently {kind:?}",
                    case["tag"], f.test
                ));
                continue;
            }
            let v = common::num(&want["value"]);
            let ours = if kind.is_pvalue() {
                f.p_value.expect("p")
            } else {
                f.statistic.expect("s")
            };
            let thr = common::num(&want["threshold"]);
            assert_eq!(f.threshold, thr);
            if kind == TestKind::Chi2 {
                // documented deviation: homogeneity test instead of Evidently's
                // goodness-of-fit; the decision must agree on these samples
                if f.drifted != (v < thr) {
                    failures.push(format!(
                        "{} {name}: chi2 decision differs ({ours} vs {v})",
                        case["tag"]
                    ));
                }
            } else if !common::close(ours, v, 1e-15) {
                failures.push(format!(
                    "{} {name} {kind:?}: {ours} vs Evidently {v}",
                    case["tag"]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

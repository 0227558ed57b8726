//! Drift reports: default test choice, bad input, non-finite accounting, JSON.

use edgeml_drift::report::*;
use edgeml_drift::{Error, stats};

fn num(v: Vec<f64>) -> ColumnValues {
    ColumnValues::Numeric(v)
}
fn cat(v: &[&str]) -> ColumnValues {
    ColumnValues::Categorical(
        v.iter()
            .map(|s| (!s.is_empty()).then(|| s.to_string()))
            .collect(),
    )
}
fn lin(n: usize, shift: f64) -> Vec<f64> {
    (0..n)
        .map(|i| (i as f64 * 0.618_033_988_7).fract() + shift)
        .collect()
}

#[test]
fn default_tests_follow_evidently_rules() {
    let cfg = ReportConfig::default();
    let f = feature_drift("x", &num(lin(500, 0.0)), &num(lin(400, 0.2)), &cfg).expect("ok");
    assert_eq!(f.test, TestKind::Ks);
    assert!(f.drifted);
    let want = stats::ks_2samp(&lin(500, 0.0), &lin(400, 0.2), stats::Method::Auto).expect("ks");
    assert_eq!(f.p_value, Some(want.pvalue));
    let f = feature_drift("x", &num(lin(5000, 0.0)), &num(lin(4000, 0.01)), &cfg).expect("ok");
    assert_eq!(f.test, TestKind::Wasserstein);
    assert!(!f.drifted && f.statistic.expect("s") < 0.1);
    let few: Vec<f64> = (0..600).map(|i| (i % 4) as f64).collect();
    let f = feature_drift("x", &num(few.clone()), &num(few.clone()), &cfg).expect("ok");
    assert_eq!(f.test, TestKind::Chi2);
    let bin: Vec<f64> = (0..600).map(|i| (i % 2) as f64).collect();
    let f = feature_drift("x", &num(bin.clone()), &num(bin), &cfg).expect("ok");
    assert_eq!(f.test, TestKind::Z);
    let big: Vec<&str> = (0..2000).map(|i| ["a", "b", "c"][i % 3]).collect();
    let f = feature_drift("c", &cat(&big), &cat(&big), &cfg).expect("ok");
    assert_eq!(f.test, TestKind::Js);
    assert_eq!(f.statistic, Some(0.0));
}

#[test]
fn nonfinite_values_are_counted_not_dropped_silently() {
    let mut r = lin(100, 0.0);
    r.extend([f64::NAN, f64::NAN, f64::INFINITY]);
    let mut c = lin(80, 0.0);
    c.push(f64::NEG_INFINITY);
    let f = feature_drift("x", &num(r), &num(c), &ReportConfig::default()).expect("ok");
    assert_eq!((f.n_reference, f.n_current), (100, 80));
    assert_eq!(f.nonfinite_reference.nan, 2);
    assert_eq!(f.nonfinite_reference.pos_inf, 1);
    assert_eq!(f.nonfinite_current.neg_inf, 1);
    assert!(f.statistic.expect("s").is_finite());
}

#[test]
fn all_nan_column_gets_a_note_not_a_nan() {
    let f = feature_drift(
        "x",
        &num(vec![f64::NAN; 10]),
        &num(lin(10, 0.0)),
        &ReportConfig::default(),
    )
    .expect("ok");
    assert_eq!(f.statistic, None);
    assert!(!f.drifted);
    assert!(f.note.as_deref().expect("note").contains("reference"));
    let f =
        feature_drift("c", &cat(&["", ""]), &cat(&["a"]), &ReportConfig::default()).expect("ok");
    assert_eq!(f.statistic, None);
    assert_eq!(f.nonfinite_reference.nan, 2);
}

#[test]
fn single_category_is_not_drift() {
    let f = feature_drift(
        "c",
        &cat(&["a"; 50]),
        &cat(&["a"; 20]),
        &ReportConfig::default(),
    )
    .expect("ok");
    assert_eq!(f.test, TestKind::Z);
    assert_eq!(f.p_value, Some(1.0));
    assert!(!f.drifted);
    let cfg = ReportConfig {
        test: TestKind::Chi2,
        ..Default::default()
    };
    let f = feature_drift("c", &cat(&["a"; 50]), &cat(&["a"; 20]), &cfg).expect("ok");
    assert_eq!((f.statistic, f.p_value), (Some(0.0), Some(1.0)));
}

#[test]
fn unseen_categories_are_handled() {
    let r: Vec<&str> = (0..300).map(|i| ["a", "b", "c"][i % 3]).collect();
    let c: Vec<&str> = (0..300).map(|i| ["a", "b", "d"][i % 3]).collect();
    let f = feature_drift("c", &cat(&r), &cat(&c), &ReportConfig::default()).expect("ok");
    assert_eq!(f.test, TestKind::Chi2);
    assert!(f.drifted);
    for t in [
        TestKind::Psi,
        TestKind::Kl,
        TestKind::Js,
        TestKind::Hellinger,
        TestKind::Tv,
    ] {
        let cfg = ReportConfig {
            test: t,
            ..Default::default()
        };
        let f = feature_drift("c", &cat(&r), &cat(&c), &cfg).expect("ok");
        assert!(f.statistic.expect("s").is_finite(), "{t:?}");
        assert!(f.drifted, "{t:?}");
    }
}

#[test]
fn mismatched_columns_are_a_schema_error() {
    let r = vec![
        ("a".to_string(), num(vec![1.0])),
        ("b".to_string(), num(vec![1.0])),
    ];
    let c = vec![
        ("a".to_string(), num(vec![1.0])),
        ("z".to_string(), num(vec![1.0])),
    ];
    let e = drift_report(&r, &c, &ReportConfig::default()).expect_err("schema");
    assert!(matches!(e, Error::Schema(_)));
    assert!(e.to_string().contains("\"b\"") && e.to_string().contains("\"z\""));
}

#[test]
fn numeric_test_on_categorical_falls_back_with_a_note() {
    let cfg = ReportConfig {
        test: TestKind::Ks,
        ..Default::default()
    };
    let f = feature_drift("c", &cat(&["a", "b", "c"]), &cat(&["a"]), &cfg).expect("ok");
    assert_eq!(f.test, TestKind::Chi2);
    assert!(f.note.expect("note").contains("Ks"));
}

#[test]
fn report_serialises_and_corrects() {
    let r: Vec<(String, ColumnValues)> = (0..4)
        .map(|i| (format!("f{i}"), num(lin(300, 0.0))))
        .collect();
    let c: Vec<(String, ColumnValues)> = (0..4)
        .map(|i| (format!("f{i}"), num(lin(300, 0.04 * i as f64))))
        .collect();
    let plain = drift_report(&r, &c, &ReportConfig::default()).expect("ok");
    let cfg = ReportConfig {
        correction: Correction::Bonferroni,
        ..Default::default()
    };
    let corrected = drift_report(&r, &c, &cfg).expect("ok");
    assert!(corrected.n_drifted <= plain.n_drifted);
    let json = serde_json::to_string(&corrected).expect("json");
    let back: DriftReport = serde_json::from_str(&json).expect("json");
    assert_eq!(back, corrected);
}

#[test]
fn infer_column_types() {
    assert!(matches!(
        ColumnValues::infer(&["1", "2.5", "", "nan", "inf"]),
        ColumnValues::Numeric(_)
    ));
    assert!(matches!(
        ColumnValues::infer(&["1", "x"]),
        ColumnValues::Categorical(_)
    ));
}

#[test]
fn a_test_that_cannot_run_leaves_a_note() {
    let cfg = ReportConfig {
        test: TestKind::Cvm,
        ..Default::default()
    };
    let f = feature_drift("x", &num(vec![1.0]), &num(vec![1.0, 2.0, 3.0]), &cfg).expect("ok");
    assert_eq!(f.statistic, None);
    assert!(f.note.expect("note").contains("at least 2"));
}

#[test]
fn mann_whitney_auto_stays_bounded_on_huge_unbalanced_samples() {
    use edgeml_drift::stats::{Method, mann_whitney_u};
    let small = [0.5, 1.5, 2.5];
    let big: Vec<f64> = (0..2_000_000).map(|i| i as f64 * 1e-6 + 0.1).collect();
    let r = mann_whitney_u(&small, &big, Method::Auto).expect("auto goes asymptotic");
    assert!(r.pvalue > 0.0 && r.pvalue <= 1.0);
    assert!(mann_whitney_u(&small, &big, Method::Exact).is_err());
}

#[test]
fn numeric_psi_uses_evidently_zero_replacement() {
    use edgeml_drift::binning::{BinRule, Binning, bin_edges, histogram};
    use edgeml_drift::divergence::{Smoothing, psi};
    let (r, c) = (lin(400, 0.0), lin(300, 0.5));
    let cfg = ReportConfig {
        test: TestKind::Psi,
        ..Default::default()
    };
    let f = feature_drift("x", &num(r.clone()), &num(c.clone()), &cfg).expect("ok");
    let e = bin_edges(&r, &c, Binning::EqualWidth(BinRule::Sturges)).expect("edges");
    let want = psi(
        &histogram(&r, &e),
        &histogram(&c, &e),
        Smoothing::Epsilon(1e-4),
    )
    .expect("psi");
    assert_eq!(f.statistic, Some(want));
    assert!(f.drifted);
}

#[test]
fn confidence_monitor_and_cusum_behave() {
    use edgeml_drift::DriftDetector;
    use edgeml_drift::detect::{ConfidenceMonitor, Cusum, CusumConfig};
    let mut m = ConfidenceMonitor::new(10, 0.6);
    for _ in 0..9 {
        m.update(0.1);
        assert!(!m.drift_detected(), "window not full yet");
    }
    m.update(0.1);
    assert!(m.drift_detected());
    for _ in 0..10 {
        m.update(0.95);
    }
    assert!(!m.drift_detected());
    assert!((m.mean() - 0.95).abs() < 1e-12);
    m.update(f64::NAN);
    assert_eq!(m.nonfinite(), 1);

    // CUSUM: in control on a periodic signal, alarms soon after a 2-sigma shift
    let mut c = Cusum::new(CusumConfig {
        warm_up: 40,
        ..Default::default()
    });
    let base = |i: usize| ((i * 37) % 11) as f64 / 10.0 - 0.5;
    for i in 0..400 {
        c.update(base(i));
        assert!(!c.drift_detected(), "false alarm at {i}");
    }
    let mut at = None;
    for i in 400..600 {
        c.update(base(i) + 0.65);
        if c.drift_detected() {
            at = Some(i);
            break;
        }
    }
    assert!(at.is_some_and(|i| i < 430), "{at:?}");
}

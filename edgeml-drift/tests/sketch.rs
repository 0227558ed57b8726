//! Mergeable sketches: merge laws, serialisation, and the stated error bounds versus
//! exact computation.

mod common;
use edgeml_drift::divergence::wasserstein;
use edgeml_drift::sketch::*;
use edgeml_drift::stats::{Method, ks_2samp};
use proptest::prelude::*;

fn data() -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        proptest::collection::vec(-1e6f64..1e6, 1..400),
        proptest::collection::vec(0.001f64..10.0, 1..400),
        proptest::collection::vec((-20i32..20).prop_map(f64::from), 1..400),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn merge_is_associative_and_commutative(a in data(), b in data(), c in data()) {
        let s = |x: &[f64]| QuantileSketch::from_slice(0.01, x).expect("sketch");
        let (sa, sb, sc) = (s(&a), s(&b), s(&c));
        let mut left = sa.clone();
        left.merge(&sb).expect("m");
        left.merge(&sc).expect("m");
        let mut bc = sb.clone();
        bc.merge(&sc).expect("m");
        let mut right = bc.clone();
        right.merge(&sa).expect("m");
        // counts, buckets, min/max identical; sum_abs up to float rounding
        prop_assert_eq!(left.to_bytes()[..5].to_vec(), right.to_bytes()[..5].to_vec());
        prop_assert_eq!(left.count(), right.count());
        prop_assert_eq!(left.min_max(), right.min_max());
        for q in [0.0, 0.1, 0.5, 0.9, 1.0] {
            prop_assert_eq!(left.quantile(q).expect("q"), right.quantile(q).expect("q"));
        }
        // the merged sketch equals the sketch of the concatenation
        let all: Vec<f64> = a.iter().chain(&b).chain(&c).copied().collect();
        let whole = s(&all);
        for q in [0.0, 0.25, 0.5, 0.75, 1.0] {
            prop_assert_eq!(whole.quantile(q).expect("q"), left.quantile(q).expect("q"));
        }
    }

    #[test]
    fn quantiles_within_relative_alpha(a in data(), q in 0.0f64..=1.0) {
        let alpha = 0.01;
        let s = QuantileSketch::from_slice(alpha, &a).expect("sketch");
        let mut sorted = a.clone();
        sorted.sort_by(f64::total_cmp);
        let exact = sorted[(q * (sorted.len() - 1) as f64).floor() as usize];
        let got = s.quantile(q).expect("q");
        prop_assert!((got - exact).abs() <= alpha * exact.abs() * (1.0 + 1e-12) + 1e-300,
            "q={q}: {got} vs {exact}");
    }

    #[test]
    fn wasserstein_within_bound(a in data(), b in data()) {
        let (sa, sb) = (QuantileSketch::from_slice(0.02, &a).expect("s"), QuantileSketch::from_slice(0.02, &b).expect("s"));
        let est = wasserstein_from_sketches(&sa, &sb).expect("w");
        let exact = wasserstein(&a, &b).expect("w");
        prop_assert!((est.value - exact).abs() <= est.max_error * (1.0 + 1e-9) + 1e-9,
            "{} vs {exact} (bound {})", est.value, est.max_error);
    }

    #[test]
    fn ks_bracket_contains_exact_and_pvalue_is_conservative(a in data(), b in data()) {
        let (sa, sb) = (QuantileSketch::from_slice(0.01, &a).expect("s"), QuantileSketch::from_slice(0.01, &b).expect("s"));
        let k = ks_from_sketches(&sa, &sb, Method::Auto).expect("ks");
        let exact = ks_2samp(&a, &b, Method::Auto).expect("ks");
        prop_assert!(k.d_lower <= exact.statistic + 1e-12 && exact.statistic <= k.d_upper + 1e-12,
            "{} <= {} <= {}", k.d_lower, exact.statistic, k.d_upper);
        prop_assert!(k.pvalue >= exact.pvalue * (1.0 - 1e-9), "{} < {}", k.pvalue, exact.pvalue);
    }

    #[test]
    fn bytes_and_json_round_trip(a in data()) {
        let mut s = QuantileSketch::from_slice(0.01, &a).expect("s");
        s.insert(f64::NAN);
        s.insert(f64::INFINITY);
        let back = QuantileSketch::from_bytes(&s.to_bytes()).expect("bytes");
        prop_assert_eq!(&back, &s);
        let json = serde_json::to_string(&s).expect("json");
        let back: QuantileSketch = serde_json::from_str(&json).expect("json");
        prop_assert_eq!(back.quantile(0.5).expect("q"), s.quantile(0.5).expect("q"));
        prop_assert_eq!(back.nonfinite(), s.nonfinite());
        prop_assert_eq!(&back, &s);
        // tampered counts are rejected at deserialisation
        let bad = json.replacen("\"count\":", "\"count\":1", 1);
        prop_assert!(serde_json::from_str::<QuantileSketch>(&bad).is_err() || a.is_empty());
    }

    #[test]
    fn from_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut v = b"EDQS1".to_vec();
        v.extend(b);
        let _ = QuantileSketch::from_bytes(&v);
    }
}

#[test]
fn fleet_merge_error_on_a_million_points_is_small() {
    // 10 devices x 100k points, merged on the server, versus exact statistics.
    let mut merged_ref = QuantileSketch::new(0.005).expect("s");
    let mut merged_cur = QuantileSketch::new(0.005).expect("s");
    let (mut all_ref, mut all_cur) = (vec![], vec![]);
    for d in 0..10u64 {
        let r = common::generate(1000 + d, 100_000, 5.0, 1.0, "ih", 0.0);
        let c = common::generate(2000 + d, 100_000, 5.05, 1.0, "ih", 0.0);
        merged_ref
            .merge(&QuantileSketch::from_slice(0.005, &r).expect("s"))
            .expect("m");
        merged_cur
            .merge(&QuantileSketch::from_slice(0.005, &c).expect("s"))
            .expect("m");
        all_ref.extend(r);
        all_cur.extend(c);
    }
    let w = wasserstein_from_sketches(&merged_ref, &merged_cur).expect("w");
    let exact_w = wasserstein(&all_ref, &all_cur).expect("w");
    assert!(
        (w.value - exact_w).abs() <= w.max_error,
        "{w:?} vs {exact_w}"
    );
    let k = ks_from_sketches(&merged_ref, &merged_cur, Method::Auto).expect("ks");
    let exact = ks_2samp(&all_ref, &all_cur, Method::Auto).expect("ks");
    assert!(k.d_lower <= exact.statistic && exact.statistic <= k.d_upper);
    // the bracket width is at most the largest joint bucket mass (~3% here: buckets
    // are 1% wide around x = 5 where the density is 0.4)
    assert!(k.d_upper - k.d_lower < 0.08, "{k:?}");
    assert!(k.pvalue >= exact.pvalue);
}

#[test]
fn histogram_sketch_merges_and_counts_outliers() {
    let mut a = HistogramSketch::new(vec![0.0, 1.0, 2.0]).expect("h");
    let mut b = a.clone();
    for x in [-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, f64::NAN] {
        a.insert(x);
    }
    b.insert(1.5);
    a.merge(&b).expect("m");
    assert_eq!(a.counts_with_outliers(), vec![1.0, 2.0, 3.0, 1.0]);
    assert_eq!(a.nonfinite().nan, 1);
    let c = HistogramSketch::new(vec![0.0, 2.0]).expect("h");
    assert!(a.merge(&c).is_err());
    assert!(HistogramSketch::new(vec![1.0, 1.0]).is_err());
}

#[test]
fn aligned_counts_feed_histogram_divergences() {
    use edgeml_drift::divergence::{Smoothing, js_distance, psi};
    let r = common::generate(7, 5000, 0.0, 1.0, "ih", 0.0);
    let c = common::generate(8, 4000, 0.5, 1.0, "ih", 0.0);
    let (sr, sc) = (
        QuantileSketch::from_slice(0.01, &r).expect("s"),
        QuantileSketch::from_slice(0.01, &c).expect("s"),
    );
    let (a, b) = aligned_counts(&sr, &sc, 10).expect("counts");
    assert!(a.len() <= 10 && a.len() == b.len());
    assert_eq!(a.iter().sum::<f64>(), 5000.0);
    assert_eq!(b.iter().sum::<f64>(), 4000.0);
    assert!(psi(&a, &b, Smoothing::default()).expect("psi") > 0.1);
    let (a2, b2) = aligned_counts(&sr, &sr, 10).expect("counts");
    assert_eq!(js_distance(&a2, &b2, None).expect("js"), 0.0);
    let (fa, _) = aligned_counts(&sr, &sc, usize::MAX).expect("fine");
    assert!(fa.len() > 10);
}

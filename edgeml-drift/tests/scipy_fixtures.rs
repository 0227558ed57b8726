//! Statistics and p-values against scipy/numpy (tests/fixtures/drift/stats.json,
//! written by scripts/make_drift_fixtures.py).

mod common;
use common::{check, fixture, num, sample, vecf};
use edgeml_drift::binning::{BinRule, Binning, bin_edges, histogram};
use edgeml_drift::divergence::{self as dv, Smoothing};
use edgeml_drift::stats::{self, Method};

fn method(s: &str) -> Method {
    match s {
        "auto" => Method::Auto,
        "exact" => Method::Exact,
        _ => Method::Asymptotic,
    }
}

#[test]
fn ks_2samp_matches_scipy() {
    let f = fixture("stats.json");
    let mut failures = vec![];
    for c in f["ks"].as_array().expect("ks") {
        let (a, b) = (sample(&c["a"]), sample(&c["b"]));
        let m = c["method"].as_str().expect("method");
        let r = stats::ks_2samp(&a, &b, method(m)).expect("ks");
        let (ws, wp) = (num(&c["statistic"]), num(&c["pvalue"]));
        if !common::close(r.statistic, ws, 1e-15) || !common::close(r.pvalue, wp, 1e-300) {
            failures.push(format!(
                "{} {m}: D {} vs {ws}, p {:e} vs {wp:e}",
                c["name"], r.statistic, r.pvalue
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn kstwo_sf_matches_scipy() {
    let f = fixture("stats.json");
    let mut failures = vec![];
    for c in f["kstwo"].as_array().expect("kstwo") {
        let (n, x) = (c["n"].as_u64().expect("n"), num(&c["x"]));
        let got = stats::kstwo_sf(n, x);
        let want = num(&c["sf"]);
        if !common::close(got, want, 1e-300) {
            failures.push(format!("n={n} x={x}: {got:e} vs {want:e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn mann_whitney_matches_scipy() {
    let f = fixture("stats.json");
    let mut failures = vec![];
    for c in f["mwu"].as_array().expect("mwu") {
        let (a, b) = (sample(&c["a"]), sample(&c["b"]));
        let m = c["method"].as_str().expect("method");
        let r = stats::mann_whitney_u(&a, &b, method(m)).expect("mwu");
        let (ws, wp) = (num(&c["statistic"]), num(&c["pvalue"]));
        if !common::close(r.statistic, ws, 1e-12) || !common::close(r.pvalue, wp, 1e-300) {
            failures.push(format!(
                "{} {m}: U {} vs {ws}, p {:e} vs {wp:e}",
                c["name"], r.statistic, r.pvalue
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn chi2_and_fisher_match_scipy() {
    let f = fixture("stats.json");
    for c in f["chi2"].as_array().expect("chi2") {
        let t: Vec<Vec<f64>> = c["table"].as_array().expect("t").iter().map(vecf).collect();
        let (r, dof) = stats::chi2_contingency(&t).expect("chi2");
        assert_eq!(dof as u64, c["dof"].as_u64().expect("dof"));
        check("chi2 stat", r.statistic, num(&c["statistic"]), 1e-14);
        check("chi2 p", r.pvalue, num(&c["pvalue"]), 1e-300);
    }
    for c in f["fisher"].as_array().expect("fisher") {
        let t = vecf(&c["table"][0]);
        let u = vecf(&c["table"][1]);
        let r = stats::fisher_exact_2x2([[t[0] as u64, t[1] as u64], [u[0] as u64, u[1] as u64]])
            .expect("fisher");
        check("fisher odds", r.statistic, num(&c["statistic"]), 0.0);
        check("fisher p", r.pvalue, num(&c["pvalue"]), 1e-300);
    }
    for c in f["ztest"].as_array().expect("z") {
        let g = |k: &str| c[k].as_u64().expect("int");
        let r = stats::z_test_proportions(g("k1"), g("n1"), g("k2"), g("n2")).expect("z");
        check("z", r.statistic, num(&c["z"]), 0.0);
        check("z p", r.pvalue, num(&c["pvalue"]), 1e-300);
    }
}

#[test]
fn histogram_divergences_match_scipy() {
    let f = fixture("stats.json");
    for c in f["hist"].as_array().expect("hist") {
        let (p, q) = (vecf(&c["p"]), vecf(&c["q"]));
        check(
            "kl",
            dv::kl_divergence(&p, &q, None).expect("kl"),
            num(&c["kl"]),
            1e-15,
        );
        check(
            "kl2",
            dv::kl_divergence(&p, &q, Some(2.0)).expect("kl"),
            num(&c["kl2"]),
            1e-15,
        );
        check(
            "js",
            dv::js_distance(&p, &q, None).expect("js"),
            num(&c["js"]),
            1e-8,
        );
        check(
            "js2",
            dv::js_distance(&p, &q, Some(2.0)).expect("js"),
            num(&c["js2"]),
            1e-8,
        );
        check(
            "hellinger",
            dv::hellinger(&p, &q).expect("h"),
            num(&c["hellinger"]),
            1e-15,
        );
        check(
            "tv",
            dv::total_variation(&p, &q).expect("tv"),
            num(&c["tv"]),
            1e-15,
        );
        let psi = dv::psi(&p, &q, Smoothing::Epsilon(1e-4)).expect("psi");
        check("psi", psi, num(&c["psi_eps"]), 1e-15);
    }
}

#[test]
fn sample_distances_match_scipy() {
    let f = fixture("stats.json");
    for c in f["samples"].as_array().expect("samples") {
        let (a, b) = (sample(&c["a"]), sample(&c["b"]));
        let name = c["name"].to_string();
        check(
            &name,
            dv::wasserstein(&a, &b).expect("w"),
            num(&c["wasserstein"]),
            1e-15,
        );
        let wn = dv::wasserstein_normalized(&a, &b).expect("wn");
        check(&name, wn, num(&c["wasserstein_norm"]), 1e-15);
        check(
            &name,
            dv::energy_distance(&a, &b).expect("e"),
            num(&c["energy"]),
            1e-15,
        );
    }
}

#[test]
fn bin_edges_match_numpy() {
    let f = fixture("stats.json");
    for c in f["binning"].as_array().expect("binning") {
        let (a, b) = (sample(&c["a"]), sample(&c["b"]));
        let name = c["name"].to_string();
        for (key, rule) in [
            ("sturges", BinRule::Sturges),
            ("doane", BinRule::Doane),
            ("fixed7", BinRule::Fixed(7)),
        ] {
            let e = bin_edges(&a, &b, Binning::EqualWidth(rule)).expect("edges");
            let want = vecf(&c[key]);
            assert_eq!(e.len(), want.len(), "{name} {key}: {e:?} vs {want:?}");
            for (g, w) in e.iter().zip(&want) {
                check(&format!("{name} {key}"), *g, *w, 1e-12);
            }
        }
        let e = bin_edges(&a, &b, Binning::EqualWidth(BinRule::Sturges)).expect("edges");
        let h: Vec<f64> = histogram(&a, &e);
        assert_eq!(h, vecf(&c["hist_a_sturges"]), "{name} histogram");
        let q = bin_edges(&a, &b, Binning::ReferenceQuantiles(10)).expect("q");
        let inner = vecf(&c["quantile10_inner"]);
        assert_eq!(q.len(), inner.len() + 2, "{name}: {q:?} vs {inner:?}");
        for (g, w) in q[1..q.len() - 1].iter().zip(&inner) {
            check(&format!("{name} quantile"), *g, *w, 1e-12);
        }
    }
}

#[test]
fn multiple_testing_matches_scipy() {
    let f = fixture("stats.json");
    let m = &f["multitest"];
    let p = vecf(&m["p"]);
    for (g, w) in stats::benjamini_hochberg(&p).iter().zip(vecf(&m["bh"])) {
        check("bh", *g, w, 1e-15);
    }
    for (g, w) in stats::bonferroni(&p).iter().zip(vecf(&m["bonferroni"])) {
        check("bonferroni", *g, w, 1e-15);
    }
}

#[test]
fn mmd_matches_numpy() {
    let f = fixture("stats.json");
    for c in f["mmd"].as_array().expect("mmd") {
        let (a, b) = (sample(&c["a"]), sample(&c["b"]));
        let got = stats::mmd2_rbf(&a, &b, num(&c["sigma"])).expect("mmd");
        check("mmd2", got, num(&c["mmd2"]), 1e-14);
    }
}

#[test]
fn cramervonmises_matches_scipy() {
    let f = fixture("stats.json");
    let mut failures = vec![];
    for c in f["cvm"].as_array().expect("cvm") {
        let (a, b) = (sample(&c["a"]), sample(&c["b"]));
        let m = c["method"].as_str().expect("method");
        let (ws, wp) = (num(&c["statistic"]), num(&c["pvalue"]));
        if ws.is_nan() {
            // scipy's NaN for a size-1 sample is a typed error here
            assert!(stats::cramervonmises_2samp(&a, &b, method(m)).is_err());
            continue;
        }
        let r = stats::cramervonmises_2samp(&a, &b, method(m)).expect("cvm");
        if !common::close(r.statistic, ws, 1e-14) || !common::close(r.pvalue, wp, 1e-300) {
            failures.push(format!(
                "{} {m}: T {} vs {ws}, p {:e} vs {wp:e}",
                c["name"], r.statistic, r.pvalue
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn anderson_ksamp_matches_scipy() {
    let f = fixture("stats.json");
    let mut failures = vec![];
    for c in f["anderson"].as_array().expect("ad") {
        let xs: Vec<Vec<f64>> = c["samples"]
            .as_array()
            .expect("s")
            .iter()
            .map(sample)
            .collect();
        let refs: Vec<&[f64]> = xs.iter().map(Vec::as_slice).collect();
        let r = stats::anderson_ksamp(&refs).expect("ad");
        let (ws, wp) = (num(&c["statistic"]), num(&c["pvalue"]));
        let crit_ok = r
            .critical_values
            .iter()
            .zip(vecf(&c["critical"]))
            .all(|(g, w)| common::close(*g, w, 0.0));
        if !common::close(r.statistic, ws, 1e-14)
            || !common::close(r.pvalue, wp, 1e-300)
            || !crit_ok
        {
            failures.push(format!(
                "{}: A {} vs {ws}, p {:e} vs {wp:e}",
                c["name"], r.statistic, r.pvalue
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn ks_one_sided_matches_scipy() {
    let f = fixture("stats.json");
    let mut failures = vec![];
    for c in f["ks_one_sided"].as_array().expect("ks1") {
        let (a, b) = (sample(&c["a"]), sample(&c["b"]));
        let m = c["method"].as_str().expect("method");
        let alt = match c["alternative"].as_str().expect("alt") {
            "less" => stats::Alternative::Less,
            _ => stats::Alternative::Greater,
        };
        let r = stats::ks_2samp_alternative(&a, &b, alt, method(m)).expect("ks");
        let (ws, wp) = (num(&c["statistic"]), num(&c["pvalue"]));
        if !common::close(r.statistic, ws, 1e-15) || !common::close(r.pvalue, wp, 1e-300) {
            failures.push(format!(
                "{} {m} {alt:?}: D {} vs {ws}, p {:e} vs {wp:e}",
                c["name"], r.statistic, r.pvalue
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

//! Drift statistics: KS, Wasserstein and energy distance on 1e6 vs 1e6 values, ADWIN
//! updates, and a 100k x 20 drift report. The Python baselines (scipy, river,
//! Evidently) are measured by scripts/bench_drift.py in the same run.

use criterion::{Criterion, criterion_group, criterion_main};
use edgeml::drift::DriftDetector;
use edgeml::drift::detect::Adwin;
use edgeml::drift::divergence::{energy_distance, wasserstein};
use edgeml::drift::report::{ColumnValues, ReportConfig, drift_report};
use edgeml::drift::rng::SplitMix64;
use edgeml::drift::stats::{Method, ks_2samp};
use std::hint::black_box;

fn normal(seed: u64, n: usize, loc: f64) -> Vec<f64> {
    let mut r = SplitMix64::new(seed);
    (0..n).map(|_| loc + r.normal()).collect()
}

fn two_sample(c: &mut Criterion) {
    let n = 1_000_000;
    let (a, b) = (normal(1, n, 0.0), normal(2, n, 0.01));
    let mut g = c.benchmark_group("drift");
    g.sample_size(20);
    g.bench_function("ks_2samp/scalar/1000000x1000000", |bch| {
        bch.iter(|| ks_2samp(black_box(&a), black_box(&b), Method::Auto).expect("ks"))
    });
    g.bench_function("wasserstein/scalar/1000000x1000000", |bch| {
        bch.iter(|| wasserstein(black_box(&a), black_box(&b)).expect("w"))
    });
    g.bench_function("energy_distance/scalar/1000000x1000000", |bch| {
        bch.iter(|| energy_distance(black_box(&a), black_box(&b)).expect("e"))
    });
    g.finish();
}

fn adwin(c: &mut Criterion) {
    let n = 1_000_000;
    let mut xs = normal(3, n / 2, 0.0);
    xs.extend(normal(4, n / 2, 0.5));
    let mut g = c.benchmark_group("drift");
    g.sample_size(20);
    g.bench_function("adwin_update/scalar/1000000", |bch| {
        bch.iter(|| {
            let mut d = Adwin::default();
            let mut k = 0u32;
            for &x in &xs {
                d.update(x);
                k += u32::from(d.drift_detected());
            }
            k
        })
    });
    g.finish();
}

/// 100k rows x 20 columns: 15 numeric (5 of them shifted), 5 categorical with 5 levels
/// (2 of them shifted). Same layout as the Evidently baseline in scripts/bench_drift.py.
fn report_data(rows: usize, seed: u64, shifted: bool) -> Vec<(String, ColumnValues)> {
    let mut cols = Vec::new();
    for j in 0..15u64 {
        let loc = if shifted && j < 5 { 0.2 } else { 0.0 };
        cols.push((
            format!("num{j}"),
            ColumnValues::Numeric(normal(seed * 100 + j, rows, loc)),
        ));
    }
    let levels = ["a", "b", "c", "d", "e"];
    for j in 0..5u64 {
        let mut r = SplitMix64::new(seed * 1000 + j);
        let skew = shifted && j < 2;
        let v = (0..rows)
            .map(|_| {
                let u = r.next_f64();
                let u = if skew { u * u } else { u };
                Some(levels[(u * 5.0) as usize].to_string())
            })
            .collect();
        cols.push((format!("cat{j}"), ColumnValues::Categorical(v)));
    }
    cols
}

fn report(c: &mut Criterion) {
    let (r, cur) = (
        report_data(100_000, 1, false),
        report_data(100_000, 2, true),
    );
    let mut g = c.benchmark_group("drift");
    g.sample_size(10);
    g.bench_function("report_default/scalar/100000x20", |bch| {
        bch.iter(|| {
            drift_report(black_box(&r), black_box(&cur), &ReportConfig::default()).expect("report")
        })
    });
    g.finish();
}

mod group {
    #![allow(missing_docs)]
    use super::*;
    criterion_group!(benches, two_sample, adwin, report);
}
criterion_main!(group::benches);

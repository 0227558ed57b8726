//! Detection indices against river (tests/fixtures/drift/detectors.json, written by
#![allow(clippy::field_reassign_with_default)]
//! scripts/make_drift_fixtures.py from the same SplitMix64 streams).

mod common;
use common::fixture;
use edgeml_drift::DriftDetector;
use edgeml_drift::detect::*;
use edgeml_drift::rng::SplitMix64;
use serde_json::Value;

fn stream(seed: u64, segs: &Value) -> Vec<f64> {
    let mut r = SplitMix64::new(seed);
    let mut out = vec![];
    for s in segs.as_array().expect("segments") {
        let s: Vec<f64> = s.as_array().expect("seg").iter().map(common::num).collect();
        let n = s[0] as usize;
        if s.len() == 3 {
            for _ in 0..n {
                let t = r.next_f64() + r.next_f64() + r.next_f64() + r.next_f64();
                out.push(s[1] + s[2] * (t - 2.0));
            }
        } else {
            for _ in 0..n {
                out.push(if r.next_f64() < s[1] { 1.0 } else { 0.0 });
            }
        }
    }
    out
}

fn f(cfg: &Value, k: &str) -> Option<f64> {
    cfg.get(k).map(common::num)
}

fn make(name: &str, cfg: &Value) -> Box<dyn DriftDetector> {
    match name {
        "adwin" => {
            let mut c = AdwinConfig::default();
            if let Some(v) = f(cfg, "delta") {
                c.delta = v;
            }
            if let Some(v) = f(cfg, "clock") {
                c.clock = v as u32;
            }
            if let Some(v) = f(cfg, "max_buckets") {
                c.max_buckets = v as usize;
            }
            if let Some(v) = f(cfg, "min_window_length") {
                c.min_window_length = v as u32;
            }
            if let Some(v) = f(cfg, "grace_period") {
                c.grace_period = v as u32;
            }
            Box::new(Adwin::new(c))
        }
        "page_hinkley" => {
            let mut c = PageHinkleyConfig::default();
            if let Some(v) = f(cfg, "threshold") {
                c.threshold = v;
            }
            if let Some(v) = f(cfg, "min_instances") {
                c.min_instances = v as u64;
            }
            match cfg.get("mode").and_then(Value::as_str) {
                Some("up") => c.mode = PhMode::Up,
                Some("down") => c.mode = PhMode::Down,
                _ => {}
            }
            Box::new(PageHinkley::new(c))
        }
        "kswin" => {
            let mut c = KswinConfig::default();
            if let Some(v) = f(cfg, "seed") {
                c.seed = v as u64;
            }
            if let Some(v) = f(cfg, "alpha") {
                c.alpha = v;
            }
            if let Some(v) = f(cfg, "window_size") {
                c.window_size = v as usize;
            }
            if let Some(v) = f(cfg, "stat_size") {
                c.stat_size = v as usize;
            }
            Box::new(Kswin::new(c))
        }
        "ddm" => {
            let mut c = DdmConfig::default();
            if let Some(v) = f(cfg, "warm_start") {
                c.warm_start = v as u64;
            }
            if let Some(v) = f(cfg, "drift_threshold") {
                c.drift_threshold = v;
            }
            Box::new(Ddm::new(c))
        }
        "eddm" => {
            let mut c = EddmConfig::default();
            if let Some(v) = f(cfg, "alpha") {
                c.alpha = v;
            }
            if let Some(v) = f(cfg, "beta") {
                c.beta = v;
            }
            Box::new(Eddm::new(c))
        }
        "hddm_a" => {
            let mut c = HddmAConfig::default();
            c.two_sided_test = cfg
                .get("two_sided_test")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Box::new(HddmA::new(c))
        }
        "hddm_w" => {
            let mut c = HddmWConfig::default();
            c.two_sided_test = cfg
                .get("two_sided_test")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if let Some(v) = f(cfg, "lambda") {
                c.lambda = v;
            }
            Box::new(HddmW::new(c))
        }
        _ => panic!("unknown detector {name}"),
    }
}

fn run(section: &str) {
    let fx = fixture("detectors.json");
    let mut failures = vec![];
    for c in fx[section].as_array().expect("section") {
        let xs = stream(c["seed"].as_u64().expect("seed"), &c["segments"]);
        let name = c["detector"].as_str().expect("name");
        let mut det = make(name, &c["config"]);
        let (mut d, mut w) = (vec![], vec![]);
        for (i, &x) in xs.iter().enumerate() {
            det.update(x);
            if det.drift_detected() {
                d.push(i as u64);
            }
            if det.warning_detected() {
                w.push(i as u64);
            }
        }
        let want: Vec<u64> = c["drifts"]
            .as_array()
            .expect("d")
            .iter()
            .map(|v| v.as_u64().expect("i"))
            .collect();
        if d != want {
            failures.push(format!(
                "{} {name} {}: drifts {d:?} vs river {want:?}",
                c["stream"], c["config"]
            ));
        }
        if let Some(ww) = c.get("warnings") {
            let want: Vec<u64> = ww
                .as_array()
                .expect("w")
                .iter()
                .map(|v| v.as_u64().expect("i"))
                .collect();
            if w != want {
                failures.push(format!(
                    "{} {name} {}: {} warnings vs river {}",
                    c["stream"],
                    c["config"],
                    w.len(),
                    want.len()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn real_valued_detectors_match_river() {
    run("real");
}

#[test]
fn binary_detectors_match_river() {
    run("binary");
}

//! Masks against numpy replications of `torch.nn.utils.prune` and TF-MOT's threshold
//! rule (tests/fixtures/prune/torch_masks.json, written by
//! scripts/make_prune_fixtures.py).

mod common;
use common::{amount, f32s, fixture, mask, show, usizes};
use edgeml_prune::pattern::{Norm, ln_structured};
use edgeml_prune::select::threshold_mask;
use edgeml_prune::{Pattern, global_magnitude, l1_unstructured};

#[test]
fn l1_unstructured_matches_torch() {
    let f = fixture("torch_masks.json");
    let mut failures = vec![];
    let mut n = 0;
    for t in f["l1_unstructured"].as_array().expect("cases") {
        let w = f32s(&t["weights"]);
        for c in t["cases"].as_array().expect("cases") {
            let want = mask(&c["mask"]);
            let got = l1_unstructured(&w, amount(c)).expect("l1");
            n += 1;
            if got != want {
                failures.push(format!(
                    "{} {}: {} vs {}",
                    t["name"],
                    c["amount"],
                    show(&got),
                    show(&want)
                ));
            }
            // The Pruner trait path agrees for fractions.
            if !c["amount_is_count"].as_bool().expect("flag") {
                let shape = usizes(&t["shape"]);
                let s = c["amount"].as_f64().expect("fraction");
                assert_eq!(
                    Pattern::Magnitude.mask(&w, &shape, s).expect("pattern"),
                    want
                );
            }
        }
    }
    assert!(n >= 30, "only {n} cases");
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn ln_structured_matches_torch() {
    let f = fixture("torch_masks.json");
    let mut failures = vec![];
    let mut n = 0;
    for t in f["ln_structured"].as_array().expect("cases") {
        let w = f32s(&t["weights"]);
        let shape = usizes(&t["shape"]);
        for c in t["cases"].as_array().expect("cases") {
            let norm = if c["n"] == 1 { Norm::L1 } else { Norm::L2 };
            let dim = c["dim"].as_u64().expect("dim") as usize;
            let want = mask(&c["mask"]);
            let got = ln_structured(&w, &shape, amount(c), norm, dim).expect("ln");
            n += 1;
            if got != want {
                failures.push(format!(
                    "{} n={} dim={dim} {}",
                    t["name"], c["n"], c["amount"]
                ));
            }
        }
    }
    assert!(n >= 50, "only {n} cases");
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn global_unstructured_matches_torch() {
    let f = fixture("torch_masks.json");
    let mut failures = vec![];
    for t in f["global_unstructured"].as_array().expect("cases") {
        let ws: Vec<Vec<f32>> = t["weights"]
            .as_array()
            .expect("layers")
            .iter()
            .map(f32s)
            .collect();
        let views: Vec<&[f32]> = ws.iter().map(|w| w.as_slice()).collect();
        for c in t["cases"].as_array().expect("cases") {
            let want: Vec<Vec<bool>> = c["masks"]
                .as_array()
                .expect("masks")
                .iter()
                .map(mask)
                .collect();
            let got = global_magnitude(&views, amount(c)).expect("global");
            if got != want {
                failures.push(format!("{} {}", t["name"], c["amount"]));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn threshold_mask_matches_tfmot() {
    let f = fixture("torch_masks.json");
    let mut failures = vec![];
    for t in f["tfmot_masks"].as_array().expect("cases") {
        let w = f32s(&t["weights"]);
        for c in t["cases"].as_array().expect("cases") {
            let s = c["sparsity"].as_f64().expect("s") as f32;
            let mut got = vec![false; w.len()];
            let thr = threshold_mask(&w, s, &mut got).expect("threshold");
            if got != mask(&c["mask"]) || f64::from(thr) != c["threshold"].as_f64().expect("thr") {
                failures.push(format!(
                    "{} s={s}: thr {thr} vs {}",
                    t["name"], c["threshold"]
                ));
            }
            let shape = [w.len()];
            let via = Pattern::MagnitudeThreshold
                .mask(&w, &shape, f64::from(s))
                .expect("pattern");
            assert_eq!(via, got);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

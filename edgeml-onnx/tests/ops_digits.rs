//! The bundled digits models (`scripts/make_fixtures.py`: an sklearn MLP and a numpy-
//! trained CNN) give onnxruntime's probabilities and the same test accuracy.

mod common;

use edgeml_onnx::{Model, Plan, PlanOptions};
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/digits")
}

fn check(name: &str) {
    let model = Model::load(dir().join(format!("{name}.onnx"))).expect("digits fixture");
    let plan = Plan::new(&model, PlanOptions::with_threads(2)).expect("digits fixture");
    let x = common::read_any(&dir().join("x_test.npy"));
    let y = common::read_any(&dir().join("y_test.npy"));
    let want = common::read_any(&dir().join(format!("{name}_probs.npy")));
    let out = plan.run(&[("x", x)]).expect("digits fixture");
    let (oname, probs) = &out[0];
    assert_eq!(oname, "probs");
    common::compare(probs, &want, 1e-4, 1e-6).unwrap_or_else(|e| panic!("{name}: {e}"));
    let argmax = |t: &edgeml_onnx::Tensor| -> Vec<usize> {
        let a = t.as_f32().expect("digits fixture");
        a.outer_iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b })
                    .0
            })
            .collect()
    };
    let labels: Vec<usize> = y
        .as_i64()
        .expect("i64 labels")
        .iter()
        .map(|&v| v as usize)
        .collect();
    let ours = argmax(probs)
        .iter()
        .zip(&labels)
        .filter(|(a, b)| a == b)
        .count();
    let theirs = argmax(&want)
        .iter()
        .zip(&labels)
        .filter(|(a, b)| a == b)
        .count();
    assert_eq!(ours, theirs, "{name}: accuracy differs from onnxruntime");
    assert!(
        ours * 10 >= labels.len() * 9,
        "{name}: accuracy {ours}/{}",
        labels.len()
    );
}

#[test]
fn digits_mlp_matches_onnxruntime() {
    check("mlp");
}

#[test]
fn digits_cnn_matches_onnxruntime() {
    check("cnn");
}

//! Teacher inference through the edgeml runtime, a short distillation on the digits
//! data, and the exported student.
#![cfg(feature = "onnx")]
#![allow(clippy::unwrap_used)]

use edgeml_core::DType;
use edgeml_distill::{
    Error, ErrorKind, Kd, KdConfig, Mlp, Optimizer, Teacher, TeacherOptions, TeacherOutput,
    TrainConfig, TrainData, accuracy, train,
};
use edgeml_onnx::{Dim, Graph, Model, Node, OpsetImport, Plan, PlanOptions, Tensor, ValueInfo};
use ndarray::{Array1, Array2, ArrayD, Ix2};
use ndarray_npy::read_npy;
use std::path::PathBuf;

fn digits() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/digits")
}

fn train_split() -> (ArrayD<f32>, Vec<i64>) {
    let x: ArrayD<u8> = read_npy(digits().join("x_train_u8.npy")).unwrap();
    let y: Array1<i64> = read_npy(digits().join("y_train.npy")).unwrap();
    (x.mapv(|v| f32::from(v) / 16.0), y.to_vec())
}

fn test_split() -> (ArrayD<f32>, Vec<i64>) {
    let x: ArrayD<f32> = read_npy(digits().join("x_test.npy")).unwrap();
    let y: Array1<i64> = read_npy(digits().join("y_test.npy")).unwrap();
    (x, y.to_vec())
}

fn flat(x: &ArrayD<f32>) -> Array2<f32> {
    let n = x.shape()[0];
    x.to_shape((n, x.len() / n)).unwrap().to_owned()
}

#[test]
fn teacher_probabilities_are_detected_and_match_the_fixture() {
    let (x, _) = test_split();
    let t = Teacher::load(digits().join("cnn.onnx"), TeacherOptions::default()).unwrap();
    assert_eq!(t.input_name(), "x");
    let soft = t.predict(x.view()).unwrap();
    assert_eq!(soft.kind, TeacherOutput::Probabilities);
    assert_eq!(soft.values.dim(), (450, 10));
    // onnxruntime's outputs, committed by scripts/make_fixtures.py
    let ort: Array2<f32> = read_npy(digits().join("cnn_probs.npy")).unwrap();
    let diff = (&soft.values - &ort)
        .mapv(f32::abs)
        .fold(0.0f32, |a, &b| a.max(b));
    assert!(diff < 1e-5, "max difference to onnxruntime {diff}");
    // batches on one thread and on all cores, small batches: the same values
    let one = Teacher::load(
        digits().join("cnn.onnx"),
        TeacherOptions {
            threads: Some(1),
            batch_size: 7,
            ..TeacherOptions::default()
        },
    )
    .unwrap();
    assert_eq!(one.predict(x.view()).unwrap(), soft);
}

#[test]
fn soft_targets_are_cached() {
    let (x, _) = test_split();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("soft.npy");
    let t = Teacher::load(digits().join("mlp.onnx"), TeacherOptions::default()).unwrap();
    let first = t.predict_cached(x.view(), &cache).unwrap();
    assert!(cache.exists());
    // a cache that does not match the data is recomputed, one that does is read
    ndarray_npy::write_npy(&cache, &Array2::<f32>::zeros((450, 10))).unwrap();
    let read = t.predict_cached(x.view(), &cache).unwrap();
    assert_eq!(
        read.kind,
        TeacherOutput::Logits,
        "the zeros were read from the cache"
    );
    ndarray_npy::write_npy(&cache, &Array2::<f32>::zeros((3, 10))).unwrap();
    assert_eq!(t.predict_cached(x.view(), &cache).unwrap(), first);
    let back: Array2<f32> = read_npy(&cache).unwrap();
    assert_eq!(back, first.values);
}

/// `x [N, 1, 2, 2] → Relu → y`: its only output is 4-D.
fn four_d_model() -> Model {
    let vi = |name: &str, shape: Option<Vec<Dim>>| ValueInfo {
        name: name.into(),
        dtype: Some(DType::F32),
        shape,
        doc_string: String::new(),
    };
    Model {
        ir_version: 7,
        opset_imports: vec![OpsetImport {
            domain: String::new(),
            version: 13,
        }],
        graph: Graph {
            name: "g".into(),
            nodes: vec![Node {
                op_type: "Relu".into(),
                inputs: vec!["x".into()],
                outputs: vec!["y".into()],
                ..Node::default()
            }],
            inputs: vec![vi(
                "x",
                Some(vec![
                    Dim::Symbolic("N".into()),
                    Dim::Known(1),
                    Dim::Known(2),
                    Dim::Known(2),
                ]),
            )],
            outputs: vec![vi("y", None)],
            ..Graph::default()
        },
        ..Model::default()
    }
}

#[test]
fn teacher_errors_are_typed() {
    let x = ArrayD::<f32>::zeros(vec![3, 1, 2, 2]);
    let t = Teacher::new(&four_d_model(), TeacherOptions::default()).unwrap();
    let e = t.predict(x.view()).unwrap_err();
    assert!(matches!(e, Error::NoTeacherOutput(_)), "{e}");
    assert_eq!(e.kind(), ErrorKind::InvalidModel);
    let named = TeacherOptions {
        output: Some("nope".into()),
        ..TeacherOptions::default()
    };
    let t = Teacher::load(digits().join("cnn.onnx"), named).unwrap();
    let e = t
        .predict(ArrayD::<f32>::zeros(vec![2, 1, 8, 8]).view())
        .unwrap_err();
    assert!(matches!(e, Error::NoTeacherOutput(_)), "{e}");
    // data of the wrong shape: the runtime's error, typed
    let t = Teacher::load(digits().join("cnn.onnx"), TeacherOptions::default()).unwrap();
    let e = t
        .predict(ArrayD::<f32>::zeros(vec![2, 3]).view())
        .unwrap_err();
    assert!(matches!(e, Error::Model { .. }), "{e}");
    let e = t
        .predict(ArrayD::<f32>::zeros(vec![0, 1, 8, 8]).view())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = Teacher::load(digits().join("missing.onnx"), TeacherOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
}

/// Floor: 0.92 test accuracy after 40 epochs (the run gives about 0.95; the teacher
/// 0.9667).
#[test]
fn short_distillation_on_digits_reaches_the_floor() {
    let (x, y) = train_split();
    let teacher = Teacher::load(digits().join("cnn.onnx"), TeacherOptions::default()).unwrap();
    let soft = teacher.predict(x.view()).unwrap();
    let x2 = flat(&x);
    let mut mlp = Mlp::new(&[1, 8, 8], &[32], 10, 1).unwrap();
    let kd = Kd::new(KdConfig {
        temperature: 4.0,
        soft_weight: 0.9,
        hard_weight: 0.1,
        teacher: soft.kind,
        ..KdConfig::default()
    });
    let data = TrainData {
        x: x2.view(),
        labels: Some(&y),
        teacher: Some(soft.values.view()),
    };
    let cfg = TrainConfig {
        epochs: 40,
        batch_size: 32,
        optimizer: Optimizer::adam_with_lr(3e-3),
        seed: 1,
        ..TrainConfig::default()
    };
    let mut agreement = 0.0;
    train(&mut mlp, &kd, &data, &cfg, &mut |m| {
        agreement = m.val_agreement.unwrap()
    })
    .unwrap();
    let (xt, yt) = test_split();
    let acc = accuracy(mlp.logits(flat(&xt).view()).unwrap().view(), &yt);
    eprintln!("test accuracy {acc:.4}, last held-out agreement {agreement:.4}");
    assert!(acc >= 0.92, "test accuracy {acc}");
}

#[test]
fn exported_student_matches_the_in_memory_student() {
    let (x, _) = test_split();
    let x2 = flat(&x);
    let mut mlp = Mlp::new(&[1, 8, 8], &[16, 8], 10, 3).unwrap();
    mlp.fit_standardization(x2.view()).unwrap();
    let want = mlp.logits(x2.view()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("student.onnx");
    mlp.save_onnx(&path).unwrap();
    let plan = Plan::new(&Model::load(&path).unwrap(), PlanOptions::with_threads(1)).unwrap();
    let out = plan.run(&[("x", Tensor::F32(x.clone()))]).unwrap();
    assert_eq!(out[0].0, "logits");
    let got = out[0]
        .1
        .as_f32()
        .unwrap()
        .clone()
        .into_dimensionality::<Ix2>()
        .unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{g} vs {w}");
    }
    let params: usize = Model::load(&path)
        .unwrap()
        .graph
        .initializers
        .iter()
        .filter(|(n, _)| n.starts_with('W') || n.starts_with('B'))
        .map(|(_, t)| t.len())
        .sum();
    assert_eq!(params, mlp.num_params());
    // no temporary files left next to the output
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

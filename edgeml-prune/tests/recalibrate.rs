//! Least-squares recalibration (`PruneConfig::recalibrate`): the refit satisfies the
//! normal equations (checked on the refit model's own outputs, independently of the
//! solver), keeps every zero and removed channel, lowers each layer's error, recovers
//! accuracy on the digits models, and refuses bad data leaving the model unchanged.
#![cfg(feature = "onnx")]

use edgeml_core::DType;
use edgeml_onnx::{
    Attribute, Dim, Model, ModelBuilder, Node, Plan, PlanOptions, Tensor, ValueInfo,
};
use edgeml_prune::onnx::Recalibrate;
use edgeml_prune::pattern::Norm;
use edgeml_prune::{Error, Pattern, PruneConfig, prune_model};
use ndarray::{Array2, ArrayD, Axis, IxDyn};
use ndarray_npy::read_npy;

#[path = "../../tests/common/digits.rs"]
mod digits;

use digits::dir;

fn load(name: &str) -> Model {
    Model::load(dir().join(format!("{name}.onnx"))).expect("digits fixture")
}

/// The digits training images scaled as the test set (`x / 16`), in batches of 128.
fn train_batches() -> Vec<ArrayD<f32>> {
    let x: ArrayD<u8> = read_npy(dir().join("x_train_u8.npy")).expect("x_train_u8");
    let x = x.mapv(|v| f32::from(v) / 16.0);
    x.axis_chunks_iter(Axis(0), 128)
        .map(|c| c.to_owned())
        .collect()
}

fn run(m: &Model, input: &str, x: &ArrayD<f32>) -> ArrayD<f32> {
    let plan = Plan::new(m, PlanOptions::with_threads(1)).expect("plan");
    let out = plan.run(&[(input, Tensor::F32(x.clone()))]).expect("run");
    out[0].1.as_f32().expect("f32").clone()
}

fn accuracy(m: &Model) -> f64 {
    let (x, y) = digits::test_set();
    digits::accuracy(&run(m, "x", &x), &y)
}

fn zeros(m: &Model) -> Vec<(String, Vec<bool>)> {
    m.graph
        .initializers
        .iter()
        .filter_map(|(n, t)| {
            t.as_f32()
                .map(|a| (n.clone(), a.iter().map(|&v| v == 0.0).collect()))
        })
        .collect()
}

fn config(sparsity: f64, pattern: Pattern, data: Option<Vec<ArrayD<f32>>>) -> PruneConfig {
    PruneConfig {
        sparsity,
        pattern,
        recalibrate: data.map(Recalibrate::new),
        ..PruneConfig::default()
    }
}

/// A one-layer model `y = x·Wᵀ + b` (Gemm, transB = 1), K inputs, N outputs.
fn gemm_model(w: &Array2<f32>, b: &[f32]) -> Model {
    let (n, k) = w.dim();
    let bias = ArrayD::from_shape_vec(IxDyn(&[n]), b.to_vec()).expect("bias");
    ModelBuilder::new(13)
        .input(ValueInfo::tensor(
            "x",
            DType::F32,
            vec![Dim::from("N"), Dim::from(k)],
        ))
        .output(ValueInfo::tensor(
            "y",
            DType::F32,
            vec![Dim::from("N"), Dim::from(n)],
        ))
        .initializer("w", Tensor::F32(w.clone().into_dyn()))
        .initializer("b", Tensor::F32(bias))
        .node(Node::new("Gemm", &["x", "w", "b"], &["y"]).with_attr("transB", Attribute::Int(1)))
        .build()
        .expect("model")
}

/// Deterministic, correlated inputs (so the least-squares refit differs from keeping
/// the pruned weights).
fn inputs(rows: usize, k: usize, seed: u64) -> ArrayD<f32> {
    let mut s = seed;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as f64 / (1u64 << 31) as f64) as f32 - 0.5
    };
    let mut x = ArrayD::zeros(IxDyn(&[rows, k]));
    for r in 0..rows {
        let common = next();
        for c in 0..k {
            x[[r, c]] = common + 0.5 * next() + 0.1 * c as f32;
        }
    }
    x
}

#[test]
fn the_refit_solves_the_normal_equations_of_the_kept_weights() {
    // Unstructured 50% of an 8x6 Gemm; no dampening: the residual of the refit
    // layer is orthogonal to every kept feature and to the ones column (bias).
    let (n, k) = (6, 8);
    let w = Array2::from_shape_fn((n, k), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 5.0 - 1.0);
    let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.1).collect();
    let orig = gemm_model(&w, &b);
    let batches: Vec<ArrayD<f32>> = (0..8).map(|s| inputs(4, k, s)).collect();
    let mut m = orig.clone();
    let mut cfg = config(0.5, Pattern::Magnitude, Some(batches.clone()));
    if let Some(rc) = cfg.recalibrate.as_mut() {
        rc.dampening = 0.0;
    }
    let r = prune_model(&mut m, &cfg).expect("prune");
    let refit = &r.recalibrated[0];
    let (e0, e1) = (
        refit.error_before.expect("refit"),
        refit.error_after.expect("refit"),
    );
    assert!(e1 < e0, "error {e0} -> {e1}");
    assert_eq!(refit.rows, 32);
    let wp = m
        .graph
        .initializer("w")
        .and_then(Tensor::as_f32)
        .expect("w")
        .clone();
    // Gradient of ‖XWᵀ + b − Y‖² at the refit: X_kᵀ r = 0 for kept k, Σ r = 0.
    let mut grad = vec![vec![0.0f64; k + 1]; n];
    for x in &batches {
        let y0 = run(&orig, "x", x);
        let y1 = run(&m, "x", x);
        for row in 0..x.shape()[0] {
            for o in 0..n {
                let res = f64::from(y1[[row, o]] - y0[[row, o]]);
                for f in 0..k {
                    grad[o][f] += res * f64::from(x[[row, f]]);
                }
                grad[o][k] += res;
            }
        }
    }
    let scale: f64 = batches
        .iter()
        .flat_map(|x| x.iter())
        .map(|v| f64::from(*v).abs())
        .sum();
    for o in 0..n {
        for f in 0..k {
            if wp[[o, f]] != 0.0 {
                assert!(
                    grad[o][f].abs() < 1e-5 * scale,
                    "row {o} feature {f}: {}",
                    grad[o][f]
                );
            }
        }
        assert!(
            grad[o][k].abs() < 1e-5 * scale,
            "row {o} bias: {}",
            grad[o][k]
        );
    }
}

#[test]
fn zeros_and_removed_channels_stay_and_errors_fall_on_the_digits_models() {
    let data = train_batches();
    for (name, pattern) in [
        ("mlp", Pattern::Magnitude),
        ("cnn", Pattern::Magnitude),
        (
            "mlp",
            Pattern::Channels {
                axis: 0,
                norm: Norm::L1,
            },
        ),
        (
            "cnn",
            Pattern::Channels {
                axis: 0,
                norm: Norm::L1,
            },
        ),
    ] {
        let mut plain = load(name);
        prune_model(&mut plain, &config(0.75, pattern, None)).expect("prune");
        let mut recal = load(name);
        let r = prune_model(&mut recal, &config(0.75, pattern, Some(data.clone())))
            .expect("prune + recalibrate");
        // Same shapes, same zeros (new bias initializers aside).
        for (n, z) in zeros(&plain) {
            let z2 = zeros(&recal)
                .into_iter()
                .find(|(m, _)| *m == n)
                .expect("initializer")
                .1;
            assert_eq!(z.len(), z2.len(), "{name} {pattern:?} {n}");
            let weight = plain
                .graph
                .nodes
                .iter()
                .any(|x| x.inputs.get(1) == Some(&n));
            if weight {
                assert_eq!(z, z2, "{name} {pattern:?}: zeros of {n}");
            }
        }
        assert!(!r.recalibrated.is_empty());
        for f in &r.recalibrated {
            let (b, a) = (
                f.error_before.expect("refit"),
                f.error_after.expect("refit"),
            );
            assert!(a <= b, "{name} {pattern:?} {}: {b} -> {a}", f.node);
        }
        let (acc_plain, acc_recal) = (accuracy(&plain), accuracy(&recal));
        println!("{name} {pattern:?} 75%: one-shot {acc_plain:.4}, recalibrated {acc_recal:.4}");
    }
}

/// The "Pruning accuracy" table of BENCHMARKS.md (`cargo test -p edgeml-prune --test
/// recalibrate -- --nocapture accuracy_table`): one-shot pruning with and without
/// recalibration on the 1347 training images, accuracy on the 450 test images.
#[test]
fn accuracy_table_recalibration_recovers_heavily_pruned_digits_models() {
    let data = train_batches();
    println!("| model (dense accuracy) | pattern | sparsity | one-shot | `--recalibrate` |");
    println!("|---|---|---:|---:|---:|");
    for name in ["mlp", "cnn"] {
        let dense = accuracy(&load(name));
        for (label, pattern) in [
            ("unstructured", Pattern::Magnitude),
            (
                "channel",
                Pattern::Channels {
                    axis: 0,
                    norm: Norm::L1,
                },
            ),
        ] {
            for sparsity in [0.5, 0.7, 0.9] {
                let mut plain = load(name);
                prune_model(&mut plain, &config(sparsity, pattern, None)).expect("prune");
                let mut recal = load(name);
                prune_model(&mut recal, &config(sparsity, pattern, Some(data.clone())))
                    .expect("prune + recalibrate");
                let (a0, a1) = (accuracy(&plain), accuracy(&recal));
                println!("| {name} ({dense:.4}) | {label} | {sparsity} | {a0:.4} | {a1:.4} |");
                if sparsity >= 0.7 {
                    assert!(a1 > a0 + 0.05, "{name} {label} {sparsity}: {a0} -> {a1}");
                } else {
                    assert!(a1 > a0 - 0.01, "{name} {label} {sparsity}: {a0} -> {a1}");
                }
            }
        }
    }
}

#[test]
fn bad_data_is_refused_and_the_model_is_unchanged() {
    let orig = load("mlp");
    let mut m = orig.clone();
    let e = prune_model(&mut m, &config(0.5, Pattern::Magnitude, Some(Vec::new())))
        .expect_err("no batches");
    assert!(matches!(e, Error::Empty(_)), "{e}");
    assert_eq!(m, orig);
    let mut bad = train_batches();
    bad[0][[3, 0, 2, 2]] = f32::NAN;
    let e = prune_model(&mut m, &config(0.5, Pattern::Magnitude, Some(bad))).expect_err("NaN");
    assert!(e.to_string().contains("non-finite"), "{e}");
    assert_eq!(m, orig);
    let wrong = vec![ArrayD::<f32>::zeros(IxDyn(&[2, 3]))];
    let e = prune_model(&mut m, &config(0.5, Pattern::Magnitude, Some(wrong)))
        .expect_err("wrong shape");
    assert!(e.to_string().contains("recalibration"), "{e}");
    assert_eq!(m, orig);
}

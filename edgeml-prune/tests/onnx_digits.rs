//! Model-level pruning of the bundled digits models (`tests/fixtures/digits`):
//! accuracy vs sparsity, exact layer sparsity, identity at 0%, channel removal.
#![cfg(feature = "onnx")]

use edgeml_onnx::{Model, Plan, PlanOptions, SparseMode, Tensor};
use edgeml_prune::onnx::Storage;
use edgeml_prune::pattern::Norm;
use edgeml_prune::{Error, Pattern, PruneConfig, Scope, prune_model};
use ndarray::ArrayD;
use ndarray_npy::read_npy;

#[path = "../../tests/common/digits.rs"]
mod digits;

use digits::dir;

fn load(name: &str) -> Model {
    Model::load(dir().join(format!("{name}.onnx"))).expect("digits fixture")
}

fn probs(m: &Model) -> ArrayD<f32> {
    let x: ArrayD<f32> = read_npy(dir().join("x_test.npy")).expect("x_test");
    let plan = Plan::new(m, PlanOptions::with_threads(1)).expect("plan");
    let out = plan.run(&[("x", Tensor::F32(x))]).expect("run");
    out[0].1.as_f32().expect("f32 probs").clone()
}

fn accuracy(m: &Model) -> f64 {
    let (_, y) = digits::test_set();
    let p = probs(m);
    assert_eq!(p.shape(), [450, 10]);
    digits::accuracy(&p, &y)
}

fn config(sparsity: f64) -> PruneConfig {
    PruneConfig {
        sparsity,
        ..PruneConfig::default()
    }
}

fn close(a: &ArrayD<f32>, b: &ArrayD<f32>) {
    assert_eq!(a.shape(), b.shape());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-5 * (1.0 + x.abs()), "{x} vs {y}");
    }
}

#[test]
fn zero_sparsity_leaves_outputs_identical() {
    for name in ["mlp", "cnn"] {
        let orig = load(name);
        let mut m = orig.clone();
        let r = prune_model(&mut m, &config(0.0)).expect("prune");
        assert_eq!(m, orig, "{name}");
        assert_eq!(probs(&m), probs(&orig), "{name}");
        assert!(r.layers.iter().all(|l| l.nonzero_after == l.params_before));
    }
}

#[test]
fn one_shot_unstructured_accuracy_and_exact_sparsity() {
    println!(
        "| model | sparsity | scope | accuracy | pruned-layer sparsity | weight bytes (COO where smaller) |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, dense) in [("mlp", 0.9733), ("cnn", 0.9667)] {
        let acc0 = accuracy(&load(name));
        assert!((acc0 - dense).abs() < 1e-3, "{name}: {acc0}");
        for s in [0.5, 0.7, 0.9] {
            for scope in [Scope::Layer, Scope::Global] {
                let mut m = load(name);
                let cfg = PruneConfig {
                    sparsity: s,
                    scope,
                    sparse_storage: true,
                    ..PruneConfig::default()
                };
                let r = prune_model(&mut m, &cfg).expect("prune");
                assert_eq!(r.layers.len(), 2, "{name}");
                if scope == Scope::Layer {
                    for l in &r.layers {
                        // round(s·n) pruned exactly (no exact-zero weights in the fixtures).
                        let k = (s * l.params_before as f64).round_ties_even() as usize;
                        assert_eq!(l.nonzero_after, l.params_before - k, "{name} {}", l.weight);
                        assert_eq!(l.shape_after, l.shape_before);
                        let sparse = l.nonzero_after * 12 < l.params_before * 4;
                        assert_eq!(l.storage == Storage::Sparse, sparse);
                    }
                } else {
                    let k = (s * r.pruned_params_before as f64).round_ties_even() as usize;
                    assert_eq!(r.pruned_nonzero_after, r.pruned_params_before - k);
                }
                let acc = accuracy(&m);
                // The saved file densifies back to the same model.
                let back = Model::from_bytes(&m.to_bytes().expect("encode")).expect("reload");
                assert_eq!(accuracy(&back), acc);
                println!(
                    "| {name} | {s} | {scope:?} | {acc:.4} (dense {acc0:.4}) | {:.4} | {} → {} |",
                    r.sparsity, r.model_bytes_before, r.model_bytes_after
                );
                if s == 0.5 {
                    assert!(acc > acc0 - 0.05, "{name} at 50%: {acc}");
                }
            }
        }
    }
}

/// The digits MLP pruned at 90 % and saved with sparse storage gives the same outputs
/// through the sparse kernel as through the dense SGEMM (each forced with
/// `PlanOptions::sparse`), at batch 450 and batch 1, and the sparse plan does run both
/// layers sparse.
#[test]
fn pruned_mlp_runs_sparse_with_dense_outputs() {
    let mut m = load("mlp");
    let cfg = PruneConfig {
        sparsity: 0.9,
        sparse_storage: true,
        ..PruneConfig::default()
    };
    prune_model(&mut m, &cfg).expect("prune");
    let m = Model::from_bytes(&m.to_bytes().expect("encode")).expect("reload");
    let x: ArrayD<f32> = read_npy(dir().join("x_test.npy")).expect("x_test");
    let one = x.slice_axis(ndarray::Axis(0), (3..4).into()).to_owned();
    let plan =
        |sparse| Plan::new(&m, PlanOptions::with_threads(1).with_sparse(sparse)).expect("plan");
    let run = |p: &Plan, x: &ArrayD<f32>| {
        let out = p.run(&[("x", Tensor::F32(x.clone()))]).expect("run");
        out[0].1.as_f32().expect("f32 probs").clone()
    };
    let (sparse, dense) = (plan(SparseMode::Sparse), plan(SparseMode::Dense));
    assert_eq!((sparse.sparse_steps(), dense.sparse_steps()), (2, 0));
    for x in [&x, &one] {
        let (s, d) = (run(&sparse, x), run(&dense, x));
        assert_eq!(s.shape(), d.shape());
        for (a, b) in s.iter().zip(&d) {
            assert!((a - b).abs() <= 1e-5 * a.abs().max(*b), "{a} vs {b}");
        }
    }
    // `Auto` follows `prefer_sparse` layer by layer.
    let want = ["w1", "w2"]
        .iter()
        .filter(|w| {
            let t = m
                .graph
                .initializer(w)
                .and_then(Tensor::as_f32)
                .expect("weight");
            let zeros = t.iter().filter(|&&v| v == 0.0).count();
            edgeml_onnx::kernels::prefer_sparse(t.shape()[0], t.shape()[1], zeros)
        })
        .count();
    assert_eq!(plan(SparseMode::Auto).sparse_steps(), want);
}

/// The digits CNN pruned at 90 % (unstructured) runs its `Conv` (a single input
/// channel, so not depthwise) and its `Gemm` through the sparse kernel when forced, and
/// gives the same predictions and, within rounding, the same probabilities as the dense
/// plan, at batch 450 on one thread and at batch 1 on two.
#[test]
fn pruned_cnn_runs_sparse_with_dense_predictions() {
    let mut m = load("cnn");
    let cfg = PruneConfig {
        sparsity: 0.9,
        sparse_storage: true,
        ..PruneConfig::default()
    };
    prune_model(&mut m, &cfg).expect("prune");
    let m = Model::from_bytes(&m.to_bytes().expect("encode")).expect("reload");
    let x: ArrayD<f32> = read_npy(dir().join("x_test.npy")).expect("x_test");
    let one = x.slice_axis(ndarray::Axis(0), (7..8).into()).to_owned();
    let plan = |sparse, threads| {
        Plan::new(&m, PlanOptions::with_threads(threads).with_sparse(sparse)).expect("plan")
    };
    let run = |p: &Plan, x: &ArrayD<f32>| {
        let out = p.run(&[("x", Tensor::F32(x.clone()))]).expect("run");
        out[0].1.as_f32().expect("f32 probs").clone()
    };
    let argmax = |p: &ArrayD<f32>| -> Vec<usize> {
        p.axis_iter(ndarray::Axis(0))
            .map(|r| {
                r.iter()
                    .enumerate()
                    .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b })
                    .0
            })
            .collect()
    };
    for threads in [1, 2] {
        let (sparse, dense) = (
            plan(SparseMode::Sparse, threads),
            plan(SparseMode::Dense, threads),
        );
        assert_eq!((sparse.sparse_steps(), dense.sparse_steps()), (2, 0));
        for x in [&x, &one] {
            let (s, d) = (run(&sparse, x), run(&dense, x));
            assert_eq!(s.shape(), [x.shape()[0], 10]);
            assert_eq!(s.shape(), d.shape());
            assert_eq!(argmax(&s), argmax(&d));
            for (a, b) in s.iter().zip(&d) {
                assert!((a - b).abs() <= 1e-5 * a.abs().max(*b) + 1e-7, "{a} vs {b}");
            }
        }
    }
    // `Auto` follows `prefer_sparse` layer by layer (a conv weight as C·KH·KW × M).
    let want = ["wc", "wf"]
        .iter()
        .filter(|w| {
            let t = m
                .graph
                .initializer(w)
                .and_then(Tensor::as_f32)
                .expect("weight");
            let zeros = t.iter().filter(|&&v| v == 0.0).count();
            let rows = t.shape()[0];
            edgeml_onnx::kernels::prefer_sparse(t.len() / rows, rows, zeros)
        })
        .count();
    assert_eq!(plan(SparseMode::Auto, 1).sparse_steps(), want);
}

#[test]
fn channel_pruning_removes_cnn_channels_for_real() {
    let orig = load("cnn");
    let mut m = orig.clone();
    let cfg = PruneConfig {
        sparsity: 0.5,
        pattern: Pattern::Channels {
            axis: 0,
            norm: Norm::L1,
        },
        ..PruneConfig::default()
    };
    let r = prune_model(&mut m, &cfg).expect("prune");
    // The Gemm is the final layer: skipped by the channel pattern.
    assert_eq!(r.layers.len(), 1);
    assert_eq!(r.skipped.len(), 1);
    let conv = &r.layers[0];
    assert_eq!(conv.channels_removed, 4, "{conv:?}");
    assert_eq!(conv.shape_after, [4, 1, 3, 3]);
    assert_eq!(
        m.graph.initializer("wc").map(Tensor::shape),
        Some(&[4, 1, 3, 3][..])
    );
    assert_eq!(m.graph.initializer("bc").map(Tensor::shape), Some(&[4][..]));
    assert_eq!(
        m.graph.initializer("wf").map(Tensor::shape),
        Some(&[10, 64][..])
    );
    let (a, b) = (
        orig.to_bytes().expect("encode").len(),
        m.to_bytes().expect("encode").len(),
    );
    assert!(b < a, "{b} >= {a}");
    let acc = accuracy(&m);
    let mut zeroed = orig.clone();
    let r = prune_model(
        &mut zeroed,
        &PruneConfig {
            remove_channels: false,
            ..cfg
        },
    )
    .expect("prune");
    assert_eq!(r.layers[0].channels_removed, 0);
    assert_eq!(r.layers[0].shape_after, [8, 1, 3, 3]);
    println!(
        "cnn channels 50%: accuracy {acc:.4} removed, {:.4} zeroed in place; file {a} → {b} bytes",
        accuracy(&zeroed)
    );
    // The removed channels' constant output (bias through Relu, MaxPool, Flatten) is
    // folded into the Gemm's bias: the smaller model computes what the zeroed one does.
    assert!(r.layers[0].note.is_none(), "{:?}", r.layers[0].note);
    close(&probs(&m), &probs(&zeroed));
    assert!(acc > 0.2, "{acc}");
}

#[test]
fn channel_pruning_of_the_mlp_removes_hidden_units() {
    let mut m = load("mlp");
    let cfg = PruneConfig {
        sparsity: 0.5,
        pattern: Pattern::Channels {
            axis: 0,
            norm: Norm::L2,
        },
        ..PruneConfig::default()
    };
    let r = prune_model(&mut m, &cfg).expect("prune");
    assert_eq!(r.layers[0].channels_removed, 16, "{r:?}");
    assert_eq!(
        m.graph.initializer("w1").map(Tensor::shape),
        Some(&[64, 16][..])
    );
    assert_eq!(
        m.graph.initializer("b1").map(Tensor::shape),
        Some(&[16][..])
    );
    assert_eq!(
        m.graph.initializer("w2").map(Tensor::shape),
        Some(&[16, 10][..])
    );
    println!("mlp channels 50%: accuracy {:.4}", accuracy(&m));
    // relu(b1) of the removed units is folded into b2 (MatMul -> Add).
    assert!(r.layers[0].note.is_none(), "{:?}", r.layers[0].note);
    let mut zeroed = load("mlp");
    prune_model(
        &mut zeroed,
        &PruneConfig {
            remove_channels: false,
            ..cfg
        },
    )
    .expect("prune");
    close(&probs(&m), &probs(&zeroed));
}

#[test]
fn bad_input_is_a_typed_error_and_leaves_the_model_alone() {
    let orig = load("cnn");
    let mut m = orig.clone();
    for s in [-0.1, 1.0, f64::NAN] {
        let e = prune_model(&mut m, &config(s)).expect_err("bad sparsity");
        assert!(matches!(e, Error::InvalidSparsity { .. }), "{e}");
    }
    let ex = |v: &[&str]| PruneConfig {
        exclude: v.iter().map(|s| s.to_string()).collect(),
        ..PruneConfig::default()
    };
    let e = prune_model(&mut m, &ex(&["nope"])).expect_err("unknown exclusion");
    assert_eq!(e, Error::UnknownExclusion("nope".into()));
    let e = prune_model(&mut m, &ex(&["Conv", "wf"])).expect_err("nothing left");
    assert!(matches!(e, Error::NothingPrunable(_)), "{e}");
    // 2:4 along the Gemm's 128 inputs fits, the conv's single input channel does not.
    let nm = PruneConfig {
        pattern: Pattern::keep_of_group(2, 4, 1),
        ..PruneConfig::default()
    };
    let e = prune_model(&mut m, &nm).expect_err("N:M does not fit the conv");
    assert!(matches!(e, Error::InLayer { .. }), "{e}");
    let global = PruneConfig {
        scope: Scope::Global,
        pattern: Pattern::MagnitudeThreshold,
        ..PruneConfig::default()
    };
    assert!(matches!(
        prune_model(&mut m, &global),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(m, orig);
    // The 72-weight conv is below a minimum size of 100; the Gemm (1280) is not.
    let small = PruneConfig {
        min_size: 100,
        ..PruneConfig::default()
    };
    let r = prune_model(&mut load("cnn"), &small).expect("prune");
    assert_eq!(r.layers.len(), 1);
    assert_eq!(r.layers[0].weight, "wf");
    assert!(r.skipped[0].reason.contains("minimum"), "{:?}", r.skipped);
    // Excluding the conv by op type prunes only the Gemm.
    let r = prune_model(&mut m, &ex(&["Conv"])).expect("prune");
    assert_eq!(r.layers.len(), 1);
    assert_eq!(r.layers[0].weight, "wf");
    let r = prune_model(&mut load("cnn"), &nm.clone()).map(|_| ());
    assert!(r.is_err());
}

//! Gradual magnitude pruning during training: exact final sparsity, the schedule
//! followed, early stopping only at the target, and the digits accuracy against
//! one-shot pruning; loading ONNX MLPs to fine-tune.
#![allow(clippy::unwrap_used)]

use edgeml_core::Schedule;
use edgeml_distill::{
    CrossEntropy, ErrorKind, Mlp, Optimizer, PruneDuringTraining, TrainConfig, TrainData, accuracy,
    train,
};
use ndarray::{Array1, Array2, ArrayD};
use ndarray_npy::read_npy;
use proptest::prelude::*;
use std::path::PathBuf;

fn digits() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/digits")
}

/// The digits training split (1347 images) and test split (450), flattened to 64.
fn digits_data() -> (Array2<f32>, Vec<i64>, Array2<f32>, Vec<i64>) {
    let x: ArrayD<u8> = read_npy(digits().join("x_train_u8.npy")).unwrap();
    let y: Array1<i64> = read_npy(digits().join("y_train.npy")).unwrap();
    let xt: ArrayD<f32> = read_npy(digits().join("x_test.npy")).unwrap();
    let yt: Array1<i64> = read_npy(digits().join("y_test.npy")).unwrap();
    let flat = |a: ArrayD<f32>| {
        let n = a.shape()[0];
        a.to_shape((n, 64)).unwrap().to_owned()
    };
    (
        flat(x.mapv(|v| f32::from(v) / 16.0)),
        y.to_vec(),
        flat(xt),
        yt.to_vec(),
    )
}

/// Pruned weights of each weight matrix (zeros), and the weight-matrix lengths.
fn zeros_per_layer(mlp: &Mlp) -> Vec<(usize, usize)> {
    (0..mlp.sizes().len() - 1)
        .map(|l| {
            let (w, _) = mlp.layer(l);
            (w.iter().filter(|&&v| v == 0.0).count(), w.len())
        })
        .collect()
}

/// `round(s·n)`, half to even.
fn count(s: f64, n: usize) -> usize {
    (s * n as f64).round_ties_even() as usize
}

/// A step schedule written here: the trait is all the trainer needs.
#[derive(Debug, Clone, Copy)]
struct Steps {
    begin: u64,
    every: u64,
    end: u64,
    target: f32,
}

impl Schedule for Steps {
    fn sparsity(&self, step: u64) -> f32 {
        let done = step.saturating_sub(self.begin).min(self.end - self.begin);
        self.target * done as f32 / (self.end - self.begin) as f32
    }
    fn should_prune(&self, step: u64) -> bool {
        step >= self.begin && step <= self.end && (step - self.begin).is_multiple_of(self.every)
    }
}

fn tiny_data(n: usize) -> (Array2<f32>, Vec<i64>) {
    let x = Array2::from_shape_fn((n, 6), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 5.0 - 1.0);
    let y = (0..n).map(|i| ((i * 7) % 11 % 3) as i64).collect();
    (x, y)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Each epoch ends at the sparsity of the schedule's last mask update so far, each
    /// layer at exactly `round(s·n)` zeros; the result is at the target and was not
    /// restored from an epoch before it.
    #[test]
    fn the_schedule_is_followed(
        begin in 0u64..12,
        len in 1u64..30,
        every in 1u64..7,
        target_pct in 10u32..95,
        batch in 3usize..9,
        val in prop::bool::ANY,
    ) {
        let (x, y) = tiny_data(40);
        let mut mlp = Mlp::new(&[6], &[9, 5], 3, 3).unwrap();
        let target = target_pct as f32 / 100.0;
        let end = begin + len.div_ceil(every) * every;
        let sched = Steps { begin, every, end, target };
        let cfg = TrainConfig {
            epochs: 12,
            batch_size: batch,
            optimizer: Optimizer::adam_with_lr(1e-2),
            validation_fraction: if val { 0.2 } else { 0.0 },
            patience: Some(2),
            pruning: Some(PruneDuringTraining::new(f64::from(target), sched)),
            ..TrainConfig::default()
        };
        let spe = cfg.steps_per_epoch(40) as u64;
        let sizes = [6 * 9, 9 * 5, 5 * 3];
        let data = TrainData { x: x.view(), labels: Some(&y), teacher: None };
        let mut seen = Vec::new();
        let result = train(&mut mlp, &CrossEntropy::default(), &data, &cfg, &mut |m| {
            seen.push((m.epoch, m.sparsity.unwrap()));
        });
        if end >= 12 * spe {
            // the last mask update falls after the last step: refused up front
            let e = result.unwrap_err();
            prop_assert_eq!(e.kind(), ErrorKind::InvalidInput);
            prop_assert!(seen.is_empty());
            return Ok(());
        }
        let report = result.unwrap();
        for &(epoch, got) in &seen {
            let last = (0..epoch as u64 * spe).rev().find(|&t| sched.should_prune(t));
            let s = last.map_or(0.0, |t| f64::from(sched.sparsity(t)));
            let want: usize = sizes.iter().map(|&n| count(s, n)).sum();
            prop_assert!((got - want as f64 / 114.0).abs() < 1e-12, "epoch {} got {} want {}", epoch, got, want as f64 / 114.0);
        }
        // the restored epoch ended at the target (the ramp reaches it at step `end`,
        // or earlier when the counts round alike)
        let at_target: usize = sizes.iter().map(|&n| count(f64::from(target), n)).sum();
        let best = seen[report.best_epoch - 1];
        prop_assert_eq!(best.0, report.best_epoch);
        prop_assert!((best.1 - at_target as f64 / 114.0).abs() < 1e-12);
        prop_assert!(report.best_epoch <= seen.len());
        let zeros = zeros_per_layer(&mlp);
        for (&(z, n), &n2) in zeros.iter().zip(&sizes) {
            prop_assert_eq!(n, n2);
            prop_assert_eq!(z, count(f64::from(target), n));
        }
        // biases are never pruned
        prop_assert!(mlp.layer(0).1.iter().all(|&b| b != 0.0));
    }
}

#[test]
fn a_schedule_that_ends_elsewhere_is_refused() {
    let (x, y) = tiny_data(20);
    let data = TrainData {
        x: x.view(),
        labels: Some(&y),
        teacher: None,
    };
    let mut mlp = Mlp::new(&[6], &[8], 3, 1).unwrap();
    let before = mlp.clone();
    let sched = Steps {
        begin: 0,
        every: 1,
        end: 10,
        target: 0.5,
    };
    for p in [
        // a target the schedule never reaches
        PruneDuringTraining::new(0.75, sched),
        // out of range
        PruneDuringTraining::new(1.0, sched),
        // the ramp ends after the last step (2 epochs of 3 steps)
        PruneDuringTraining::polynomial(0.5, 0, 100, 1).unwrap(),
    ] {
        let cfg = TrainConfig {
            epochs: 2,
            batch_size: 7,
            validation_fraction: 0.0,
            pruning: Some(p),
            ..TrainConfig::default()
        };
        let e = train(&mut mlp, &CrossEntropy::default(), &data, &cfg, &mut |_| {}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert_eq!(mlp, before);
    }
}

/// The digits 64-32-10 student pruned to 87.5% of its weights (338 nonzero parameters
/// with the biases) while it trains beats the dense student pruned once after training.
#[test]
fn pruning_while_training_beats_one_shot_pruning_on_digits() {
    let (x, y, xt, yt) = digits_data();
    let data = TrainData {
        x: x.view(),
        labels: Some(&y),
        teacher: None,
    };
    let s = 0.875;
    let base = TrainConfig {
        epochs: 60,
        batch_size: 32,
        optimizer: Optimizer::adam_with_lr(3e-3),
        patience: None,
        seed: 7,
        ..TrainConfig::default()
    };
    let mut dense = Mlp::new(&[1, 8, 8], &[32], 10, 7).unwrap();
    train(
        &mut dense,
        &CrossEntropy::default(),
        &data,
        &base,
        &mut |_| {},
    )
    .unwrap();
    let acc_dense = accuracy(dense.logits(xt.view()).unwrap().view(), &yt);
    // one-shot: each weight matrix's 87.5% smallest magnitudes zeroed
    let mut one_shot = dense.clone();
    let ranges: Vec<(usize, usize)> = {
        let mut off = 0;
        one_shot
            .sizes()
            .windows(2)
            .map(|w| {
                let r = (off, w[0] * w[1]);
                off += (w[0] + 1) * w[1];
                r
            })
            .collect()
    };
    for (off, n) in ranges {
        let w = &mut one_shot.params_mut()[off..off + n];
        let mut idx: Vec<usize> = (0..n).collect();
        idx.sort_by(|&a, &b| w[a].abs().total_cmp(&w[b].abs()).then(a.cmp(&b)));
        for &i in &idx[..count(s, n)] {
            w[i] = 0.0;
        }
    }
    let acc_one_shot = accuracy(one_shot.logits(xt.view()).unwrap().view(), &yt);

    let spe = base.steps_per_epoch(x.nrows()) as u64;
    let cfg = TrainConfig {
        pruning: Some(PruneDuringTraining::polynomial(s, 0, 30 * spe, spe).unwrap()),
        ..base.clone()
    };
    let mut pruned = Mlp::new(&[1, 8, 8], &[32], 10, 7).unwrap();
    let mut last = 0.0;
    let r = train(
        &mut pruned,
        &CrossEntropy::default(),
        &data,
        &cfg,
        &mut |m| last = m.sparsity.unwrap(),
    )
    .unwrap();
    assert_eq!(last, r.sparsity.unwrap());
    assert_eq!(r.sparsity, Some((1792.0 + 280.0) / 2368.0));
    assert_eq!(zeros_per_layer(&pruned), [(1792, 2048), (280, 320)]);
    assert!(r.best_epoch > 30, "restored epoch {}", r.best_epoch);
    assert_eq!(pruned.num_nonzero_params(), 2410 - 1792 - 280);
    let acc_pruned = accuracy(pruned.logits(xt.view()).unwrap().view(), &yt);
    eprintln!(
        "dense {acc_dense:.4}, one-shot 87.5% {acc_one_shot:.4}, gradual 87.5% {acc_pruned:.4}"
    );
    assert!(
        acc_pruned > acc_one_shot + 0.05,
        "gradual {acc_pruned} vs one-shot {acc_one_shot}"
    );
    assert!(acc_pruned > 0.85, "gradual {acc_pruned}");

    // zeros stay zeros in the exported ONNX model
    #[cfg(feature = "onnx")]
    {
        let m = pruned.to_onnx().unwrap();
        let nonzero: usize = m
            .graph
            .initializers
            .iter()
            .map(|(_, t)| t.as_f32().unwrap().iter().filter(|&&v| v != 0.0).count())
            .sum();
        assert_eq!(nonzero, pruned.num_nonzero_params());
        assert_eq!(Mlp::from_onnx(&m).unwrap(), pruned);
    }
}

#[cfg(feature = "onnx")]
mod onnx {
    use super::*;
    use edgeml_onnx::{Model, Node};

    /// The skl2onnx-style fixture (`Flatten`, `MatMul` + `Add`, `Relu`, `Softmax`)
    /// loads as a 64-32-10 MLP whose softmax is onnxruntime's output.
    #[test]
    fn the_digits_mlp_fixture_loads() {
        let m = Model::load(digits().join("mlp.onnx")).unwrap();
        let mlp = Mlp::from_onnx(&m).unwrap();
        assert_eq!(mlp.sizes(), [64, 32, 10]);
        assert_eq!(mlp.input_shape(), [1, 8, 8]);
        assert_eq!(mlp.num_params(), 2410);
        let (_, _, xt, _) = digits_data();
        let logits = mlp.logits(xt.view()).unwrap();
        let ort: Array2<f32> = read_npy(digits().join("mlp_probs.npy")).unwrap();
        let mut worst = 0.0f32;
        for (z, p) in logits.rows().into_iter().zip(ort.rows()) {
            let mx = z.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let sum: f32 = z.iter().map(|v| (v - mx).exp()).sum();
            for (v, q) in z.iter().zip(p) {
                worst = worst.max(((v - mx).exp() / sum - q).abs());
            }
        }
        assert!(worst < 1e-5, "softmax differs from onnxruntime by {worst}");
    }

    #[test]
    fn other_graphs_are_refused_with_a_typed_error() {
        let base = Model::load(digits().join("mlp.onnx")).unwrap();
        let mut sigmoid = base.clone();
        let relu = sigmoid
            .graph
            .nodes
            .iter_mut()
            .find(|n| n.op_type == "Relu")
            .unwrap();
        relu.op_type = "Sigmoid".into();
        let mut branch = base.clone();
        branch.graph.nodes.push(Node {
            op_type: "Relu".into(),
            inputs: vec!["h".into()],
            outputs: vec!["extra".into()],
            ..Node::default()
        });
        let mut swapped = base.clone();
        let mm = swapped
            .graph
            .nodes
            .iter_mut()
            .find(|n| n.op_type == "MatMul")
            .unwrap();
        mm.inputs.swap(0, 1);
        let mut inner_output = base.clone();
        inner_output.graph.outputs[0].name = "h".into();
        let cnn = Model::load(digits().join("cnn.onnx")).unwrap();
        for (what, m) in [
            ("inner output", inner_output),
            ("sigmoid", sigmoid),
            ("branch", branch),
            ("swapped", swapped),
            ("cnn", cnn),
        ] {
            let e = Mlp::from_onnx(&m).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidModel, "{what}: {e}");
            eprintln!("{what}: {e}");
        }
    }

    #[test]
    fn exported_students_round_trip() {
        let mut mlp = Mlp::new(&[5], &[4, 3], 2, 9).unwrap();
        let x = Array2::from_shape_fn((7, 5), |(i, j)| (i * j) as f32 * 0.3 - 1.0);
        mlp.fit_standardization(x.view()).unwrap();
        let back = Mlp::from_onnx(&mlp.to_onnx().unwrap()).unwrap();
        assert_eq!(back, mlp);
        let flat = Mlp::new(&[2, 3], &[4], 3, 1).unwrap();
        assert_eq!(Mlp::from_onnx(&flat.to_onnx().unwrap()).unwrap(), flat);
    }
}

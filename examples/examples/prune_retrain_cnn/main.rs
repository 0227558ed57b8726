//! Gradual magnitude pruning with retraining of the bundled digits CNN
//! (`tests/fixtures/digits/cnn.onnx`: `Conv` 1→8 3×3, `Relu`, `MaxPool` 2×2, `Flatten`,
//! `Gemm` 128→10, `Softmax`) in a plain Rust training loop driven by edgeml-prune's
//! [`Controller`], beside one-shot pruning of the same file with and without
//! least-squares recalibration (`edgeml prune`, `--recalibrate`).
//!
//! ```text
//! cargo run --release -p edgeml-examples --example prune_retrain_cnn
//! cargo test -p edgeml-examples --example prune_retrain_cnn   # forward and gradient checks
//! ```
//!
//! The ONNX weights are extracted into the small CNN of `cnn.rs` (forward and exact
//! backward with ndarray; its forward equals edgeml-onnx on the file, its gradients
//! equal central differences in f64: the tests of `cnn.rs`). It is fine-tuned on the
//! digits training split as the MLP of `prune_retrain_digits` is (`x_train_u8.npy`, 1347
//! images, 10% held out by the same seeded shuffle): Adam lr 1e-3, batch 32, at most
//! 300 epochs, while the controller raises the sparsity of the conv and gemm weights
//! (biases never pruned; layer-wise exact-k magnitude, the pattern of `edgeml prune`)
//! from 0 to the target with TF-MOT's `PolynomialDecay` (power 3) over the first 100
//! epochs, masks updated once per epoch, masked gradients; early stopping with
//! patience 50 counted from the end of the ramp restores the epoch with the lowest
//! held-out loss. Twice: on the hard labels (cross-entropy), and distilled from the
//! dense CNN (its probabilities, `Kd` with T = 2, w_soft = w_hard = 0.5). The trained
//! weights are written back into the ONNX model, saved (weights as COO
//! `sparse_initializer` where smaller, the `--sparse-storage` rule), loaded again and
//! run by edgeml on the 450 test images: the accuracies printed are the saved files'.

mod cnn;

use anyhow::{Context, Result, ensure};
use cnn::{CLASSES, Cnn, Names};
use edgeml::distill::{CrossEntropy, DistillLoss, Kd, KdConfig, Targets, Teacher, TeacherOptions};
use edgeml::onnx::{Model, Plan, PlanOptions, Tensor};
use edgeml::prune::onnx::Recalibrate;
use edgeml::prune::{
    Controller, ControllerConfig, LayerConfig, PolynomialDecay, PruneConfig, prune_model,
};
use ndarray::{Array2, Array4, ArrayD, ArrayView2, ArrayView4, Axis, Ix4};
use ndarray_npy::read_npy;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Seed of the held-out split and the shuffles (the MLP example's).
const SEED: u64 = 7;
const BATCH: usize = 32;
const EPOCHS: usize = 300;
/// Epochs over which the sparsity ramps from 0 to the target.
const RAMP: u64 = 100;
/// Epochs at the target sparsity without a lower held-out loss before stopping.
const PATIENCE: usize = 50;
const VALIDATION: f64 = 0.1;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/digits")
}

/// SplitMix64 with Lemire's bounded draw and Fisher–Yates, the generator of the
/// edgeml-distill trainer, so that the held-out split is the MLP example's.
#[derive(Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = ((u128::from(self.next_u64()) * (i as u128 + 1)) >> 64) as usize;
            xs.swap(i, j);
        }
    }
}

/// The training images (scaled to `[0, 1]`), labels and, for distillation, the dense
/// CNN's probabilities on them.
struct Data {
    x: Array4<f32>,
    y: Vec<i64>,
    teacher: Array2<f32>,
}

/// One batch of `data` (rows `idx`).
struct Batch {
    x: Array4<f32>,
    y: Vec<i64>,
    teacher: Array2<f32>,
}

impl Data {
    fn gather(&self, idx: &[usize]) -> Batch {
        Batch {
            x: self.x.select(Axis(0), idx),
            y: idx.iter().map(|&i| self.y[i]).collect(),
            teacher: self.teacher.select(Axis(0), idx),
        }
    }
}

/// `loss` of `logits` on `b`; writes its gradient with respect to the logits to `grad`.
fn loss_and_grad(
    loss: &dyn DistillLoss,
    logits: ArrayView2<'_, f32>,
    b: &Batch,
    grad: &mut [f32],
) -> Result<f64> {
    let z = logits.as_slice().context("logits in standard layout")?;
    let mut targets = Targets::labels(&b.y);
    targets.teacher = b.teacher.as_slice();
    Ok(loss.loss_and_grad(z, b.y.len(), CLASSES, &targets, grad)?)
}

/// Adam (PyTorch's `Adam`, betas 0.9 and 0.999, eps 1e-8, bias correction).
struct Adam {
    lr: f32,
    t: i32,
    m: Cnn<f32>,
    v: Cnn<f32>,
}

impl Adam {
    fn new(lr: f32, like: &Cnn<f32>) -> Self {
        Adam {
            lr,
            t: 0,
            m: like.zeros_like(),
            v: like.zeros_like(),
        }
    }

    fn update(&mut self, params: &mut Cnn<f32>, grads: &mut Cnn<f32>) {
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        self.t += 1;
        let (c1, c2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
        let tensors = params
            .tensors_mut()
            .into_iter()
            .zip(grads.tensors_mut())
            .zip(self.m.tensors_mut().into_iter().zip(self.v.tensors_mut()));
        for ((p, g), (m, v)) in tensors {
            for (((p, g), m), v) in p.iter_mut().zip(g.iter()).zip(m.iter_mut()).zip(v) {
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *p -= self.lr * (*m / c1) / ((*v / c2).sqrt() + eps);
            }
        }
    }
}

/// The layers the controller knows, named as the file's initializers.
fn layers(n: &Names) -> Vec<LayerConfig> {
    vec![
        LayerConfig::weight(&n.conv_w, &[8, 1, 3, 3]),
        LayerConfig::bias(&n.conv_b, &[8]),
        LayerConfig::weight(&n.fc_w, &[CLASSES, 128]),
        LayerConfig::bias(&n.fc_b, &[CLASSES]),
    ]
}

/// `(name, tensor)` pairs of the two pruned weights of `c`, as the controller takes them.
fn weights<'a>(n: &'a Names, c: &'a mut Cnn<f32>) -> [(&'a str, &'a mut [f32]); 2] {
    let [w, _, f, _] = c.tensors_mut();
    [(n.conv_w.as_str(), w), (n.fc_w.as_str(), f)]
}

/// The outcome of one fine-tuning run.
struct Retrained {
    cnn: Cnn<f32>,
    best_epoch: usize,
    epochs_run: usize,
}

/// Fine-tunes `start` on `train` (held-out `val`) with `loss` while the controller
/// prunes it gradually to `sparsity`; `rng` continues from the split.
fn retrain(
    start: &Cnn<f32>,
    names: &Names,
    sparsity: f64,
    loss: &dyn DistillLoss,
    data: &Data,
    (train, val): (&[usize], &[usize]),
    mut rng: SplitMix64,
) -> Result<Retrained> {
    let steps_per_epoch = train.len().div_ceil(BATCH) as u64;
    let end = RAMP * steps_per_epoch;
    let schedule = PolynomialDecay::new(0.0, sparsity, 0, end)?.with_frequency(steps_per_epoch)?;
    let mut ctl = Controller::new(schedule, ControllerConfig::default(), layers(names))?;
    let mut cnn = start.clone();
    let mut adam = Adam::new(1e-3, &cnn);
    let val = data.gather(val);
    let mut train = train.to_vec();
    let mut grad = vec![0.0f32; BATCH * CLASSES];
    let mut best = (f64::INFINITY, 0usize, cnn.clone());
    let (mut step, mut epochs_run) = (0u64, 0usize);
    for epoch in 1..=EPOCHS {
        epochs_run = epoch;
        rng.shuffle(&mut train);
        for idx in train.chunks(BATCH) {
            let b = data.gather(idx);
            let (z, cache) = cnn.forward(b.x.view());
            let dz = &mut grad[..z.len()];
            loss_and_grad(loss, z.view(), &b, dz)?;
            let dz = ArrayView2::from_shape(z.raw_dim(), dz)?;
            let mut g = cnn.backward(&cache, dz);
            ctl.mask_gradients(&mut weights(names, &mut g))?;
            adam.update(&mut cnn, &mut g);
            if ctl.step(step, &mut weights(names, &mut cnn))? {
                // New masks: clear the moments of newly pruned weights as well.
                ctl.apply(&mut weights(names, &mut adam.m))?;
                ctl.apply(&mut weights(names, &mut adam.v))?;
            }
            step += 1;
        }
        if step <= end {
            continue; // still ramping: not a candidate
        }
        let z = cnn.logits(val.x.view());
        let mut scratch = vec![0.0f32; z.len()];
        let v = loss_and_grad(loss, z.view(), &val, &mut scratch)?;
        if v < best.0 || best.1 == 0 {
            best = (v, epoch, cnn.clone());
        } else if epoch - best.1 >= PATIENCE {
            break;
        }
    }
    Ok(Retrained {
        cnn: best.2,
        best_epoch: best.1,
        epochs_run,
    })
}

/// The predicted classes of `m` (input `x`, first output) run by edgeml.
fn predictions(m: &Model, x: &Array4<f32>) -> Result<Vec<usize>> {
    let plan = Plan::new(m, PlanOptions::default())?;
    let out = plan.run(&[("x", Tensor::F32(x.clone().into_dyn()))])?;
    let p = out[0].1.as_f32().context("float output")?;
    Ok(p.rows()
        .into_iter()
        .map(|r| (0..r.len()).fold(0, |b, i| if r[i] > r[b] { i } else { b }))
        .collect())
}

/// The predicted classes of the Rust CNN.
fn predictions_rust(c: &Cnn<f32>, x: ArrayView4<'_, f32>) -> Vec<usize> {
    c.logits(x)
        .rows()
        .into_iter()
        .map(|r| (0..r.len()).fold(0, |b, i| if r[i] > r[b] { i } else { b }))
        .collect()
}

fn accuracy(pred: &[usize], y: &[i64]) -> f64 {
    let ok = pred
        .iter()
        .zip(y)
        .filter(|(p, y)| **p as i64 == **y)
        .count();
    ok as f64 / y.len() as f64
}

/// Saves `m` to `path` with weights as COO where smaller; returns the file size.
fn save_sparse(m: &Model, path: &Path) -> Result<u64> {
    let mut m = m.clone();
    m.graph.store_sparse_where_smaller();
    m.save(path)?;
    Ok(std::fs::metadata(path)?.len())
}

fn nonzero(c: &Cnn<f32>) -> (usize, usize) {
    let mut c = c.clone();
    let t = c.tensors_mut();
    let n = t
        .iter()
        .map(|t| t.iter().filter(|&&v| v != 0.0).count())
        .sum();
    (n, t.iter().map(|t| t.len()).sum())
}

fn main() -> Result<()> {
    let t0 = Instant::now();
    let f = fixtures();
    let path = f.join("cnn.onnx");
    let original = Model::load(&path)?;
    let (dense, names) = Cnn::from_onnx(&original)?;
    let x_u8: ArrayD<u8> = read_npy(f.join("x_train_u8.npy"))?;
    let x_train = x_u8.mapv(|v| f32::from(v) / 16.0);
    let y_train: ndarray::Array1<i64> = read_npy(f.join("y_train.npy"))?;
    let x_test: ArrayD<f32> = read_npy(f.join("x_test.npy"))?;
    let x_test = x_test.into_dimensionality::<Ix4>()?;
    let y_test: ndarray::Array1<i64> = read_npy(f.join("y_test.npy"))?;
    let y_test = y_test.to_vec();
    let soft = Teacher::load(&path, TeacherOptions::default())?.predict(x_train.view())?;
    let kd = Kd::new(KdConfig {
        temperature: 2.0,
        soft_weight: 0.5,
        hard_weight: 0.5,
        teacher: soft.kind,
        ..KdConfig::default()
    });
    let ce = CrossEntropy::default();
    let batches: Vec<ArrayD<f32>> = x_train
        .axis_chunks_iter(Axis(0), 128)
        .map(|c| c.to_owned())
        .collect();
    let data = Data {
        x: x_train.into_dimensionality::<Ix4>()?,
        y: y_train.to_vec(),
        teacher: soft.values,
    };
    // The trainer's split: one seeded shuffle, the first 10% held out.
    let n = data.y.len();
    let mut rng = SplitMix64(SEED);
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let (val, train) = order.split_at((n as f64 * VALIDATION).round() as usize);

    let dense_pred = predictions(&original, &x_test)?;
    let rust_pred = predictions_rust(&dense, x_test.view());
    ensure!(
        dense_pred == rust_pred,
        "the Rust CNN and the runtime disagree"
    );
    let dir = std::env::temp_dir().join(format!("edgeml-prune-cnn-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    println!(
        "digits CNN conv8-fc10 ({} parameters, {} B), dense test accuracy {:.4}; \
         {} training images, {} held out",
        nonzero(&dense).1,
        std::fs::metadata(&path)?.len(),
        accuracy(&dense_pred, &y_test),
        train.len(),
        val.len()
    );
    let mut notes = vec![];
    println!(
        "\n| sparsity | one-shot | `--recalibrate` | gradual + retraining, hard labels | \
         gradual + retraining, KD from the dense CNN | nonzero parameters | file, dense / sparse storage |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for s in [0.5, 0.7, 0.9] {
        // One-shot as `edgeml prune -s S`, and the same masks from the controller.
        let cfg = PruneConfig {
            sparsity: s,
            ..PruneConfig::default()
        };
        let mut one_shot = original.clone();
        prune_model(&mut one_shot, &cfg)?;
        let mut ctl = Controller::new(
            PolynomialDecay::new(0.0, s, 0, 1)?,
            ControllerConfig::default(),
            layers(&names),
        )?;
        let mut masked = dense.clone();
        {
            let mut w = weights(&names, &mut masked);
            let views: Vec<(&str, &[f32])> = w.iter().map(|(n, t)| (*n, &**t)).collect();
            ctl.update_masks(s, &views)?;
            ctl.apply(&mut w)?;
        }
        ensure!(
            Cnn::from_onnx(&one_shot)?.0 == masked,
            "the controller's one-shot masks differ from prune_model's at {s}"
        );
        let mut recal = original.clone();
        prune_model(
            &mut recal,
            &PruneConfig {
                recalibrate: Some(Recalibrate::new(batches.clone())),
                ..cfg
            },
        )?;
        let mut accs = vec![];
        let mut sizes = (0, 0);
        let mut nz = (0, 0);
        let losses: [(&str, &dyn DistillLoss); 2] = [("ce", &ce), ("kd", &kd)];
        for (label, loss) in losses {
            let r = retrain(&dense, &names, s, loss, &data, (train, val), rng.clone())?;
            let model = r.cnn.to_onnx(&original, &names)?;
            let file = dir.join(format!("cnn_{label}_{s}.onnx"));
            model.save(&file)?;
            let dense_bytes = std::fs::metadata(&file)?.len();
            let sparse_bytes = save_sparse(&model, &file)?;
            let saved = Model::load(&file)?;
            let pred = predictions(&saved, &x_test)?;
            ensure!(
                pred == predictions_rust(&r.cnn, x_test.view()),
                "the saved model and the Rust CNN disagree"
            );
            accs.push(accuracy(&pred, &y_test));
            sizes = (dense_bytes, sparse_bytes);
            nz = nonzero(&r.cnn);
            notes.push(format!(
                "{s} {label}: best epoch {} of {} run",
                r.best_epoch, r.epochs_run
            ));
        }
        println!(
            "| {s} | {:.4} | {:.4} | {:.4} | {:.4} | {} of {} | {} / {} B |",
            accuracy(&predictions(&one_shot, &x_test)?, &y_test),
            accuracy(&predictions(&recal, &x_test)?, &y_test),
            accs[0],
            accs[1],
            nz.0,
            nz.1,
            sizes.0,
            sizes.1,
        );
    }
    std::fs::remove_dir_all(&dir)?;
    println!("\n(nonzero parameters and file sizes: the KD model; biases included)");
    for n in notes {
        println!("{n}");
    }
    println!("ran in {:.1?}", t0.elapsed());
    Ok(())
}

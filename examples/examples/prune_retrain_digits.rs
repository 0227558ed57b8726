//! Gradual magnitude pruning with retraining of the bundled scikit-learn digits MLP
//! (`tests/fixtures/digits/mlp.onnx`, 64-32-10 as skl2onnx writes it: `MatMul` + `Add`,
//! `Relu`, `Softmax`), beside one-shot pruning of the same file with and without
//! least-squares recalibration (`edgeml prune`, `--recalibrate`).
//!
//! ```text
//! cargo run --release -p edgeml-examples --example prune_retrain_digits
//! ```
//!
//! The ONNX weights are loaded into an `edgeml-distill` `Mlp` (`Mlp::from_onnx`) and
//! fine-tuned on the digits training split (`x_train_u8.npy`, 1347 images, 10% held
//! out, seeded) while `TrainConfig::pruning` raises each weight matrix's sparsity from
//! 0 to the target with TF-MOT's `PolynomialDecay` over the first 100 of at most 300
//! epochs (masks every epoch; Adam lr 1e-3, batch 32, patience 50 counted from the
//! end of the ramp, seed 7). Twice: on
//! the hard labels (cross-entropy), and distilled from the dense original (its
//! probabilities on the training images, `Kd` with T = 2, w_soft = w_hard = 0.5).
//! Accuracy of the exported ONNX models run by edgeml on the 450 test images.

use anyhow::{Context, Result};
use edgeml::distill::{
    CrossEntropy, DistillLoss, Kd, KdConfig, Mlp, Optimizer, PruneDuringTraining, Teacher,
    TeacherOptions, TrainConfig, TrainData, accuracy, train,
};
use edgeml::onnx::{Model, Plan, PlanOptions, SparseTensor, Tensor};
use edgeml::prune::onnx::Recalibrate;
use edgeml::prune::{PolynomialDecay, PruneConfig, prune_model};
use ndarray::{Array2, ArrayD, Axis, Ix2};
use ndarray_npy::read_npy;
use std::path::{Path, PathBuf};

const SEED: u64 = 7;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/digits")
}

/// Accuracy of `m` (input `x`, first output) run by edgeml on the test split.
fn model_accuracy(m: &Model, x: &ArrayD<f32>, y: &[i64]) -> Result<f64> {
    let plan = Plan::new(m, PlanOptions::default())?;
    let out = plan.run(&[("x", Tensor::F32(x.clone()))])?;
    let a = out[0].1.as_f32().context("float output")?.clone();
    Ok(accuracy(a.into_dimensionality::<Ix2>()?.view(), y))
}

/// The file size of `m` with its weight matrices stored as COO where that is smaller
/// (the rule of `edgeml prune --sparse-storage`).
fn sparse_file_bytes(m: &Model, path: &Path) -> Result<u64> {
    let mut m = m.clone();
    let g = &mut m.graph;
    let names: Vec<String> = g
        .initializers
        .iter()
        .filter(|(_, t)| {
            t.shape().len() == 2 && SparseTensor::from_dense(t).size_bytes() < t.size_bytes()
        })
        .map(|(n, _)| n.clone())
        .collect();
    g.extras.sparse_initializers.extend(names);
    m.save(path)?;
    Ok(std::fs::metadata(path)?.len())
}

/// Fine-tunes the loaded MLP with gradual pruning to `s`; returns it.
fn retrain<L: DistillLoss + ?Sized>(
    start: &Mlp,
    s: f64,
    loss: &L,
    data: &TrainData<'_>,
) -> Result<Mlp> {
    let mut mlp = start.clone();
    let mut cfg = TrainConfig {
        epochs: 300,
        batch_size: 32,
        optimizer: Optimizer::adam_with_lr(1e-3),
        patience: Some(50),
        seed: SEED,
        ..TrainConfig::default()
    };
    let spe = cfg.steps_per_epoch(data.x.nrows()) as u64;
    let sched = PolynomialDecay::new(0.0, s, 0, 100 * spe)?.with_frequency(spe)?;
    cfg.pruning = Some(PruneDuringTraining::new(s, sched));
    train(&mut mlp, loss, data, &cfg, &mut |_| {})?;
    Ok(mlp)
}

fn main() -> Result<()> {
    let f = fixtures();
    let path = f.join("mlp.onnx");
    let original = Model::load(&path)?;
    let dense = Mlp::from_onnx(&original)?;
    let x_u8: ArrayD<u8> = read_npy(f.join("x_train_u8.npy"))?;
    let x_train = x_u8.mapv(|v| f32::from(v) / 16.0);
    let y_train: ndarray::Array1<i64> = read_npy(f.join("y_train.npy"))?;
    let y_train = y_train.to_vec();
    let x_test: ArrayD<f32> = read_npy(f.join("x_test.npy"))?;
    let y_test: ndarray::Array1<i64> = read_npy(f.join("y_test.npy"))?;
    let y_test = y_test.to_vec();
    let x2: Array2<f32> = x_train.to_shape((x_train.shape()[0], 64))?.to_owned();
    let soft = Teacher::load(&path, TeacherOptions::default())?.predict(x_train.view())?;
    let kd = Kd::new(KdConfig {
        temperature: 2.0,
        soft_weight: 0.5,
        hard_weight: 0.5,
        teacher: soft.kind,
        ..KdConfig::default()
    });
    let data = TrainData {
        x: x2.view(),
        labels: Some(&y_train),
        teacher: Some(soft.values.view()),
    };
    let batches: Vec<ArrayD<f32>> = x_train
        .axis_chunks_iter(Axis(0), 128)
        .map(|c| c.to_owned())
        .collect();
    let dir = std::env::temp_dir().join(format!("edgeml-prune-retrain-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    println!(
        "scikit-learn MLP 64-32-10 ({} parameters), dense test accuracy {:.4}",
        dense.num_params(),
        model_accuracy(&original, &x_test, &y_test)?
    );
    println!(
        "\n| sparsity | one-shot | `--recalibrate` | gradual + retraining (hard labels) | \
         gradual + retraining (KD from the dense MLP) | nonzero parameters | file, sparse storage |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for s in [0.5, 0.7, 0.9] {
        let mut one_shot = original.clone();
        let cfg = PruneConfig {
            sparsity: s,
            ..PruneConfig::default()
        };
        prune_model(&mut one_shot, &cfg)?;
        let mut recal = original.clone();
        prune_model(
            &mut recal,
            &PruneConfig {
                recalibrate: Some(Recalibrate::new(batches.clone())),
                ..cfg
            },
        )?;
        let ce = retrain(&dense, s, &CrossEntropy::default(), &data)?.to_onnx()?;
        let kd_mlp = retrain(&dense, s, &kd, &data)?;
        let kd_model = kd_mlp.to_onnx()?;
        let bytes = sparse_file_bytes(&kd_model, &dir.join("kd.onnx"))?;
        println!(
            "| {s} | {:.4} | {:.4} | {:.4} | {:.4} | {} of {} | {bytes} B |",
            model_accuracy(&one_shot, &x_test, &y_test)?,
            model_accuracy(&recal, &x_test, &y_test)?,
            model_accuracy(&ce, &x_test, &y_test)?,
            model_accuracy(&kd_model, &x_test, &y_test)?,
            kd_mlp.num_nonzero_params(),
            kd_mlp.num_params(),
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

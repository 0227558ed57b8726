//! Knowledge distillation on the bundled digits data: each teacher (the CNN, then the
//! scikit-learn MLP) is run by the edgeml runtime to give soft targets, and a small
//! MLP student at least 4× smaller is trained on them with Hinton's KD loss. The same
//! student (same seed, epochs and optimizer) trained on the hard labels alone is the
//! baseline. Both students are exported to ONNX and re-run by edgeml for the accuracies
//! printed; the distilled student is then quantized to INT8 (`edgeml quantize`'s static
//! QDQ) and run on the INT8 kernels.
//!
//! ```text
//! cargo run --release -p edgeml-examples --example distill_digits
//! ```
//!
//! Data: the students train on the split the teachers were trained on
//! (`tests/fixtures/digits/x_train_u8.npy`, 1347 images, written by
//! `scripts/make_distill_data.py`; 10% of it is held out, seeded, for early stopping)
//! and are scored on `x_test.npy` (450 images neither teachers nor students saw).

use anyhow::{Context, Result};
use edgeml::distill::{
    CrossEntropy, DistillLoss, Kd, KdConfig, Mlp, Optimizer, Teacher, TeacherOptions, TrainConfig,
    TrainData, accuracy, train,
};
use edgeml::onnx::{Model, Plan, PlanOptions, Tensor};
use ndarray::{Array2, ArrayD, Ix2};
use ndarray_npy::read_npy;
use std::path::{Path, PathBuf};
use std::time::Instant;

const SEED: u64 = 7;
const EPOCHS: usize = 500;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/digits")
}

/// Parameters (initializer elements) of an ONNX model.
fn params(m: &Model) -> usize {
    m.graph.initializers.iter().map(|(_, t)| t.len()).sum()
}

/// Accuracy of the ONNX model at `path` (input `x`, first output) run by edgeml.
fn onnx_accuracy(path: &Path, x: &ArrayD<f32>, y: &[i64]) -> Result<f64> {
    let plan = Plan::new(&Model::load(path)?, PlanOptions::default())?;
    let input = plan.inputs()[0].name.clone();
    let out = plan.run(&[(input.as_str(), Tensor::F32(x.clone()))])?;
    let a = out[0].1.as_f32().context("float output")?.clone();
    Ok(accuracy(a.into_dimensionality::<Ix2>()?.view(), y))
}

struct Outcome {
    params: usize,
    bytes: u64,
    accuracy: f64,
}

/// Trains a student with `loss` and scores its exported ONNX file on the test split.
fn student<L: DistillLoss + ?Sized>(
    hidden: &[usize],
    loss: &L,
    data: &TrainData<'_>,
    test: (&ArrayD<f32>, &[i64]),
    out: &Path,
) -> Result<Outcome> {
    let mut mlp = Mlp::new(&[1, 8, 8], hidden, 10, SEED)?;
    let cfg = TrainConfig {
        epochs: EPOCHS,
        batch_size: 32,
        optimizer: Optimizer::adam_with_lr(3e-3),
        patience: Some(100),
        seed: SEED,
        ..TrainConfig::default()
    };
    train(&mut mlp, loss, data, &cfg, &mut |_| {})?;
    mlp.save_onnx(out)?;
    Ok(Outcome {
        params: mlp.num_params(),
        bytes: std::fs::metadata(out)?.len(),
        accuracy: onnx_accuracy(out, test.0, test.1)?,
    })
}

fn case(name: &str, hidden: &[usize], dir: &Path) -> Result<()> {
    let f = fixtures();
    let tpath = f.join(format!("{name}.onnx"));
    let x_u8: ArrayD<u8> = read_npy(f.join("x_train_u8.npy"))?;
    let x_train = x_u8.mapv(|v| f32::from(v) / 16.0);
    let y_train: ndarray::Array1<i64> = read_npy(f.join("y_train.npy"))?;
    let x_test: ArrayD<f32> = read_npy(f.join("x_test.npy"))?;
    let y_test: ndarray::Array1<i64> = read_npy(f.join("y_test.npy"))?;
    let (y_train, y_test) = (y_train.to_vec(), y_test.to_vec());

    let t0 = Instant::now();
    let teacher = Teacher::load(&tpath, TeacherOptions::default())?;
    let soft = teacher.predict(x_train.view())?;
    let teacher_acc = onnx_accuracy(&tpath, &x_test, &y_test)?;
    let teacher_model = Model::load(&tpath)?;
    let x2: Array2<f32> = x_train.to_shape((x_train.shape()[0], 64))?.to_owned();
    let data = TrainData {
        x: x2.view(),
        labels: Some(&y_train),
        teacher: Some(soft.values.view()),
    };
    let kd = Kd::new(KdConfig {
        temperature: 4.0,
        soft_weight: 0.9,
        hard_weight: 0.1,
        teacher: soft.kind,
        ..KdConfig::default()
    });
    let test = (&x_test, y_test.as_slice());
    let kd_out = student(
        hidden,
        &kd,
        &data,
        test,
        &dir.join(format!("{name}_kd.onnx")),
    )?;
    let ce_out = student(
        hidden,
        &CrossEntropy::default(),
        &data,
        test,
        &dir.join(format!("{name}_ce.onnx")),
    )?;
    let t_params = params(&teacher_model);
    let t_bytes = std::fs::metadata(&tpath)?.len();
    println!(
        "teacher {name}: {t_params} parameters, {t_bytes} bytes, test accuracy {teacher_acc:.4}"
    );
    println!(
        "student MLP 64-{hidden:?}-10: {} parameters ({:.2}x fewer), {} bytes ({:.2}x smaller)",
        kd_out.params,
        t_params as f64 / kd_out.params as f64,
        kd_out.bytes,
        t_bytes as f64 / kd_out.bytes as f64
    );
    println!(
        "  distilled (KD, T = {}, w_soft = {}, w_hard = {}): test accuracy {:.4} ({:.1}% of the teacher's)",
        kd.config.temperature,
        kd.config.soft_weight,
        kd.config.hard_weight,
        kd_out.accuracy,
        100.0 * kd_out.accuracy / teacher_acc
    );
    println!(
        "  hard labels only (cross-entropy):       test accuracy {:.4} ({:.1}% of the teacher's)",
        ce_out.accuracy,
        100.0 * ce_out.accuracy / teacher_acc
    );
    // The distilled student quantized to INT8 (static QDQ, per-channel i8 weights,
    // calibrated on 100 training images) and run on the INT8 kernels.
    let kd_path = dir.join(format!("{name}_kd.onnx"));
    let batches: Vec<ArrayD<f32>> = (0..10)
        .map(|b| {
            x_train
                .slice_axis(ndarray::Axis(0), (b * 10..b * 10 + 10).into())
                .to_owned()
        })
        .collect();
    let config = edgeml::quant::quantize::Config {
        per_channel: true,
        ..Default::default()
    };
    let (q, _) =
        edgeml::quant::quantize::quantize_static(&Model::load(&kd_path)?, &batches, &config)?;
    let qpath = dir.join(format!("{name}_kd_int8.onnx"));
    q.save(&qpath)?;
    let q_bytes = std::fs::metadata(&qpath)?.len();
    let q_acc = int8_accuracy(&qpath, &x_test, &y_test)?;
    println!(
        "  distilled student in INT8 (edgeml quantize): {q_bytes} bytes ({:.2}x smaller than \
         the teacher), test accuracy {q_acc:.4} ({:.1}% of the teacher's)",
        t_bytes as f64 / q_bytes as f64,
        100.0 * q_acc / teacher_acc
    );
    println!("  ({:.1} s)", t0.elapsed().as_secs_f64());
    Ok(())
}

/// [`onnx_accuracy`] for a quantized model: its QDQ groups fused onto the INT8 kernels.
fn int8_accuracy(path: &Path, x: &ArrayD<f32>, y: &[i64]) -> Result<f64> {
    let mut m = Model::load(path)?;
    let (registry, _) = edgeml::quant::onnx::prepare(&mut m);
    let plan = Plan::with_registry(&m, PlanOptions::default(), &registry)?;
    let input = plan.inputs()[0].name.clone();
    let out = plan.run(&[(input.as_str(), Tensor::F32(x.clone()))])?;
    let a = out[0].1.as_f32().context("float output")?.clone();
    Ok(accuracy(a.into_dimensionality::<Ix2>()?.view(), y))
}

fn main() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("edgeml-distill-digits-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // The CNN has only 1370 parameters: 4x fewer leaves one hidden layer of 4 units.
    // For comparison, a CNN student that is not 4x smaller (16 hidden units).
    let r = case("cnn", &[4], &dir)
        .and_then(|()| case("cnn", &[16], &dir))
        .and_then(|()| case("mlp", &[7], &dir));
    let _ = std::fs::remove_dir_all(&dir);
    r
}

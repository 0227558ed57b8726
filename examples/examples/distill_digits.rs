//! Knowledge distillation on the bundled digits data: each teacher (the CNN, then the
//! scikit-learn MLP) is run by the edgeml runtime to give soft targets, and a small
//! MLP student at least 4× smaller is trained on them with Hinton's KD loss. The same
//! student (same seed, epochs and optimizer) trained on the hard labels alone is the
//! baseline. Both students are exported to ONNX and re-run by edgeml for the accuracies
//! printed; the distilled student is then quantized to INT8 (`edgeml quantize`'s static
//! QDQ) and run on the INT8 kernels.
//!
//! For the CNN teacher, whose 1370 parameters leave a dense 4×-smaller student only 4
//! hidden units, wider students (64-32-10, 64-16-10) are also pruned while they train
//! (`TrainConfig::pruning`, TF-MOT's `PolynomialDecay` from `edgeml-prune`) to the
//! sparsity that leaves at most 1370 / 4 nonzero parameters, biases included. These
//! rows are run twice: on the training images alone, and on a *transfer set* — the
//! training images plus their four 1-pixel shifts (up, down, left, right, zero fill),
//! which the teacher labels (run by the edgeml runtime like the originals); the
//! hard-label baseline then trains on the same shifted images with the labels of the
//! images they were shifted from. Pruned files are written with weights as COO
//! `sparse_initializer` where that is smaller (the rule of `edgeml prune
//! --sparse-storage`).
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
    CrossEntropy, DistillLoss, Kd, KdConfig, Mlp, Optimizer, PruneDuringTraining, Teacher,
    TeacherOptions, TrainConfig, TrainData, accuracy, train,
};
use edgeml::onnx::{Model, Plan, PlanOptions, Tensor};
use edgeml::prune::PolynomialDecay;
use ndarray::{Array2, ArrayD, Ix2};
use ndarray_npy::read_npy;
use std::path::{Path, PathBuf};
use std::time::Instant;

const SEED: u64 = 7;
const EPOCHS: usize = 500;
/// Pruning ramps the sparsity from 0 to its target over these first epochs.
const PRUNE_EPOCHS: u64 = 100;
/// The nonzero-parameter budget of a pruned CNN student: a quarter of the teacher's.
const BUDGET: usize = 1370 / 4;

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
    /// Nonzero parameters (all of them for a dense student).
    params: usize,
    bytes: u64,
    accuracy: f64,
}

/// The smallest sparsity (in steps of 0.001) at which a student with these hidden
/// widths keeps at most [`BUDGET`] nonzero parameters: each weight matrix of `n`
/// loses `round(s·n)` weights, biases stay.
fn sparsity_for(hidden: &[usize]) -> f64 {
    let mut sizes = vec![64];
    sizes.extend_from_slice(hidden);
    sizes.push(10);
    let kept = |s: f64| -> usize {
        sizes
            .windows(2)
            .map(|w| w[0] * w[1] - (s * (w[0] * w[1]) as f64).round_ties_even() as usize + w[1])
            .sum()
    };
    (0..1000)
        .map(|i| f64::from(i) / 1000.0)
        .find(|&s| kept(s) <= BUDGET)
        .unwrap_or(0.999)
}

/// Trains a student with `loss` (pruned to `sparsity` if given) and scores its
/// exported ONNX file on the test split.
fn student<L: DistillLoss + ?Sized>(
    hidden: &[usize],
    sparsity: Option<f64>,
    seed: u64,
    loss: &L,
    data: &TrainData<'_>,
    test: (&ArrayD<f32>, &[i64]),
    out: &Path,
) -> Result<Outcome> {
    let mut mlp = Mlp::new(&[1, 8, 8], hidden, 10, seed)?;
    let mut cfg = TrainConfig {
        epochs: EPOCHS,
        batch_size: 32,
        optimizer: Optimizer::adam_with_lr(3e-3),
        patience: Some(100),
        seed,
        ..TrainConfig::default()
    };
    if let Some(s) = sparsity {
        let spe = cfg.steps_per_epoch(data.x.nrows()) as u64;
        let sched = PolynomialDecay::new(0.0, s, 0, PRUNE_EPOCHS * spe)?.with_frequency(spe)?;
        cfg.pruning = Some(PruneDuringTraining::new(s, sched));
    }
    train(&mut mlp, loss, data, &cfg, &mut |_| {})?;
    let mut model = mlp.to_onnx()?;
    if sparsity.is_some() {
        model.graph.store_sparse_where_smaller();
    }
    model.save(out)?;
    Ok(Outcome {
        params: mlp.num_nonzero_params(),
        bytes: std::fs::metadata(out)?.len(),
        accuracy: onnx_accuracy(out, test.0, test.1)?,
    })
}

/// The images and their four 1-pixel shifts (zero fill), `[5·N, 1, 8, 8]`, with the
/// labels repeated.
fn with_shifts(x: &ArrayD<f32>, y: &[i64]) -> Result<(ArrayD<f32>, Vec<i64>)> {
    let n = x.shape()[0];
    let x3 = x.to_shape((n, 8, 8))?;
    let mut out = x3.to_owned().into_raw_vec_and_offset().0;
    for (dr, dc) in [(-1i32, 0i32), (1, 0), (0, -1), (0, 1)] {
        for img in x3.outer_iter() {
            for r in 0..8i32 {
                for c in 0..8i32 {
                    let (sr, sc) = (r - dr, c - dc);
                    let inside = (0..8).contains(&sr) && (0..8).contains(&sc);
                    out.push(if inside {
                        img[[sr as usize, sc as usize]]
                    } else {
                        0.0
                    });
                }
            }
        }
    }
    let labels = (0..5).flat_map(|_| y.iter().copied()).collect();
    Ok((ArrayD::from_shape_vec(vec![5 * n, 1, 8, 8], out)?, labels))
}

/// How a student is built: dense, or pruned to the parameter budget, on the training
/// images or on the transfer set.
#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Dense,
    Pruned,
    PrunedTransfer,
}

fn case(name: &str, hidden: &[usize], variant: Variant, dir: &Path) -> Result<()> {
    let f = fixtures();
    let tpath = f.join(format!("{name}.onnx"));
    let x_u8: ArrayD<u8> = read_npy(f.join("x_train_u8.npy"))?;
    let x_train = x_u8.mapv(|v| f32::from(v) / 16.0);
    let y_train: ndarray::Array1<i64> = read_npy(f.join("y_train.npy"))?;
    let (x_train, y_train) = if variant == Variant::PrunedTransfer {
        with_shifts(&x_train, y_train.as_slice().context("labels")?)?
    } else {
        (x_train, y_train.to_vec())
    };
    let sparsity = (variant != Variant::Dense).then(|| sparsity_for(hidden));
    let tag = match variant {
        Variant::Dense => format!("{name}_{}", hidden[0]),
        Variant::Pruned => format!("{name}_{}_pruned", hidden[0]),
        Variant::PrunedTransfer => format!("{name}_{}_pruned_transfer", hidden[0]),
    };
    let x_test: ArrayD<f32> = read_npy(f.join("x_test.npy"))?;
    let y_test: ndarray::Array1<i64> = read_npy(f.join("y_test.npy"))?;
    let y_test = y_test.to_vec();

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
    let kd_path = dir.join(format!("{tag}_kd.onnx"));
    let kd_out = student(hidden, sparsity, SEED, &kd, &data, test, &kd_path)?;
    let ce_out = student(
        hidden,
        sparsity,
        SEED,
        &CrossEntropy::default(),
        &data,
        test,
        &dir.join(format!("{tag}_ce.onnx")),
    )?;
    let t_params = params(&teacher_model);
    let t_bytes = std::fs::metadata(&tpath)?.len();
    println!(
        "teacher {name}: {t_params} parameters, {t_bytes} bytes, test accuracy {teacher_acc:.4}"
    );
    if variant == Variant::PrunedTransfer {
        let n = y_train.len() / 5;
        println!(
            "  teacher accuracy against the labels: {:.4} on the training images, {:.4} on \
             their shifts",
            accuracy(soft.values.slice(ndarray::s![..n, ..]), &y_train[..n]),
            accuracy(soft.values.slice(ndarray::s![n.., ..]), &y_train[n..])
        );
    }
    let how = match (variant, sparsity) {
        (Variant::Dense, _) | (_, None) => String::new(),
        (v, Some(s)) => format!(
            ", weights pruned to sparsity {s} while training{}",
            if v == Variant::PrunedTransfer {
                ", on the transfer set (5x the training images)"
            } else {
                ""
            }
        ),
    };
    println!(
        "student MLP 64-{hidden:?}-10{how}: {} nonzero parameters ({:.2}x fewer), KD file \
         {} bytes ({:.2}x smaller)",
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
    if variant == Variant::Pruned {
        // One seed decides little at this size: the same pair over seeds 1..=5 too.
        let mut kd_accs = vec![kd_out.accuracy];
        let mut ce_accs = vec![ce_out.accuracy];
        for seed in 1..=5 {
            let p = dir.join(format!("{tag}_seed.onnx"));
            kd_accs.push(student(hidden, sparsity, seed, &kd, &data, test, &p)?.accuracy);
            let ce = CrossEntropy::default();
            ce_accs.push(student(hidden, sparsity, seed, &ce, &data, test, &p)?.accuracy);
        }
        let wins = kd_accs.iter().zip(&ce_accs).filter(|(k, c)| k > c).count();
        println!(
            "  seeds 7, 1-5: KD mean {:.4} (min {:.4}, max {:.4}), hard labels mean {:.4} \
             (min {:.4}, max {:.4}); KD ahead on {wins} of 6",
            mean(&kd_accs),
            min(&kd_accs),
            max(&kd_accs),
            mean(&ce_accs),
            min(&ce_accs),
            max(&ce_accs)
        );
    }
    // The distilled student quantized to INT8 (static QDQ, per-channel i8 weights,
    // calibrated on 100 training images) and run on the INT8 kernels.
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
    let qpath = dir.join(format!("{tag}_kd_int8.onnx"));
    q.save(&qpath)?;
    let mut q_bytes = std::fs::metadata(&qpath)?.len();
    let mut storage = "";
    if sparsity.is_some() {
        // COO costs 8 index bytes per nonzero: for 1-byte weights it only pays below
        // 1/9 density.
        let mut qs = q.clone();
        if qs.graph.store_sparse_where_smaller() > 0 {
            let spath = dir.join(format!("{tag}_kd_int8_sparse.onnx"));
            qs.save(&spath)?;
            let s_bytes = std::fs::metadata(&spath)?.len();
            println!("  (INT8 with sparse storage: {s_bytes} bytes, dense: {q_bytes} bytes)");
            if s_bytes < q_bytes {
                q_bytes = s_bytes;
                storage = "; sparse storage";
            }
        } else {
            storage = "; dense storage: COO would be larger";
        }
    }
    let q_acc = int8_accuracy(&qpath, &x_test, &y_test)?;
    println!(
        "  distilled student in INT8 (edgeml quantize{storage}): {q_bytes} bytes ({:.2}x \
         smaller than the teacher), test accuracy {q_acc:.4} ({:.1}% of the teacher's)",
        t_bytes as f64 / q_bytes as f64,
        100.0 * q_acc / teacher_acc
    );
    println!("  ({:.1} s)", t0.elapsed().as_secs_f64());
    Ok(())
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
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
    // For comparison, a CNN student that is not 4x smaller (16 hidden units); then
    // wider students pruned to a quarter of the CNN's parameters.
    let r = (|| {
        case("cnn", &[4], Variant::Dense, &dir)?;
        case("cnn", &[16], Variant::Dense, &dir)?;
        for v in [Variant::Pruned, Variant::PrunedTransfer] {
            case("cnn", &[32], v, &dir)?;
            case("cnn", &[16], v, &dir)?;
        }
        case("mlp", &[7], Variant::Dense, &dir)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    r
}

//! `edgeml distill`: train a small MLP student on an ONNX teacher's soft targets and
//! write it as ONNX, optionally pruning its weights gradually while it trains.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail, ensure};
use edgeml_distill::{
    CrossEntropy, EpochMetrics, Kd, KdConfig, Mlp, Optimizer, PruneDuringTraining, Teacher,
    TeacherOptions, TrainConfig, TrainData, train,
};
use edgeml_prune::PolynomialDecay;
use ndarray::{Array1, Array2, ArrayD};
use ndarray_npy::read_npy;

/// Arguments of `edgeml distill`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The teacher ONNX model (one input).
    #[arg(long)]
    teacher: PathBuf,
    /// Training inputs: a float32 `.npy` of shape [N, ...] (the shape the teacher takes).
    #[arg(long)]
    data: PathBuf,
    /// Hard labels: an int64 `.npy` of shape [N]. Without them only the soft term is
    /// trained and no accuracy is reported.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// The teacher output to distill from (default: its last 2-D float output).
    #[arg(long, value_name = "NAME")]
    teacher_output: Option<String>,
    /// Hidden layer widths of the student, e.g. `64,32`.
    #[arg(long, value_delimiter = ',', required = true)]
    hidden: Vec<usize>,
    /// Distillation temperature T.
    #[arg(long, default_value_t = 2.0)]
    temperature: f32,
    /// Weight of the soft (KL) term, multiplied by T².
    #[arg(long, default_value_t = 0.25)]
    soft_weight: f32,
    /// Weight of the hard-label cross-entropy (ignored without --labels).
    #[arg(long, default_value_t = 0.75)]
    hard_weight: f32,
    /// Train on the hard labels alone (cross-entropy; the teacher only gives the
    /// agreement metric): the baseline distillation is compared with.
    #[arg(long)]
    hard_labels_only: bool,
    /// Epochs (at most, with early stopping).
    #[arg(long, default_value_t = 100)]
    epochs: usize,
    /// Samples per step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// The optimizer.
    #[arg(long, value_parser = ["adam", "sgd"], default_value = "adam")]
    optimizer: String,
    /// Learning rate (Adam's default 1e-3; 0.01 is a common start for SGD).
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    /// L2 weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
    /// Fraction of the samples held out for the metrics and early stopping.
    #[arg(long, default_value_t = 0.1)]
    validation: f32,
    /// Stop after this many epochs without a better held-out loss (0: never).
    #[arg(long, default_value_t = 10)]
    patience: usize,
    /// Standardise the inputs (per-feature mean and deviation, exported as Sub/Div).
    #[arg(long)]
    standardize: bool,
    /// Seed of the initialisation, split and shuffles.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Prune this fraction in [0, 1) of each weight matrix (biases are kept) while the
    /// student trains: layer-wise magnitude masks, recomputed on TF-MOT's
    /// PolynomialDecay schedule (power 3, from sparsity 0) from the first step after
    /// --prune-begin-epoch to the last mask update within --prune-end-epoch, which is
    /// at S. Early stopping and the restored best epoch only consider epochs at S.
    #[arg(long, value_name = "S")]
    sparsity: Option<f64>,
    /// Epochs trained dense before pruning starts.
    #[arg(long, value_name = "E", default_value_t = 0, requires = "sparsity")]
    prune_begin_epoch: usize,
    /// The (1-based) epoch by whose end the sparsity is S [default: half of --epochs,
    /// at least --prune-begin-epoch + 2].
    #[arg(long, value_name = "F", requires = "sparsity")]
    prune_end_epoch: Option<usize>,
    /// Optimizer steps between mask updates [default: one epoch's steps].
    #[arg(long, value_name = "STEPS", requires = "sparsity")]
    prune_frequency: Option<u64>,
    /// Cache the teacher's outputs in this `.npy` file (read when it matches the data).
    #[arg(long, value_name = "FILE.npy")]
    cache: Option<PathBuf>,
    /// Threads running the teacher (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Where to write the student ONNX model (atomically).
    #[arg(short, long)]
    output: PathBuf,
}

pub(crate) fn main(a: Args) -> anyhow::Result<()> {
    let x: ArrayD<f32> = read_npy(&a.data)
        .with_context(|| format!("{}: not a C-order float32 .npy", a.data.display()))?;
    ensure!(
        x.ndim() >= 2,
        "{}: the data must be [N, features...], got shape {:?}",
        a.data.display(),
        x.shape()
    );
    let n = x.shape()[0];
    let labels: Option<Vec<i64>> = match &a.labels {
        Some(p) => {
            let y: Array1<i64> =
                read_npy(p).with_context(|| format!("{}: not a 1-D int64 .npy", p.display()))?;
            ensure!(
                y.len() == n,
                "{} has {} labels for {n} samples in {}",
                p.display(),
                y.len(),
                a.data.display()
            );
            Some(y.to_vec())
        }
        None => None,
    };
    if a.hard_labels_only && labels.is_none() {
        bail!("--hard-labels-only needs --labels");
    }
    let opts = TeacherOptions {
        output: a.teacher_output.clone(),
        threads: a.threads,
        ..TeacherOptions::default()
    };
    let teacher = Teacher::load(&a.teacher, opts)
        .with_context(|| format!("teacher {}", a.teacher.display()))?;
    let soft = match &a.cache {
        Some(c) => teacher.predict_cached(x.view(), c)?,
        None => teacher.predict(x.view())?,
    };
    let classes = soft.classes();
    outln!(
        "teacher: {} classes ({:?}) on {n} samples",
        classes,
        soft.kind
    );
    let x2: Array2<f32> = x.to_shape((n, x.len() / n.max(1)))?.to_owned();
    let mut mlp = Mlp::new(&x.shape()[1..], &a.hidden, classes, a.seed)?;
    if a.standardize {
        mlp.fit_standardization(x2.view())?;
    }
    let optimizer = match a.optimizer.as_str() {
        "sgd" => Optimizer::Sgd {
            lr: a.lr,
            momentum: a.momentum,
        },
        _ => Optimizer::adam_with_lr(a.lr),
    };
    let mut cfg = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        optimizer,
        weight_decay: a.weight_decay,
        validation_fraction: a.validation,
        patience: (a.patience > 0).then_some(a.patience),
        seed: a.seed,
        pruning: None,
    };
    if let Some(s) = a.sparsity {
        let spe = cfg.steps_per_epoch(n) as u64;
        let begin = a.prune_begin_epoch;
        let end = a.prune_end_epoch.unwrap_or((a.epochs / 2).max(begin + 2));
        ensure!(
            begin < end && end <= a.epochs,
            "pruning must start before it ends and end within --epochs {}, got epochs {begin} to {end}",
            a.epochs
        );
        // Mask updates at the steps b + j·frequency (b: the first step of epoch
        // begin + 1); the ramp ends at the last of them within epoch `end`.
        let frequency = a.prune_frequency.unwrap_or(spe).max(1);
        let b = begin as u64 * spe;
        let e = b + (end as u64 * spe - 1 - b) / frequency * frequency;
        ensure!(
            e > b,
            "no mask update after the first one between epochs {} and {end}: lower \
             --prune-frequency or --prune-begin-epoch, or raise --prune-end-epoch",
            begin + 1
        );
        let schedule = PolynomialDecay::new(0.0, s, b, e)?.with_frequency(frequency)?;
        cfg.pruning = Some(PruneDuringTraining::new(s, schedule));
    }
    let data = TrainData {
        x: x2.view(),
        labels: labels.as_deref(),
        teacher: Some(soft.values.view()),
    };
    let bar = indicatif::ProgressBar::new(a.epochs as u64);
    let mut write_err = None;
    let mut on_epoch = |m: &EpochMetrics| {
        bar.inc(1);
        let line = metrics_line(m, a.epochs);
        bar.suspend(|| {
            if let Err(e) = writeln!(std::io::stdout().lock(), "{line}") {
                write_err.get_or_insert(e);
            }
        });
    };
    let report = if a.hard_labels_only {
        train(
            &mut mlp,
            &CrossEntropy::default(),
            &data,
            &cfg,
            &mut on_epoch,
        )?
    } else {
        let kd = Kd::new(KdConfig {
            temperature: a.temperature,
            soft_weight: a.soft_weight,
            hard_weight: if labels.is_some() { a.hard_weight } else { 0.0 },
            teacher: soft.kind,
            ..KdConfig::default()
        });
        train(&mut mlp, &kd, &data, &cfg, &mut on_epoch)?
    };
    bar.finish_and_clear();
    if let Some(e) = write_err {
        return Err(e.into());
    }
    mlp.save_onnx(&a.output)
        .with_context(|| format!("writing {}", a.output.display()))?;
    let bytes = std::fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
    if let Some(s) = report.sparsity {
        outln!(
            "pruned: {:.1}% of the weights, {} of {} parameters nonzero",
            100.0 * s,
            mlp.num_nonzero_params(),
            mlp.num_params()
        );
    }
    outln!(
        "student: {} parameters, {} bytes -> {} (epoch {} of {}{})",
        mlp.num_params(),
        bytes,
        a.output.display(),
        report.best_epoch,
        report.history.len(),
        if report.stopped_early {
            ", stopped early"
        } else {
            ""
        }
    );
    Ok(())
}

fn metrics_line(m: &EpochMetrics, epochs: usize) -> String {
    let mut s = format!("epoch {:>4}/{epochs}  loss {:.5}", m.epoch, m.train_loss);
    if let Some(v) = m.val_loss {
        s += &format!("  val_loss {v:.5}");
    }
    if let Some(v) = m.val_accuracy {
        s += &format!("  val_acc {v:.4}");
    }
    if let Some(v) = m.val_agreement {
        s += &format!("  agreement {v:.4}");
    }
    if let Some(v) = m.sparsity {
        s += &format!("  sparsity {v:.4}");
    }
    s
}

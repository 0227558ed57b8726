//! Mini-batch training of an [`Mlp`] with any [`DistillLoss`]: SGD with momentum or
//! Adam, weight decay, a seeded held-out split, early stopping and optional gradual
//! magnitude pruning.

use edgeml_core::{DistillLoss, Targets};
use ndarray::{Array2, ArrayView2, Axis};

use crate::error::{Error, Result, check_len};
use crate::mlp::Mlp;
use crate::prune::{Masks, PruneDuringTraining};
use crate::rng::SplitMix64;

/// The parameter update rule. Both add `weight_decay·p` to the gradient first (L2, as
/// PyTorch's `weight_decay`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    /// `buf = momentum·buf + g; p −= lr·buf` (PyTorch's `SGD`, no dampening or
    /// Nesterov).
    Sgd {
        /// Learning rate.
        lr: f32,
        /// Momentum factor in `[0, 1)`.
        momentum: f32,
    },
    /// Adam (Kingma & Ba) with bias correction, as PyTorch's `Adam`.
    Adam {
        /// Learning rate.
        lr: f32,
        /// Decay of the first moment.
        beta1: f32,
        /// Decay of the second moment.
        beta2: f32,
        /// Added to `√v̂`.
        eps: f32,
    },
}

impl Optimizer {
    /// Adam with PyTorch's defaults: `lr = 1e-3`, `betas = (0.9, 0.999)`, `eps = 1e-8`.
    pub fn adam() -> Self {
        Optimizer::Adam {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// Adam with PyTorch's defaults and learning rate `lr`.
    pub fn adam_with_lr(lr: f32) -> Self {
        match Optimizer::adam() {
            Optimizer::Adam {
                beta1, beta2, eps, ..
            } => Optimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
            },
            other => other,
        }
    }

    fn check(&self) -> Result<()> {
        let ok = match *self {
            Optimizer::Sgd { lr, momentum } => {
                lr.is_finite() && lr > 0.0 && (0.0..1.0).contains(&momentum)
            }
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
            } => {
                lr.is_finite()
                    && lr > 0.0
                    && (0.0..1.0).contains(&beta1)
                    && (0.0..1.0).contains(&beta2)
                    && eps.is_finite()
                    && eps > 0.0
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "optimizer {self:?} is out of its domain"
            )))
        }
    }
}

impl Default for Optimizer {
    /// [`Optimizer::adam`].
    fn default() -> Self {
        Optimizer::adam()
    }
}

/// Options of [`train`]. `Default`: 100 epochs of batches of 64 with Adam (PyTorch's
/// defaults), no weight decay, 10% of the samples held out, patience 10, seed 0, no
/// pruning.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training samples (at most, with early stopping).
    pub epochs: usize,
    /// Samples per step (the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// The update rule.
    pub optimizer: Optimizer,
    /// L2 penalty coefficient `≥ 0` added to the gradient.
    pub weight_decay: f32,
    /// The fraction in `[0, 1)` of the samples held out (chosen by the seed) for the
    /// per-epoch metrics and early stopping; 0 trains on everything.
    pub validation_fraction: f32,
    /// Stop after this many epochs without a lower held-out loss and restore the best
    /// parameters; `None` runs every epoch (the best parameters are still restored).
    pub patience: Option<usize>,
    /// Seed of the split and the shuffles; the same seed gives the same result.
    pub seed: u64,
    /// Gradual magnitude pruning of the weight matrices during training (see
    /// [`PruneDuringTraining`]); `None` trains a dense network.
    pub pruning: Option<PruneDuringTraining>,
}

impl TrainConfig {
    /// The optimizer steps of one epoch on `samples` samples: the samples left after
    /// the held-out split (`round(samples·validation_fraction)` of them), in batches
    /// of `batch_size`. Pruning schedules count these steps.
    pub fn steps_per_epoch(&self, samples: usize) -> usize {
        let n_val = (samples as f64 * f64::from(self.validation_fraction)).round() as usize;
        samples
            .saturating_sub(n_val)
            .div_ceil(self.batch_size.max(1))
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 100,
            batch_size: 64,
            optimizer: Optimizer::default(),
            weight_decay: 0.0,
            validation_fraction: 0.1,
            patience: Some(10),
            seed: 0,
            pruning: None,
        }
    }
}

/// The training samples: inputs `[samples, inputs]` and the targets the loss reads.
#[derive(Debug, Clone, Copy)]
pub struct TrainData<'a> {
    /// Inputs, one flattened sample per row.
    pub x: ArrayView2<'a, f32>,
    /// Hard labels, one per sample.
    pub labels: Option<&'a [i64]>,
    /// The teacher's outputs `[samples, classes]` (logits, probabilities or
    /// log-probabilities, as the loss is configured).
    pub teacher: Option<ArrayView2<'a, f32>>,
}

/// Metrics of one epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// The loss on the held-out samples.
    pub val_loss: Option<f64>,
    /// Held-out accuracy against the hard labels (when given).
    pub val_accuracy: Option<f64>,
    /// Held-out fraction of samples where the student's top class is the teacher's
    /// (when the teacher is given).
    pub val_agreement: Option<f64>,
    /// With pruning: the fraction of weight-matrix entries pruned at the end of the
    /// epoch.
    pub sparsity: Option<f64>,
}

/// What [`train`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// The metrics of every epoch run.
    pub history: Vec<EpochMetrics>,
    /// The epoch whose parameters the network holds now (lowest held-out loss, or the
    /// last epoch without a held-out split; with pruning, among the epochs at the
    /// target sparsity only).
    pub best_epoch: usize,
    /// Whether early stopping ended training before `epochs`.
    pub stopped_early: bool,
    /// With pruning: the fraction of weight-matrix entries pruned in the network
    /// returned (the target, exactly: `round(sparsity·n)` of each layer's `n`).
    pub sparsity: Option<f64>,
}

/// Trains `mlp` on `data` with `loss`, calling `on_epoch` after each epoch.
///
/// Each epoch shuffles the training samples (seeded), and for each batch back-propagates
/// the loss's gradient with respect to the logits ([`Mlp::loss_and_grad`]) and applies
/// the optimizer. With a held-out split the parameters of the epoch with the lowest
/// held-out loss are restored at the end.
///
/// With [`TrainConfig::pruning`], the weight matrices are pruned on the schedule as
/// [`PruneDuringTraining`] describes. Only epochs that end at the target sparsity are
/// candidates for the best epoch, and the patience of early stopping counts from the
/// first of them: a network restored from the ramp would be less sparse than asked.
///
/// # Errors
/// Configuration out of its domain (including a pruning schedule that does not reach
/// its target sparsity within `epochs`), length mismatches between `x`, labels and
/// teacher, a teacher whose width is not the student's class count, and whatever the
/// loss refuses (labels out of range, non-finite values).
pub fn train<L: DistillLoss + ?Sized>(
    mlp: &mut Mlp,
    loss: &L,
    data: &TrainData<'_>,
    cfg: &TrainConfig,
    on_epoch: &mut dyn FnMut(&EpochMetrics),
) -> Result<TrainReport> {
    cfg.optimizer.check()?;
    if cfg.batch_size == 0 || cfg.epochs == 0 {
        return Err(Error::InvalidArgument(
            "epochs and batch_size must be positive".into(),
        ));
    }
    if !(cfg.weight_decay.is_finite() && cfg.weight_decay >= 0.0) {
        return Err(Error::InvalidArgument(format!(
            "weight_decay {}",
            cfg.weight_decay
        )));
    }
    if !(0.0..1.0).contains(&cfg.validation_fraction) {
        return Err(Error::InvalidArgument(format!(
            "validation_fraction {} is not in [0, 1)",
            cfg.validation_fraction
        )));
    }
    let n = data.x.nrows();
    if let Some(y) = data.labels {
        check_len("labels", y.len(), n)?;
    }
    if let Some(t) = data.teacher {
        check_len("teacher rows", t.nrows(), n)?;
        if t.ncols() != mlp.classes() {
            return Err(Error::ClassMismatch {
                student: mlp.classes(),
                teacher: t.ncols(),
            });
        }
    }
    let mut rng = SplitMix64::new(cfg.seed);
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let n_val = (n as f64 * f64::from(cfg.validation_fraction)).round() as usize;
    let (val_idx, train_idx) = order.split_at(n_val);
    if train_idx.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{n} samples leave none to train on"
        )));
    }
    let val = Subset::gather(data, val_idx);
    let mut train_idx = train_idx.to_vec();
    let mut masks = match &cfg.pruning {
        Some(p) => {
            let m = Masks::new(p, mlp)?;
            let steps =
                (cfg.epochs as u64).saturating_mul(train_idx.len().div_ceil(cfg.batch_size) as u64);
            m.check_reaches_target(steps, p.sparsity)?;
            Some(m)
        }
        None => None,
    };
    let mut step = 0u64;
    let mut state = OptState::new(mlp.num_params());
    let mut grad = vec![0.0f32; mlp.num_params()];
    let mut best = (f64::INFINITY, 0usize, mlp.params().to_vec());
    let mut history = Vec::new();
    let mut stopped_early = false;
    for epoch in 1..=cfg.epochs {
        rng.shuffle(&mut train_idx);
        let (mut sum, mut steps) = (0.0, 0usize);
        for idx in train_idx.chunks(cfg.batch_size) {
            let b = Subset::gather(data, idx);
            let v = mlp.loss_and_grad(b.x.view(), loss, &b.targets(), &mut grad)?;
            if let Some(m) = &masks {
                m.mask_gradient(&mut grad);
            }
            state.step(&cfg.optimizer, cfg.weight_decay, mlp.params_mut(), &grad);
            if let Some(m) = &mut masks {
                m.after_update(step, mlp.params_mut(), &mut [&mut state.m, &mut state.v]);
            }
            step += 1;
            sum += v;
            steps += 1;
        }
        let mut m = EpochMetrics {
            epoch,
            train_loss: sum / steps as f64,
            val_loss: None,
            val_accuracy: None,
            val_agreement: None,
            sparsity: masks.as_ref().map(Masks::sparsity),
        };
        if n_val > 0 {
            let logits = mlp.logits(val.x.view())?;
            let mut scratch = vec![0.0f32; logits.len()];
            let flat = logits.as_slice().unwrap_or(&[]);
            let v = loss.loss_and_grad(flat, n_val, mlp.classes(), &val.targets(), &mut scratch)?;
            m.val_loss = Some(v);
            m.val_accuracy = val.labels.as_deref().map(|y| accuracy(logits.view(), y));
            m.val_agreement = val
                .teacher
                .as_ref()
                .map(|t| agreement(logits.view(), t.view()));
        }
        history.push(m);
        on_epoch(&m);
        if !masks.as_ref().is_none_or(Masks::at_target) {
            continue;
        }
        let score = m.val_loss.unwrap_or(f64::NEG_INFINITY);
        if score < best.0 || n_val == 0 || (masks.is_some() && best.1 == 0) {
            best = (score, epoch, mlp.params().to_vec());
        } else if cfg.patience.is_some_and(|p| epoch - best.1 >= p) {
            stopped_early = epoch < cfg.epochs;
            break;
        }
    }
    let sparsity = match (&masks, best.1) {
        (None, _) => None,
        // unreachable after `check_reaches_target`: the last epoch is at the target
        (Some(_), 0) => {
            return Err(Error::InvalidArgument(
                "no epoch ended at the target sparsity".into(),
            ));
        }
        (Some(m), _) => Some(m.target_sparsity()),
    };
    mlp.params_mut().copy_from_slice(&best.2);
    Ok(TrainReport {
        history,
        best_epoch: best.1,
        stopped_early,
        sparsity,
    })
}

/// The fraction of rows whose top logit is the label.
pub fn accuracy(logits: ArrayView2<'_, f32>, labels: &[i64]) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    let hits = logits
        .rows()
        .into_iter()
        .zip(labels)
        .filter(|(r, y)| i64::try_from(argmax_iter(r.iter())).ok() == Some(**y))
        .count();
    hits as f64 / labels.len() as f64
}

/// The fraction of rows where `a` and `b` have the same top class.
pub fn agreement(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> f64 {
    if a.nrows() == 0 {
        return 0.0;
    }
    let same = a
        .rows()
        .into_iter()
        .zip(b.rows())
        .filter(|(x, y)| argmax_iter(x.iter()) == argmax_iter(y.iter()))
        .count();
    same as f64 / a.nrows() as f64
}

/// The index of the largest value (the first one on ties).
pub fn argmax(row: &[f32]) -> usize {
    argmax_iter(row.iter())
}

fn argmax_iter<'a>(row: impl Iterator<Item = &'a f32>) -> usize {
    let (mut best, mut max) = (0, f32::NEG_INFINITY);
    for (i, &v) in row.enumerate() {
        if v > max || i == 0 {
            (best, max) = (i, v);
        }
    }
    best
}

/// Rows of the data gathered into owned buffers.
struct Subset {
    x: Array2<f32>,
    labels: Option<Vec<i64>>,
    teacher: Option<Array2<f32>>,
}

impl Subset {
    fn gather(d: &TrainData<'_>, idx: &[usize]) -> Subset {
        Subset {
            x: d.x.select(Axis(0), idx),
            labels: d.labels.map(|y| idx.iter().map(|&i| y[i]).collect()),
            teacher: d.teacher.map(|t| t.select(Axis(0), idx)),
        }
    }

    fn targets(&self) -> Targets<'_> {
        let mut t = Targets::default();
        t.teacher = self.teacher.as_ref().and_then(|t| t.as_slice());
        t.labels = self.labels.as_deref();
        t
    }
}

/// Moment buffers of the optimizer.
struct OptState {
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl OptState {
    fn new(n: usize) -> Self {
        OptState {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    fn step(&mut self, opt: &Optimizer, wd: f32, p: &mut [f32], g: &[f32]) {
        self.t += 1;
        match *opt {
            Optimizer::Sgd { lr, momentum } => {
                for ((p, &g), b) in p.iter_mut().zip(g).zip(&mut self.m) {
                    *b = momentum * *b + g + wd * *p;
                    *p -= lr * *b;
                }
            }
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
            } => {
                let c1 = 1.0 - beta1.powi(self.t);
                let c2 = 1.0 - beta2.powi(self.t);
                for (((p, &g), m), v) in p.iter_mut().zip(g).zip(&mut self.m).zip(&mut self.v) {
                    let g = g + wd * *p;
                    *m = beta1 * *m + (1.0 - beta1) * g;
                    *v = beta2 * *v + (1.0 - beta2) * g * g;
                    *p -= lr * (*m / c1) / ((*v / c2).sqrt() + eps);
                }
            }
        }
    }
}

//! The distillation-loss capability: a loss with its exact gradient, and a weighted sum.

use alloc::boxed::Box;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use crate::{Error, ErrorKind, Result};

/// What a distillation loss compares the student's output with, for one batch.
///
/// Every slice is row-major with one row per sample: `teacher` holds `batch` rows of
/// teacher outputs (logits, probabilities, log-probabilities or features, as the loss
/// is configured), `labels` one class index per sample, `sample_weights` one
/// non-negative weight per sample (a 0/1 padding mask is a special case). Losses that
/// do not use a field ignore it; losses that need one report its absence as an error.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct Targets<'a> {
    /// Teacher outputs, `batch` rows.
    pub teacher: Option<&'a [f32]>,
    /// Hard labels, one per sample (class indices; negative values are allowed as an
    /// ignore index).
    pub labels: Option<&'a [i64]>,
    /// Per-sample weights, one per sample; `None` weighs every sample 1.
    pub sample_weights: Option<&'a [f32]>,
}

impl<'a> Targets<'a> {
    /// Targets holding only the teacher's outputs.
    pub fn teacher(teacher: &'a [f32]) -> Self {
        Targets {
            teacher: Some(teacher),
            ..Targets::default()
        }
    }

    /// Targets holding only hard labels.
    pub fn labels(labels: &'a [i64]) -> Self {
        Targets {
            labels: Some(labels),
            ..Targets::default()
        }
    }

    /// Adds (or replaces) the hard labels.
    pub fn with_labels(mut self, labels: &'a [i64]) -> Self {
        self.labels = Some(labels);
        self
    }

    /// Adds (or replaces) the per-sample weights (or a 0/1 mask).
    pub fn with_sample_weights(mut self, weights: &'a [f32]) -> Self {
        self.sample_weights = Some(weights);
        self
    }
}

/// A distillation loss over a batch of student outputs, with its exact gradient.
///
/// The student output is a row-major `batch × width` slice (logits over `width`
/// classes, or `width` features per sample). `loss_and_grad` returns the loss of the
/// whole batch (already reduced, usually a batch mean) and **overwrites** `grad` with
/// the gradient of that loss with respect to every element of `student`.
///
/// # Implementing
/// Check every length before touching data: `student.len() == batch * width`,
/// `grad.len() == student.len()`, and the lengths of the targets you use. Compute in a
/// numerically stable way (log-sum-exp for softmax-based losses) and return the exact
/// gradient of the value you return, so that a finite-difference check passes. Write
/// every element of `grad`, also where the gradient is zero. Document the reduction and
/// which fields of [`Targets`] you read.
///
/// # Errors
/// Returns [`Error::Loss`] with [`ErrorKind::ShapeMismatch`] when lengths disagree,
/// [`ErrorKind::NonFinite`] when an input holds NaN or an infinity that the loss cannot
/// handle, and [`ErrorKind::InvalidInput`] for other bad inputs (a label out of range,
/// a missing teacher, a negative weight). On error the content of `grad` is
/// unspecified.
///
/// # Panics
/// Implementations must not panic on any input.
pub trait DistillLoss {
    /// Returns the loss of the batch and writes its gradient with respect to `student`
    /// into `grad`.
    ///
    /// # Errors
    /// As described for the trait: typed [`Error::Loss`] errors for bad input.
    fn loss_and_grad(
        &self,
        student: &[f32],
        batch: usize,
        width: usize,
        targets: &Targets<'_>,
        grad: &mut [f32],
    ) -> Result<f64>;
}

impl<L: DistillLoss + ?Sized> DistillLoss for &L {
    fn loss_and_grad(
        &self,
        student: &[f32],
        batch: usize,
        width: usize,
        targets: &Targets<'_>,
        grad: &mut [f32],
    ) -> Result<f64> {
        (**self).loss_and_grad(student, batch, width, targets, grad)
    }
}

impl<L: DistillLoss + ?Sized> DistillLoss for Box<L> {
    fn loss_and_grad(
        &self,
        student: &[f32],
        batch: usize,
        width: usize,
        targets: &Targets<'_>,
        grad: &mut [f32],
    ) -> Result<f64> {
        (**self).loss_and_grad(student, batch, width, targets, grad)
    }
}

/// `Σ wᵢ·Lᵢ` over losses of the same student output and targets (for example a forward
/// KL plus a logit MSE); the gradient is the same weighted sum of the gradients.
///
/// ```
/// use edgeml_core::{DistillLoss, Result, Targets, WeightedSum};
///
/// /// ½ Σ x² over the batch (a toy loss for the example).
/// struct HalfSquare;
/// impl DistillLoss for HalfSquare {
///     fn loss_and_grad(&self, s: &[f32], _b: usize, _w: usize, _t: &Targets<'_>,
///                      g: &mut [f32]) -> Result<f64> {
///         g.copy_from_slice(s);
///         Ok(s.iter().map(|&x| 0.5 * f64::from(x) * f64::from(x)).sum())
///     }
/// }
///
/// let sum = WeightedSum::new().with(2.0, HalfSquare).with(0.5, HalfSquare);
/// let mut grad = [0.0f32; 2];
/// let loss = sum.loss_and_grad(&[1.0, -2.0], 1, 2, &Targets::default(), &mut grad)?;
/// assert_eq!(loss, 2.5 * 2.5);
/// assert_eq!(grad, [2.5, -5.0]);
/// # Ok::<(), edgeml_core::Error>(())
/// ```
#[derive(Default)]
pub struct WeightedSum<'l> {
    terms: Vec<(f32, Box<dyn DistillLoss + Send + Sync + 'l>)>,
}

impl core::fmt::Debug for WeightedSum<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let weights: Vec<f32> = self.terms.iter().map(|t| t.0).collect();
        f.debug_struct("WeightedSum")
            .field("weights", &weights)
            .finish()
    }
}

impl<'l> WeightedSum<'l> {
    /// An empty sum (its loss is 0 and its gradient 0).
    pub fn new() -> Self {
        WeightedSum { terms: Vec::new() }
    }

    /// Adds `weight · loss`.
    pub fn with(mut self, weight: f32, loss: impl DistillLoss + Send + Sync + 'l) -> Self {
        self.terms.push((weight, Box::new(loss)));
        self
    }

    /// The number of terms.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    /// Whether the sum has no term.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

impl DistillLoss for WeightedSum<'_> {
    /// # Errors
    /// The first error of a term, or [`ErrorKind::ShapeMismatch`] / [`ErrorKind::NonFinite`]
    /// when `grad` has the wrong length or a weight is not finite.
    fn loss_and_grad(
        &self,
        student: &[f32],
        batch: usize,
        width: usize,
        targets: &Targets<'_>,
        grad: &mut [f32],
    ) -> Result<f64> {
        if grad.len() != student.len() {
            return Err(Error::Loss {
                kind: ErrorKind::ShapeMismatch,
                message: format!(
                    "grad has {} elements, student {}",
                    grad.len(),
                    student.len()
                ),
            });
        }
        if let Some((w, _)) = self.terms.iter().find(|(w, _)| !w.is_finite()) {
            return Err(Error::Loss {
                kind: ErrorKind::NonFinite,
                message: format!("weight {w} of a weighted sum"),
            });
        }
        grad.fill(0.0);
        let mut scratch = vec![0.0f32; if self.terms.is_empty() { 0 } else { grad.len() }];
        let mut total = 0.0f64;
        for (w, loss) in &self.terms {
            total +=
                f64::from(*w) * loss.loss_and_grad(student, batch, width, targets, &mut scratch)?;
            for (g, s) in grad.iter_mut().zip(&scratch) {
                *g += w * s;
            }
        }
        Ok(total)
    }
}

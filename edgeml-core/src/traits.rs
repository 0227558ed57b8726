//! Capability traits implemented across the family.

use crate::HasErrorKind;

/// A streaming concept-drift detector: feed it one observation at a time.
///
/// Observations are whatever the detector monitors: a model's error indicator (0/1) for
/// DDM-style detectors, a real-valued statistic (loss, confidence, a feature) for ADWIN,
/// Page-Hinkley, KSWIN or CUSUM.
///
/// # Implementing
/// `update` must run in bounded (ideally O(1) amortised or O(log n)) time and memory.
/// After a drift is signalled, detectors that follow river's semantics reset their state
/// on the *next* `update`; document any difference. `drift_detected` and
/// `warning_detected` describe the state after the most recent `update`.
///
/// # Errors
/// `update` itself does not fail; implementations document how they treat non-finite
/// values (edgeml's detectors ignore them and count them).
///
/// # Panics
/// Implementations must not panic on any input.
pub trait DriftDetector {
    /// Feeds one observation.
    fn update(&mut self, x: f64);
    /// Whether the most recent `update` signalled a drift.
    fn drift_detected(&self) -> bool;
    /// Whether the most recent `update` signalled a warning (detectors without a warning
    /// zone return `false`).
    fn warning_detected(&self) -> bool {
        false
    }
    /// Forgets everything seen so far, keeping the configuration.
    fn reset(&mut self);
}

/// A sparsity pattern: decides which weights of one layer to keep at a target sparsity.
///
/// Weights are one layer's values in row-major order over `shape` (for a convolution
/// `[out_channels, in_channels, kh, kw]`, for a dense layer `[out, in]`). The pruner
/// writes one flag per weight into `keep`: `true` keeps the weight, `false` prunes it.
/// A consumer (a training-loop controller, a graph pass) multiplies the weights by the
/// mask; the pruner itself never modifies the weights.
///
/// # Implementing
/// `keep_mask` must be deterministic: the same weights, shape and sparsity give the same
/// mask, including when magnitudes tie (break ties by a documented rule, e.g. by index).
/// It must validate its input and report, rather than panic on: `shape` whose product is
/// not `weights.len()`, `keep.len() != weights.len()`, a sparsity outside `[0, 1)`, a
/// shape the pattern does not fit, and non-finite weights if it cannot rank them.
/// Document how the sparsity maps to a count (rounding) and whether ties at the cut are
/// kept or pruned.
///
/// # Errors
/// Returns `Self::Error` for the invalid inputs listed above; `keep` may then hold any
/// values.
///
/// # Panics
/// Implementations must not panic on any input.
pub trait Pruner {
    /// The error type; its [`HasErrorKind::kind`] lets callers branch without strings.
    type Error: HasErrorKind + core::fmt::Display;

    /// Fills `keep` (same length as `weights`) with the mask for `sparsity`, the
    /// fraction of weights (or of channels, blocks, ...) to prune, in `[0, 1)`.
    ///
    /// # Errors
    /// See the trait documentation.
    fn keep_mask(
        &self,
        weights: &[f32],
        shape: &[usize],
        sparsity: f64,
        keep: &mut [bool],
    ) -> Result<(), Self::Error>;
}

/// A pruning schedule: the target sparsity at a training step, and the steps at which
/// masks are recomputed.
///
/// Steps count optimizer updates from 0. A consumer calls [`Schedule::should_prune`]
/// every step and, when it returns `true`, recomputes its masks at
/// [`Schedule::sparsity`]; between those steps it keeps applying the previous masks.
///
/// # Implementing
/// Validate the parameters in the constructor so that both methods are total: they
/// must return a value for every `u64` step without overflow. `sparsity` must lie in
/// `[0, 1)`. Document the anchor whose formula the schedule follows and what it returns
/// before the first and after the last pruning step.
///
/// # Errors
/// The methods do not fail; constructors report invalid parameters.
///
/// # Panics
/// Implementations must not panic for any step.
pub trait Schedule {
    /// The target sparsity in `[0, 1)` at `step`.
    fn sparsity(&self, step: u64) -> f32;
    /// Whether masks should be recomputed at `step`.
    fn should_prune(&self, step: u64) -> bool;
}
mod distill;
pub use distill::{DistillLoss, Targets, WeightedSum};

/// A calibration observer: watches the values a tensor takes over calibration batches
/// and proposes the real range `[rmin, rmax]` to quantize it to.
///
/// Observers are streaming and mergeable: memory is bounded by the observer's own
/// configuration (e.g. a histogram's bin count), never by how much data it has seen, so
/// calibration can feed batches to several observers in parallel and merge them.
///
/// # Implementing
/// `observe` takes any slice, including an empty one. Non-finite values (NaN, ±Inf)
/// must not reach the range: skip them (and document it) — a NaN range would become a
/// NaN scale. `merge` must give the same result as observing both streams with one
/// observer, up to a documented approximation (histograms may rebin). `range` must
/// return finite values with `rmin <= rmax`; an observer that has seen no finite value
/// returns `(0.0, 0.0)`. The range need not contain 0: the quantization math widens it.
///
/// # Errors
/// The methods do not fail; invalid configurations are refused by constructors.
///
/// # Panics
/// Implementations must not panic on any input.
pub trait Observer {
    /// Feeds one batch of values (any length, any order).
    fn observe(&mut self, values: &[f32]);
    /// Adds what `other` has seen to `self`.
    fn merge(&mut self, other: &Self)
    where
        Self: Sized;
    /// The proposed real range `(rmin, rmax)`, finite, `rmin <= rmax`.
    fn range(&self) -> (f32, f32);
}

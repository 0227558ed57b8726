//! Structured pruning of whole slices (output filters, input channels) by norm.

use super::split_axis;
use crate::error::{Error, Result, check_layer, check_no_nan};
use crate::select::{Amount, prune_smallest_scores};

/// The norm that ranks slices in structured pruning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    /// Sum of `|w|` (PyTorch `n=1`).
    L1,
    /// Euclidean norm (PyTorch `n=2`).
    L2,
}

/// The norm of every slice of `weights` (row-major over `shape`) along `axis`, that is
/// PyTorch's `_compute_norm(t, n, dim=axis)`, accumulated in `f64`.
///
/// # Errors
/// [`Error::ShapeMismatch`]/[`Error::Empty`] when `shape` does not describe `weights`,
/// [`Error::PatternMismatch`] when `axis` is out of range.
pub fn channel_norms(
    weights: &[f32],
    shape: &[usize],
    norm: Norm,
    axis: usize,
) -> Result<Vec<f64>> {
    check_layer("weights", weights.len(), shape, weights.len())?;
    let (_, len, inner) = split_axis("weights", shape, axis)?;
    let mut acc = vec![0.0f64; len];
    for (row, chunk) in weights.chunks_exact(inner).enumerate() {
        let c = row % len;
        acc[c] += match norm {
            Norm::L1 => chunk.iter().map(|&w| f64::from(w).abs()).sum::<f64>(),
            Norm::L2 => chunk
                .iter()
                .map(|&w| f64::from(w) * f64::from(w))
                .sum::<f64>(),
        };
    }
    if norm == Norm::L2 {
        acc.iter_mut().for_each(|a| *a = a.sqrt());
    }
    Ok(acc)
}

/// `torch.nn.utils.prune.ln_structured(t, name, amount, n, dim=axis)`: prunes the
/// `amount` slices along `axis` with the smallest L1/L2 norm (a fraction counts
/// `round(amount · shape[axis])` slices, half to even). Ties between equal norms prune
/// the lower slice index first (PyTorch's `topk` leaves them unspecified). Returns the
/// keep-mask over all weights.
///
/// # Errors
/// [`Error::PatternMismatch`] for a 1-D layer (PyTorch requires at least 2 dims) or an
/// axis out of range; [`Error::ShapeMismatch`], [`Error::Empty`],
/// [`Error::InvalidSparsity`], [`Error::NaN`] for bad input.
pub fn ln_structured(
    weights: &[f32],
    shape: &[usize],
    amount: Amount,
    norm: Norm,
    axis: usize,
) -> Result<Vec<bool>> {
    if shape.len() < 2 {
        return Err(Error::pattern(
            "weights",
            format!("structured pruning needs at least 2 dims, shape is {shape:?}"),
        ));
    }
    check_no_nan("weights", weights)?;
    let norms = channel_norms(weights, shape, norm, axis)?;
    let k = amount.to_count(norms.len(), "ln_structured")?;
    let keep_ch = prune_smallest_scores(&norms, k);
    let (_, len, inner) = split_axis("weights", shape, axis)?;
    let mut keep = vec![true; weights.len()];
    for (row, chunk) in keep.chunks_exact_mut(inner).enumerate() {
        chunk.fill(keep_ch[row % len]);
    }
    Ok(keep)
}

//! Block pruning: `h×w` tiles of the 2-D view of a layer.

use crate::error::{Error, Result, check_layer, check_no_nan};
use crate::select::{Amount, prune_smallest_scores};

/// How a block's magnitudes become one score (TF-MOT's `block_pooling_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockReduce {
    /// Mean of `|w|` over the block's valid elements (TF-MOT `AVG`, the default).
    Mean,
    /// Largest `|w|` in the block (TF-MOT `MAX`).
    Max,
}

/// Prunes the `amount` blocks of `height × width` with the smallest score (ties: lower
/// block index, row-major, first) on the 2-D view `[shape[0], n / shape[0]]` of
/// `weights` (a 1-D layer is one row). Partial blocks at the right and bottom edges are
/// allowed; their score covers their valid elements only (like TF's `SAME` average
/// pooling). A fraction counts `round(amount · blocks)` blocks, half to even.
///
/// TF-MOT ranks the pooled scores with its threshold rule (ties kept); this is exact-k
/// over blocks.
///
/// # Errors
/// [`Error::InvalidArgument`] for a zero block dimension; [`Error::ShapeMismatch`],
/// [`Error::Empty`], [`Error::InvalidSparsity`], [`Error::NaN`] for bad input.
pub fn block_mask(
    weights: &[f32],
    shape: &[usize],
    height: usize,
    width: usize,
    reduce: BlockReduce,
    amount: Amount,
) -> Result<Vec<bool>> {
    if height == 0 || width == 0 {
        return Err(Error::InvalidArgument(format!(
            "block {height}x{width} has a zero dimension"
        )));
    }
    check_layer("weights", weights.len(), shape, weights.len())?;
    check_no_nan("weights", weights)?;
    let rows = if shape.len() <= 1 { 1 } else { shape[0] };
    let cols = weights.len() / rows;
    let (br, bc) = (rows.div_ceil(height), cols.div_ceil(width));
    let mut score = vec![0.0f64; br * bc];
    let mut count = vec![0u32; br * bc];
    for (r, row) in weights.chunks_exact(cols).enumerate() {
        let base = (r / height) * bc;
        for (c, &w) in row.iter().enumerate() {
            let b = base + c / width;
            let a = f64::from(w).abs();
            match reduce {
                BlockReduce::Mean => score[b] += a,
                BlockReduce::Max => score[b] = score[b].max(a),
            }
            count[b] += 1;
        }
    }
    if reduce == BlockReduce::Mean {
        for (s, &n) in score.iter_mut().zip(&count) {
            *s /= f64::from(n);
        }
    }
    let k = amount.to_count(score.len(), "block")?;
    let keep_b = prune_smallest_scores(&score, k);
    let mut keep = vec![true; weights.len()];
    for (r, row) in keep.chunks_exact_mut(cols).enumerate() {
        let base = (r / height) * bc;
        for (c, f) in row.iter_mut().enumerate() {
            *f = keep_b[base + c / width];
        }
    }
    Ok(keep)
}

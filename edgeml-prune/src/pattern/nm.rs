//! Semi-structured N:M sparsity, named explicitly as "keep K of every group of G".

use super::split_axis;
use crate::error::{Error, Result, check_layer, check_no_nan};
use crate::select::abs_bits;

/// Keeps the `keep` largest magnitudes in every run of `group` consecutive elements
/// along `axis`, pruning the other `group − keep`. NVIDIA's "2:4" sparsity on a
/// `[out, in]` weight is `keep_of_group(w, shape, 2, 4, 1)`; TF-MOT's `m_by_n=(2, 4)`
/// means the same mask (2 zeros out of 4). Ties prune the lower index first, so the
/// higher index is kept. Returns the keep-mask.
///
/// # Errors
/// [`Error::InvalidArgument`] unless `1 <= keep <= group`; [`Error::PatternMismatch`]
/// when `axis` is out of range or `group` does not divide `shape[axis]`;
/// [`Error::ShapeMismatch`], [`Error::Empty`], [`Error::NaN`] for bad input.
pub fn keep_of_group(
    weights: &[f32],
    shape: &[usize],
    keep: usize,
    group: usize,
    axis: usize,
) -> Result<Vec<bool>> {
    if keep == 0 || keep > group {
        return Err(Error::InvalidArgument(format!(
            "N:M needs 1 <= keep <= group, got keep {keep} of {group}"
        )));
    }
    check_layer("weights", weights.len(), shape, weights.len())?;
    check_no_nan("weights", weights)?;
    let (outer, len, inner) = split_axis("weights", shape, axis)?;
    if len % group != 0 {
        return Err(Error::pattern(
            "weights",
            format!("group {group} does not divide axis {axis} of length {len} (shape {shape:?})"),
        ));
    }
    let mut mask = vec![true; weights.len()];
    let prune = group - keep;
    if prune == 0 {
        return Ok(mask);
    }
    let mut idx: Vec<usize> = Vec::with_capacity(group);
    for o in 0..outer {
        for i in 0..inner {
            for g in 0..len / group {
                idx.clear();
                idx.extend((0..group).map(|j| (o * len + g * group + j) * inner + i));
                // Smallest (|w|, index) first; the first `prune` are pruned.
                idx.sort_unstable_by_key(|&p| (abs_bits(weights[p]), p));
                for &p in &idx[..prune] {
                    mask[p] = false;
                }
            }
        }
    }
    Ok(mask)
}

//! Sparsity patterns on plain weights, and [`Pattern`], the [`Pruner`] that names them.
//!
//! | pattern | what is pruned | anchor |
//! |---|---|---|
//! | [`Pattern::Magnitude`] | exactly `round(s·n)` smallest `|w|` | `torch.nn.utils.prune.l1_unstructured` |
//! | [`Pattern::MagnitudeThreshold`] | `|w|` below the `k`-th largest | TF-MOT `prune_low_magnitude` |
//! | [`Pattern::Channels`] | whole slices along an axis with the smallest L1/L2 norm | `torch.nn.utils.prune.ln_structured` |
//! | [`Pattern::Block`] | `h×w` blocks with the smallest mean or max `|w|` | TF-MOT `block_size`/`block_pooling_type` |
//! | [`Pattern::KeepOfGroup`] | all but the `keep` largest of every `group` along an axis | N:M (NVIDIA "2:4" is keep 2 of 4) |

mod block;
mod nm;
mod structured;

pub use block::{BlockReduce, block_mask};
pub use nm::keep_of_group;
pub use structured::{Norm, channel_norms, ln_structured};

use crate::error::{Error, Result, check_layer, check_no_nan, check_sparsity};
use crate::select::{Amount, prune_smallest_k, threshold_mask};
use edgeml_core::Pruner;

/// A sparsity pattern; implements [`Pruner`].
///
/// The sparsity passed to [`Pruner::keep_mask`] is the fraction of *units* to prune:
/// weights for the magnitude patterns, channels for [`Pattern::Channels`], blocks for
/// [`Pattern::Block`]. [`Pattern::KeepOfGroup`] has a fixed sparsity
/// `1 − keep/group`: it keeps everything at sparsity 0 and applies its pattern at any
/// positive sparsity (so a schedule ramping from 0 switches it on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Pattern {
    /// Unstructured magnitude, exact-k: prunes `round(s·n)` weights (half to even),
    /// ties broken by index. PyTorch's `l1_unstructured`. The default.
    #[default]
    Magnitude,
    /// Unstructured magnitude, TF-MOT's threshold: keeps every `|w| >=` the `k`-th
    /// largest magnitude, `k = max(round(n·(1−s)), 1)` in `f32`
    /// ([`threshold_mask`]); ties at the threshold kept.
    MagnitudeThreshold,
    /// Structured: whole slices along `axis` (0: output filters, 1: input channels)
    /// with the smallest norm, PyTorch's `ln_structured(amount, n, dim=axis)`.
    Channels {
        /// The axis whose slices are pruned.
        axis: usize,
        /// The norm ranking the slices.
        norm: Norm,
    },
    /// Blocks of `height × width` on the 2-D view `[shape[0], n / shape[0]]` (a 1-D
    /// layer is one row), ranked by mean or max `|w|`; partial blocks at the right and
    /// bottom edges are allowed and ranked over their valid elements.
    Block {
        /// Block height (rows), at least 1.
        height: usize,
        /// Block width (columns), at least 1.
        width: usize,
        /// How a block's magnitudes are reduced to one score.
        reduce: BlockReduce,
    },
    /// Semi-structured N:M: in every run of `group` consecutive elements along `axis`,
    /// keeps the `keep` largest magnitudes (ties: the higher index is kept). `group`
    /// must divide the axis length.
    KeepOfGroup {
        /// Weights kept per group, `1..=group`.
        keep: usize,
        /// Group length along `axis`.
        group: usize,
        /// The axis along which groups run (1 = input dim of `[out, in]`).
        axis: usize,
    },
}

impl Pattern {
    /// The N:M pattern keeping `keep` of every `group` along `axis`.
    pub fn keep_of_group(keep: usize, group: usize, axis: usize) -> Self {
        Pattern::KeepOfGroup { keep, group, axis }
    }

    /// Computes the keep-mask of one layer (see [`Pruner::keep_mask`]), allocating it.
    ///
    /// # Errors
    /// As [`Pruner::keep_mask`].
    pub fn mask(&self, weights: &[f32], shape: &[usize], sparsity: f64) -> Result<Vec<bool>> {
        let mut keep = vec![true; weights.len()];
        self.keep_mask(weights, shape, sparsity, &mut keep)?;
        Ok(keep)
    }
}

impl Pruner for Pattern {
    type Error = Error;

    /// # Errors
    /// [`Error::ShapeMismatch`] when `shape`, `weights` and `keep` disagree,
    /// [`Error::Empty`] for an empty layer, [`Error::InvalidSparsity`] outside
    /// `[0, 1)`, [`Error::PatternMismatch`] when the pattern does not fit the shape,
    /// [`Error::InvalidArgument`] for a zero block size or a bad N:M, [`Error::NaN`].
    fn keep_mask(
        &self,
        weights: &[f32],
        shape: &[usize],
        sparsity: f64,
        keep: &mut [bool],
    ) -> Result<()> {
        check_layer("weights", weights.len(), shape, keep.len())?;
        check_sparsity(sparsity, "pattern")?;
        check_no_nan("weights", weights)?;
        let amount = Amount::Fraction(sparsity);
        match *self {
            Pattern::Magnitude => {
                let k = amount.to_count(weights.len(), "magnitude")?;
                prune_smallest_k(weights, k, keep)
            }
            // sparsity is in [0, 1): the cast to f32 cannot leave that range except by
            // rounding up to 1.0, which tfmot_keep_count clamps to one kept weight.
            Pattern::MagnitudeThreshold => threshold_mask(
                weights,
                (sparsity as f32).min(1.0 - f32::EPSILON / 2.0),
                keep,
            )
            .map(|_| ()),
            Pattern::Channels { axis, norm } => {
                keep.copy_from_slice(&ln_structured(weights, shape, amount, norm, axis)?);
                Ok(())
            }
            Pattern::Block {
                height,
                width,
                reduce,
            } => {
                keep.copy_from_slice(&block_mask(weights, shape, height, width, reduce, amount)?);
                Ok(())
            }
            Pattern::KeepOfGroup {
                keep: k,
                group,
                axis,
            } => {
                if sparsity == 0.0 {
                    // Validate the fit even when nothing is pruned.
                    keep_of_group(weights, shape, group, group, axis)?;
                    keep.fill(true);
                    return Ok(());
                }
                keep.copy_from_slice(&keep_of_group(weights, shape, k, group, axis)?);
                Ok(())
            }
        }
    }
}

/// Splits `shape` around `axis` into `(outer, len, inner)` element counts.
pub(crate) fn split_axis(
    what: &str,
    shape: &[usize],
    axis: usize,
) -> Result<(usize, usize, usize)> {
    if axis >= shape.len() {
        return Err(Error::pattern(
            what,
            format!("axis {axis} out of range for shape {shape:?}"),
        ));
    }
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    Ok((outer, shape[axis], inner))
}

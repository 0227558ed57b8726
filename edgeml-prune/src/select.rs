//! Exact-k and threshold selection of the smallest magnitudes of one weight slice.
//!
//! Magnitudes are ranked by the bits of `|w|`: for non-negative IEEE floats the bit
//! pattern orders like the value, `-0.0` and `0.0` are the same magnitude, and `±inf`
//! ranks above every finite weight. NaN cannot be ranked and is an error.
//!
//! **Tie-break.** Exact-k prunes the `k` weights with the smallest keys
//! `(|w|, index)`: among equal magnitudes the lower flat index is pruned first. The
//! selection is `select_nth_unstable` on packed `(|w| bits, index)` keys, O(n), not a
//! sort.

use crate::error::{Error, Result, check_no_nan};

/// How much to prune: a fraction of the candidates or an exact count.
///
/// Follows `torch.nn.utils.prune`'s `amount`: a fraction prunes
/// `round(fraction · n)` candidates with Python's `round` (half to even, on the `f64`
/// product), a count prunes exactly that many. Unlike PyTorch, which accepts `1.0`, a
/// fraction must lie in `[0, 1)`; a count may be anything up to `n`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// A fraction in `[0, 1)` of the candidates.
    Fraction(f64),
    /// An exact number of candidates, at most their number.
    Count(usize),
}

impl Amount {
    /// The number of candidates to prune out of `n` (PyTorch's
    /// `_compute_nparams_toprune`).
    ///
    /// # Errors
    /// [`Error::InvalidSparsity`] for a fraction outside `[0, 1)` or a count above `n`.
    pub fn to_count(self, n: usize, what: &str) -> Result<usize> {
        match self {
            Amount::Fraction(f) => {
                crate::error::check_sparsity(f, what)?;
                // f < 1, so the product stays below n and the cast is exact.
                Ok((f * n as f64).round_ties_even() as usize)
            }
            Amount::Count(k) if k <= n => Ok(k),
            Amount::Count(k) => Err(Error::InvalidSparsity {
                what: format!("{what} (count {k} of {n})"),
                value: k as f64 / n.max(1) as f64,
            }),
        }
    }
}

/// The magnitude of `w` as ordered bits (`|w|` with the sign bit cleared).
#[inline(always)]
pub(crate) fn abs_bits(w: f32) -> u32 {
    w.to_bits() & 0x7fff_ffff
}

/// Writes into `keep` the mask that prunes exactly the `k` weights with the smallest
/// `(|w|, index)` keys; every other flag is `true`.
///
/// # Errors
/// [`Error::ShapeMismatch`] when `keep` and `weights` differ in length,
/// [`Error::InvalidSparsity`] when `k > weights.len()`, [`Error::NaN`] for a NaN weight.
pub fn prune_smallest_k(weights: &[f32], k: usize, keep: &mut [bool]) -> Result<()> {
    let n = weights.len();
    if keep.len() != n {
        return Err(Error::shape(
            "weights",
            format!("mask has {} flags, weights have {n}", keep.len()),
        ));
    }
    if k > n {
        return Err(Error::InvalidSparsity {
            what: format!("prune count {k} of {n}"),
            value: k as f64 / n.max(1) as f64,
        });
    }
    check_no_nan("weights", weights)?;
    if k == 0 {
        keep.fill(true);
        return Ok(());
    }
    if k == n {
        keep.fill(false);
        return Ok(());
    }
    if u32::try_from(n).is_err() {
        // Packed keys need the index in 32 bits; the radix path has no such limit.
        return crate::global::global_prune_into(&[weights], k, &mut [keep]);
    }
    let key = |i: usize, w: f32| (u64::from(abs_bits(w)) << 32) | i as u64;
    let mut keys: Vec<u64> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| key(i, w))
        .collect();
    let (_, &mut cut, _) = keys.select_nth_unstable(k - 1);
    drop(keys);
    for (i, (f, &w)) in keep.iter_mut().zip(weights).enumerate() {
        *f = key(i, w) > cut;
    }
    Ok(())
}

/// `torch.nn.utils.prune.l1_unstructured` on a flat weight slice: prunes the
/// `amount` smallest magnitudes, ties broken by index (PyTorch's `topk` leaves ties
/// unspecified). Returns the keep-mask.
///
/// # Errors
/// [`Error::Empty`] for no weights, [`Error::InvalidSparsity`] for a bad amount,
/// [`Error::NaN`] for a NaN weight.
pub fn l1_unstructured(weights: &[f32], amount: Amount) -> Result<Vec<bool>> {
    if weights.is_empty() {
        return Err(Error::Empty("weights".into()));
    }
    let k = amount.to_count(weights.len(), "l1_unstructured")?;
    let mut keep = vec![true; weights.len()];
    prune_smallest_k(weights, k, &mut keep)?;
    Ok(keep)
}

/// The number of weights TF-MOT keeps out of `n` at `sparsity`:
/// `max(round(float32(n) · (1 − sparsity)), 1)`, all in `f32` with half-to-even
/// rounding, as in `pruning_impl.Pruning._update_mask`.
pub fn tfmot_keep_count(n: usize, sparsity: f32) -> usize {
    let k = (n as f32 * (1.0f32 - sparsity)).round_ties_even().max(1.0);
    (k as usize).min(n)
}

/// TF-MOT's threshold mode (`pruning_impl.Pruning._update_mask`): with
/// `k = tfmot_keep_count(n, sparsity)`, the threshold is the `k`-th largest `|w|` and
/// every weight with `|w| >= threshold` is kept. Ties at the threshold are all kept, so
/// more than `k` weights survive when magnitudes repeat; at least one weight is always
/// kept. Returns the threshold.
///
/// # Errors
/// [`Error::ShapeMismatch`] when `keep` and `weights` differ in length, [`Error::Empty`]
/// for no weights, [`Error::InvalidSparsity`] outside `[0, 1)`, [`Error::NaN`].
pub fn threshold_mask(weights: &[f32], sparsity: f32, keep: &mut [bool]) -> Result<f32> {
    let n = weights.len();
    if keep.len() != n {
        return Err(Error::shape(
            "weights",
            format!("mask has {} flags, weights have {n}", keep.len()),
        ));
    }
    if n == 0 {
        return Err(Error::Empty("weights".into()));
    }
    crate::error::check_sparsity(f64::from(sparsity), "threshold_mask")?;
    check_no_nan("weights", weights)?;
    let k = tfmot_keep_count(n, sparsity);
    let mut bits: Vec<u32> = weights.iter().map(|&w| abs_bits(w)).collect();
    let (_, &mut thr, _) = bits.select_nth_unstable(n - k);
    drop(bits);
    for (f, &w) in keep.iter_mut().zip(weights) {
        *f = abs_bits(w) >= thr;
    }
    Ok(f32::from_bits(thr))
}

/// Prunes the `k` smallest of `scores` (ties: lower index first) and returns one keep
/// flag per score. Scores must not be NaN (callers check the weights first).
pub(crate) fn prune_smallest_scores(scores: &[f64], k: usize) -> Vec<bool> {
    let n = scores.len();
    let mut keep = vec![true; n];
    if k == 0 {
        return keep;
    }
    let mut order: Vec<usize> = (0..n).collect();
    let cmp = |a: &usize, b: &usize| scores[*a].total_cmp(&scores[*b]).then(a.cmp(b));
    if k < n {
        order.select_nth_unstable_by(k - 1, cmp);
    }
    for &i in &order[..k.min(n)] {
        keep[i] = false;
    }
    keep
}

//! Global magnitude pruning across layers, without concatenating them.
//!
//! PyTorch's `global_unstructured` concatenates every layer into one vector and runs
//! `topk` on it. Here the layers stay where they are: a radix selection on the bits of
//! `|w|` finds the exact cut in three streaming passes over the weights.
//!
//! 1. A histogram of the top 16 bits of `|w|` (65 536 bins) over every layer, which
//!    also finds NaNs (bit patterns above `+inf`), tells the bin holding the `k`-th
//!    smallest magnitude and how many magnitudes lie below it.
//! 2. A histogram of the low 16 bits of the magnitudes that fall in that bin gives
//!    the exact bit pattern `T` of the `k`-th smallest magnitude and how many weights
//!    equal to `T` must be pruned (`r`).
//! 3. The masks: a weight is pruned when `|w| < T`, or when `|w| = T` and it is among
//!    the first `r` such weights in (layer, index) order.
//!
//! So the result is exactly "prune the `k` smallest `(|w|, layer, index)` keys": ties
//! are broken by layer order, then by index, the same rule as the layer-wise
//! [`prune_smallest_k`](crate::select::prune_smallest_k). Memory: two 65 536-entry
//! histograms; time: O(total weights).

use crate::error::{Error, Result};
use crate::select::{Amount, abs_bits};

const BINS: usize = 1 << 16;
/// Sub-histograms filled in turn, so that runs of equal bins do not serialise on one
/// counter; `u32` counters are flushed to the `u64` totals every `FLUSH` elements.
const LANES: usize = 4;
const FLUSH: usize = 1 << 30;

/// Global magnitude pruning, PyTorch's
/// `global_unstructured(params, pruning_method=L1Unstructured, amount=...)`: prunes the
/// `amount` smallest magnitudes over all `layers` together (a fraction counts against
/// the total number of weights). Returns one keep-mask per layer.
///
/// # Errors
/// [`Error::Empty`] when there are no layers or a layer has no weights,
/// [`Error::InvalidSparsity`] for a bad amount, [`Error::NaN`] for a NaN weight.
pub fn global_magnitude(layers: &[&[f32]], amount: Amount) -> Result<Vec<Vec<bool>>> {
    let mut masks: Vec<Vec<bool>> = layers.iter().map(|l| vec![true; l.len()]).collect();
    let mut views: Vec<&mut [bool]> = masks.iter_mut().map(|m| m.as_mut_slice()).collect();
    global_magnitude_into(layers, amount, &mut views)?;
    Ok(masks)
}

/// [`global_magnitude`] writing into caller-owned masks (one per layer, same lengths),
/// so a training loop reuses its buffers. Returns the number of weights pruned.
///
/// # Errors
/// As [`global_magnitude`], plus [`Error::ShapeMismatch`] when the masks do not match
/// the layers.
pub fn global_magnitude_into(
    layers: &[&[f32]],
    amount: Amount,
    masks: &mut [&mut [bool]],
) -> Result<usize> {
    if layers.is_empty() {
        return Err(Error::Empty("layers".into()));
    }
    if let Some(i) = layers.iter().position(|l| l.is_empty()) {
        return Err(Error::Empty(format!("layer {i}")));
    }
    let total: usize = layers.iter().map(|l| l.len()).sum();
    let k = amount.to_count(total, "global_magnitude")?;
    global_prune_into(layers, k, masks)?;
    Ok(k)
}

/// Prunes the `k` smallest `(|w|, layer, index)` keys; `k <= total` is checked here.
pub(crate) fn global_prune_into(
    layers: &[&[f32]],
    k: usize,
    masks: &mut [&mut [bool]],
) -> Result<()> {
    if masks.len() != layers.len() {
        return Err(Error::shape(
            "masks",
            format!("{} masks for {} layers", masks.len(), layers.len()),
        ));
    }
    for (i, (l, m)) in layers.iter().zip(masks.iter()).enumerate() {
        if l.len() != m.len() {
            return Err(Error::shape(
                &format!("layer {i}"),
                format!("mask has {} flags, weights have {}", m.len(), l.len()),
            ));
        }
    }
    let total: usize = layers.iter().map(|l| l.len()).sum();
    if k > total {
        return Err(Error::InvalidSparsity {
            what: format!("prune count {k} of {total}"),
            value: k as f64 / total.max(1) as f64,
        });
    }

    // Pass 1: histogram of the high 16 bits, and the largest bit pattern (NaN check).
    let mut hist = vec![0u64; BINS];
    let mut max_bits = 0u32;
    for l in layers {
        max_bits = max_bits.max(histogram(l, &mut hist, |b| Some((b >> 16) as usize)));
    }
    if max_bits > 0x7f80_0000 {
        return Err(nan_error(layers));
    }
    if k == 0 {
        masks.iter_mut().for_each(|m| m.fill(true));
        return Ok(());
    }
    let (hi, below_hi) = locate(&hist, k);

    // Pass 2: histogram of the low 16 bits inside bin `hi`.
    hist.fill(0);
    for l in layers {
        histogram(l, &mut hist, |b| {
            ((b >> 16) as usize == hi).then_some((b & 0xffff) as usize)
        });
    }
    let (lo, below_lo) = locate(&hist, k - below_hi);
    let cut = ((hi as u32) << 16) | lo as u32;
    // Weights with |w| == cut still to prune, in (layer, index) order.
    let mut ties = (k - below_hi - below_lo) as u64;

    // Pass 3: the masks.
    for (l, m) in layers.iter().zip(masks.iter_mut()) {
        for (f, &w) in m.iter_mut().zip(l.iter()) {
            let b = abs_bits(w);
            *f = b > cut;
            if b == cut && ties > 0 {
                *f = false;
                ties -= 1;
            } else if b == cut {
                *f = true;
            }
        }
    }
    Ok(())
}

/// Adds the bins chosen by `bin` (None: skip) of every weight of `l` to `hist`; returns
/// the largest magnitude bit pattern seen.
#[inline(always)]
fn histogram(l: &[f32], hist: &mut [u64], bin: impl Fn(u32) -> Option<usize>) -> u32 {
    let mut lanes = vec![[0u32; LANES]; BINS];
    let mut max_bits = 0u32;
    for chunk in l.chunks(FLUSH) {
        let mut quads = chunk.chunks_exact(LANES);
        for q in &mut quads {
            for (lane, &w) in q.iter().enumerate() {
                let b = abs_bits(w);
                max_bits = max_bits.max(b);
                if let Some(i) = bin(b) {
                    lanes[i & (BINS - 1)][lane] += 1;
                }
            }
        }
        for &w in quads.remainder() {
            let b = abs_bits(w);
            max_bits = max_bits.max(b);
            if let Some(i) = bin(b) {
                lanes[i & (BINS - 1)][0] += 1;
            }
        }
        for (h, lane) in hist.iter_mut().zip(lanes.iter_mut()) {
            *h += lane.iter().map(|&c| u64::from(c)).sum::<u64>();
            *lane = [0; LANES];
        }
    }
    max_bits
}

/// The bin holding the `k`-th smallest element (1-based) and how many lie below it.
fn locate(hist: &[u64], k: usize) -> (usize, usize) {
    let mut below = 0u64;
    for (i, &c) in hist.iter().enumerate() {
        if below + c >= k as u64 {
            return (i, below as usize);
        }
        below += c;
    }
    // Unreachable when k <= total; the last bin is a safe answer.
    (hist.len() - 1, below as usize)
}

fn nan_error(layers: &[&[f32]]) -> Error {
    for (li, l) in layers.iter().enumerate() {
        if let Some(index) = l.iter().position(|v| v.is_nan()) {
            return Error::NaN {
                what: format!("layer {li}"),
                index,
            };
        }
    }
    Error::NaN {
        what: "layers".into(),
        index: 0,
    }
}

//! Histograms for the divergences: bin edges (reference quantiles, equal width with a
//! fixed count, Sturges or Doane), counting, and categorical counts with unseen
//! categories.
//!
//! Equal-width edges follow `numpy.histogram_bin_edges` on the pooled sample; the
//! reference-quantile edges are `numpy.quantile(reference, linspace(0, 1, k + 1))`
//! (linear interpolation) with duplicates removed and the outer edges widened to
//! `±inf`, so current values outside the reference range are counted in the end bins.

use crate::error::{Error, Result, all_finite, nonempty};
use crate::sort::sorted;
use std::collections::BTreeMap;

/// Largest number of bins [`bin_edges`] builds.
pub const MAX_BINS: usize = 1 << 20;

/// How many equal-width bins to use.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum BinRule {
    /// A fixed number of bins (at least 1).
    Fixed(usize),
    /// numpy's `'sturges'`: width = range / (log2 n + 1).
    Sturges,
    /// numpy's `'doane'`: Sturges corrected for skewness.
    Doane,
}

/// How to bin numeric samples.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Binning {
    /// `k` bins at the reference's quantiles.
    ReferenceQuantiles(usize),
    /// Equal-width bins over the pooled range.
    EqualWidth(BinRule),
}

impl Default for Binning {
    /// `EqualWidth(Sturges)`, as Evidently's numeric histograms.
    fn default() -> Self {
        Binning::EqualWidth(BinRule::Sturges)
    }
}

/// numpy's linear-interpolation quantile on a sorted sample.
pub(crate) fn quantile_sorted(s: &[f64], q: f64) -> f64 {
    let pos = q * (s.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(s.len() - 1);
    let frac = pos - lo as f64;
    // numpy's _lerp: a + (b - a) * t, switched to b - (b - a) * (1 - t) for t >= 0.5.
    let (a, b) = (s[lo], s[hi]);
    let d = b - a;
    if frac >= 0.5 {
        b - d * (1.0 - frac)
    } else {
        a + d * frac
    }
}

fn n_bins(rule: BinRule, data: &[f64], lo: f64, hi: f64) -> usize {
    let n = data.len() as f64;
    let ptp = hi - lo;
    let width = match rule {
        BinRule::Fixed(k) => return k.max(1),
        BinRule::Sturges => ptp / (n.log2() + 1.0),
        BinRule::Doane => {
            if data.len() > 2 {
                let sg1 = (6.0 * (n - 2.0) / ((n + 1.0) * (n + 3.0))).sqrt();
                let m = data.iter().sum::<f64>() / n;
                let sd = (data.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n).sqrt();
                if sd > 0.0 {
                    let g1 = data.iter().map(|v| ((v - m) / sd).powi(3)).sum::<f64>() / n;
                    ptp / (1.0 + n.log2() + (1.0 + g1.abs() / sg1).log2())
                } else {
                    0.0
                }
            } else {
                0.0
            }
        }
    };
    if width > 0.0 {
        ((ptp / width).ceil() as usize).max(1)
    } else {
        1
    }
}

/// Bin edges for `reference` and `current` (finite values only).
///
/// # Errors
/// Empty or non-finite samples, zero bins, more than [`MAX_BINS`] bins.
pub fn bin_edges(reference: &[f64], current: &[f64], binning: Binning) -> Result<Vec<f64>> {
    nonempty(reference, "reference")?;
    all_finite(reference, "reference")?;
    all_finite(current, "current")?;
    match binning {
        Binning::ReferenceQuantiles(k) => {
            if k == 0 {
                return Err(Error::InvalidArgument("0 quantile bins".into()));
            }
            if k > MAX_BINS {
                return Err(Error::LimitExceeded(format!("{k} bins (max {MAX_BINS})")));
            }
            let s = sorted(reference);
            let mut e: Vec<f64> = (0..=k)
                .map(|i| quantile_sorted(&s, i as f64 / k as f64))
                .collect();
            e.dedup();
            if e.len() == 1 {
                e.push(e[0]);
            }
            let last = e.len() - 1;
            e[0] = f64::NEG_INFINITY;
            e[last] = f64::INFINITY;
            Ok(e)
        }
        Binning::EqualWidth(rule) => {
            if rule == BinRule::Fixed(0) {
                return Err(Error::InvalidArgument("0 bins".into()));
            }
            if let BinRule::Fixed(k) = rule
                && k > MAX_BINS
            {
                return Err(Error::LimitExceeded(format!("{k} bins (max {MAX_BINS})")));
            }
            let pooled: Vec<f64> = reference.iter().chain(current).copied().collect();
            let mut lo = pooled.iter().copied().fold(f64::INFINITY, f64::min);
            let mut hi = pooled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let k = match rule {
                BinRule::Fixed(k) => k,
                _ if lo == hi => 1,
                _ => n_bins(rule, &pooled, lo, hi),
            };
            if lo == hi {
                // numpy widens a degenerate range by 0.5 on each side.
                lo -= 0.5;
                hi += 0.5;
            }
            // numpy: linspace(first, last, k + 1)
            let step = (hi - lo) / k as f64;
            let mut e: Vec<f64> = (0..=k).map(|i| lo + i as f64 * step).collect();
            e[k] = hi;
            Ok(e)
        }
    }
}

/// Counts of `xs` in the bins given by `edges` (numpy semantics: `[e_i, e_{i+1})`,
/// the last bin closed; values outside are not counted).
pub fn histogram(xs: &[f64], edges: &[f64]) -> Vec<f64> {
    let nb = edges.len().saturating_sub(1);
    let mut c = vec![0.0; nb];
    if nb == 0 {
        return c;
    }
    for &x in xs {
        if !(x >= edges[0] && x <= edges[nb]) {
            continue;
        }
        // index of the last edge <= x
        let i = edges.partition_point(|&e| e <= x);
        let b = if i > nb {
            nb - 1
        } else {
            i.saturating_sub(1).min(nb - 1)
        };
        c[b] += 1.0;
    }
    c
}

/// Category counts of both samples over the union of their categories (sorted by
/// label). Categories seen only in `current` get a reference count of 0 — smooth
/// before taking log-ratios.
pub fn categorical_counts<S: AsRef<str>>(
    reference: &[S],
    current: &[S],
) -> (Vec<String>, Vec<f64>, Vec<f64>) {
    let mut m: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for r in reference {
        m.entry(r.as_ref()).or_default().0 += 1.0;
    }
    for c in current {
        m.entry(c.as_ref()).or_default().1 += 1.0;
    }
    let labels = m.keys().map(|s| s.to_string()).collect();
    let rc = m.values().map(|v| v.0).collect();
    let cc = m.values().map(|v| v.1).collect();
    (labels, rc, cc)
}

//! Statistics computed from two [`QuantileSketch`]es, with their error bounds.

use super::QuantileSketch;
use crate::error::{Error, Result};
use crate::stats::{Method, TestResult, ks_pvalue};

/// A distance computed from sketches, with its guaranteed error bound.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SketchDistance {
    /// The estimate.
    pub value: f64,
    /// `|value − exact| ≤ max_error`.
    pub max_error: f64,
}

fn check_pair(a: &QuantileSketch, b: &QuantileSketch) -> Result<()> {
    if a.count == 0 {
        return Err(Error::EmptySample("reference sketch"));
    }
    if b.count == 0 {
        return Err(Error::EmptySample("current sketch"));
    }
    if a.alpha != b.alpha {
        return Err(Error::InvalidArgument(
            "sketches with different alpha".into(),
        ));
    }
    Ok(())
}

/// Wasserstein-1 between the distributions summarised by two sketches (each value
/// replaced by its bucket representative), with error bound `α (E|u| + E|v|)`.
///
/// # Errors
/// Empty sketches or different α.
pub fn wasserstein_from_sketches(a: &QuantileSketch, b: &QuantileSketch) -> Result<SketchDistance> {
    check_pair(a, b)?;
    let (oa, ob) = (a.ordered(), b.ordered());
    let (na, nb) = (a.count as f64, b.count as f64);
    let (mut i, mut j) = (0, 0);
    let (mut ca, mut cb) = (0u64, 0u64);
    let mut prev: Option<f64> = None;
    let mut w = 0.0;
    while i < oa.len() || j < ob.len() {
        let x = match (oa.get(i), ob.get(j)) {
            (Some(p), Some(q)) => p.0.min(q.0),
            (Some(p), None) => p.0,
            (None, Some(q)) => q.0,
            (None, None) => break,
        };
        if let Some(p) = prev {
            w += (ca as f64 / na - cb as f64 / nb).abs() * (x - p);
        }
        while i < oa.len() && oa[i].0 <= x {
            ca += oa[i].2;
            i += 1;
        }
        while j < ob.len() && ob[j].0 <= x {
            cb += ob[j].2;
            j += 1;
        }
        prev = Some(x);
    }
    Ok(SketchDistance {
        value: w,
        max_error: a.alpha * (a.mean_abs() + b.mean_abs()),
    })
}

/// KS statistic bracket and conservative p-value from two sketches.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SketchKs {
    /// `max |F_a − F_b|` over bucket boundaries (≤ the exact D).
    pub d_lower: f64,
    /// Upper bound on the exact D.
    pub d_upper: f64,
    /// p-value of `d_lower` (≥ the exact p-value).
    pub pvalue: f64,
}

/// Two-sample KS from sketches: brackets the exact statistic and returns the p-value
/// of the lower end (never more significant than the exact test).
///
/// # Errors
/// Empty sketches or different α.
pub fn ks_from_sketches(
    a: &QuantileSketch,
    b: &QuantileSketch,
    method: Method,
) -> Result<SketchKs> {
    check_pair(a, b)?;
    let (oa, ob) = (a.ordered(), b.ordered());
    let (na, nb) = (a.count as f64, b.count as f64);
    // merge on upper boundaries; buckets are identical on both sides for equal alpha
    let (mut i, mut j) = (0, 0);
    let (mut ca, mut cb) = (0u64, 0u64);
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    while i < oa.len() || j < ob.len() {
        let x = match (oa.get(i), ob.get(j)) {
            (Some(p), Some(q)) => p.1.min(q.1),
            (Some(p), None) => p.1,
            (None, Some(q)) => q.1,
            (None, None) => break,
        };
        let (fa0, fb0) = (ca as f64 / na, cb as f64 / nb);
        while i < oa.len() && oa[i].1 <= x {
            ca += oa[i].2;
            i += 1;
        }
        while j < ob.len() && ob[j].1 <= x {
            cb += ob[j].2;
            j += 1;
        }
        let (fa1, fb1) = (ca as f64 / na, cb as f64 / nb);
        lo = lo.max((fa1 - fb1).abs());
        hi = hi.max((fa1 - fb0).abs()).max((fa0 - fb1).abs()).max(lo);
    }
    let TestResult { pvalue, .. } = ks_pvalue(a.count, b.count, lo, method);
    Ok(SketchKs {
        d_lower: lo,
        d_upper: hi,
        pvalue,
    })
}

/// Bucket-aligned counts of two sketches over the union of their buckets (in value
/// order), ready for the histogram divergences (PSI, JS, KL, Hellinger, TV). The
/// binning is exact for the data (every value is in exactly one bucket); compared with
/// binning the raw data on arbitrary edges, the only difference is that the edges are
/// the sketch's bucket boundaries. Use `max_bins` to merge adjacent buckets into at
/// most that many bins of roughly equal pooled mass.
///
/// # Errors
/// Empty sketches, different α, or `max_bins == 0`.
pub fn aligned_counts(
    a: &QuantileSketch,
    b: &QuantileSketch,
    max_bins: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    check_pair(a, b)?;
    if max_bins == 0 {
        return Err(Error::InvalidArgument("max_bins = 0".into()));
    }
    let (oa, ob) = (a.ordered(), b.ordered());
    let (mut i, mut j) = (0, 0);
    let mut fine: Vec<(f64, f64)> = Vec::new();
    while i < oa.len() || j < ob.len() {
        let x = match (oa.get(i), ob.get(j)) {
            (Some(p), Some(q)) => p.1.min(q.1),
            (Some(p), None) => p.1,
            (None, Some(q)) => q.1,
            (None, None) => break,
        };
        let (mut ca, mut cb) = (0.0, 0.0);
        if i < oa.len() && oa[i].1 == x {
            ca = oa[i].2 as f64;
            i += 1;
        }
        if j < ob.len() && ob[j].1 == x {
            cb = ob[j].2 as f64;
            j += 1;
        }
        fine.push((ca, cb));
    }
    if fine.len() <= max_bins {
        return Ok(fine.into_iter().unzip());
    }
    let total: f64 = fine.iter().map(|p| p.0 + p.1).sum();
    let per = total / max_bins as f64;
    let (mut ra, mut rb) = (vec![], vec![]);
    let (mut acc_a, mut acc_b, mut acc) = (0.0, 0.0, 0.0);
    for (ca, cb) in fine {
        acc_a += ca;
        acc_b += cb;
        acc += ca + cb;
        if acc >= per * (ra.len() + 1) as f64 && ra.len() + 1 < max_bins {
            ra.push(acc_a);
            rb.push(acc_b);
            (acc_a, acc_b) = (0.0, 0.0);
        }
    }
    if acc_a + acc_b > 0.0 || ra.is_empty() {
        ra.push(acc_a);
        rb.push(acc_b);
    }
    Ok((ra, rb))
}

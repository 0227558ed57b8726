//! Divergences and distances between two distributions, on histograms (counts or
//! probabilities) or on raw samples.
//!
//! Histogram functions take two non-negative vectors of equal length and normalise
//! each to sum 1 first, like `scipy.stats.entropy` and
//! `scipy.spatial.distance.jensenshannon`. Empty bins follow scipy (`p > 0, q = 0`
//! gives `+inf` for KL) unless a [`Smoothing`] is applied first with [`smooth`].

use crate::error::{Error, Result, all_finite, nonempty};
use crate::sort::sorted_pair;

/// How empty bins are treated before a log-ratio divergence (KL, PSI).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Smoothing {
    /// Leave zeros: KL/PSI become `+inf` when the reference has an empty bin that the
    /// current sample fills (scipy's semantics).
    None,
    /// Replace each zero *proportion* by `eps` without renormalising (Evidently's
    /// choice, with `eps = 1e-4`).
    Epsilon(f64),
    /// Add `alpha` to every *count* (Laplace / additive smoothing), then normalise.
    Additive(f64),
}

impl Default for Smoothing {
    /// `Epsilon(1e-4)`, as Evidently's PSI/KL.
    fn default() -> Self {
        Smoothing::Epsilon(1e-4)
    }
}

fn check_pair(p: &[f64], q: &[f64]) -> Result<()> {
    if p.len() != q.len() {
        return Err(Error::LengthMismatch {
            what: "histogram bins",
            left: p.len(),
            right: q.len(),
        });
    }
    nonempty(p, "p")?;
    all_finite(p, "p")?;
    all_finite(q, "q")?;
    if p.iter().chain(q).any(|&v| v < 0.0) {
        return Err(Error::InvalidArgument(
            "histogram entries must be >= 0".into(),
        ));
    }
    if p.iter().sum::<f64>() <= 0.0 || q.iter().sum::<f64>() <= 0.0 {
        return Err(Error::InvalidArgument("histogram sums to zero".into()));
    }
    Ok(())
}

fn normalise(p: &[f64]) -> Vec<f64> {
    let s: f64 = p.iter().sum();
    p.iter().map(|v| v / s).collect()
}

/// Turns counts into proportions with the given smoothing of empty bins.
///
/// # Errors
/// Non-finite or negative entries, or an all-zero histogram.
pub fn smooth(counts: &[f64], smoothing: Smoothing) -> Result<Vec<f64>> {
    check_pair(counts, counts)?;
    Ok(match smoothing {
        Smoothing::None => normalise(counts),
        Smoothing::Epsilon(eps) => normalise(counts)
            .into_iter()
            .map(|v| if v == 0.0 { eps } else { v })
            .collect(),
        Smoothing::Additive(a) => {
            let c: Vec<f64> = counts.iter().map(|v| v + a).collect();
            normalise(&c)
        }
    })
}

/// `x ln(x / y)` with scipy's `rel_entr` conventions.
fn rel_entr(x: f64, y: f64) -> f64 {
    if x > 0.0 && y > 0.0 {
        x * (x / y).ln()
    } else if x == 0.0 && y >= 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

fn log_scale(base: Option<f64>) -> Result<f64> {
    match base {
        None => Ok(1.0),
        Some(b) if b > 0.0 && b != 1.0 && b.is_finite() => Ok(b.ln()),
        Some(b) => Err(Error::InvalidArgument(format!("log base {b}"))),
    }
}

/// Kullback–Leibler divergence `KL(p ‖ q)` = `scipy.stats.entropy(p, q, base)`.
/// `base = None` is the natural log.
///
/// # Errors
/// Lengths differ, entries negative/non-finite, an all-zero input, or a bad base.
pub fn kl_divergence(p: &[f64], q: &[f64], base: Option<f64>) -> Result<f64> {
    check_pair(p, q)?;
    let s = log_scale(base)?;
    let (p, q) = (normalise(p), normalise(q));
    Ok(p.iter().zip(&q).map(|(&a, &b)| rel_entr(a, b)).sum::<f64>() / s)
}

/// Jensen–Shannon *distance* = `scipy.spatial.distance.jensenshannon(p, q, base)`
/// (the square root of the divergence).
///
/// # Errors
/// As [`kl_divergence`].
pub fn js_distance(p: &[f64], q: &[f64], base: Option<f64>) -> Result<f64> {
    Ok(js_divergence(p, q, base)?.sqrt())
}

/// Jensen–Shannon divergence (the square of [`js_distance`]); bounded by `ln 2`
/// (1 in base 2).
///
/// # Errors
/// As [`kl_divergence`].
pub fn js_divergence(p: &[f64], q: &[f64], base: Option<f64>) -> Result<f64> {
    check_pair(p, q)?;
    let s = log_scale(base)?;
    let (p, q) = (normalise(p), normalise(q));
    let mut js = 0.0;
    for (&a, &b) in p.iter().zip(&q) {
        let m = (a + b) / 2.0;
        js += rel_entr(a, m) + rel_entr(b, m);
    }
    Ok((js / 2.0 / s).max(0.0))
}

/// Population Stability Index `Σ (c_i − r_i) ln(c_i / r_i)` of the current
/// proportions `c` against the reference `r`, after `smoothing` of empty bins.
///
/// # Errors
/// As [`kl_divergence`].
pub fn psi(reference: &[f64], current: &[f64], smoothing: Smoothing) -> Result<f64> {
    check_pair(reference, current)?;
    let r = smooth(reference, smoothing)?;
    let c = smooth(current, smoothing)?;
    Ok(r.iter()
        .zip(&c)
        .map(|(&r, &c)| {
            if r == c {
                0.0
            } else if r == 0.0 || c == 0.0 {
                f64::INFINITY
            } else {
                (c - r) * (c / r).ln()
            }
        })
        .sum())
}

/// Hellinger distance `sqrt(½ Σ (√p − √q)²)`, in `[0, 1]`.
///
/// # Errors
/// As [`kl_divergence`].
pub fn hellinger(p: &[f64], q: &[f64]) -> Result<f64> {
    check_pair(p, q)?;
    let (p, q) = (normalise(p), normalise(q));
    let s: f64 = p
        .iter()
        .zip(&q)
        .map(|(a, b)| (a.sqrt() - b.sqrt()).powi(2))
        .sum();
    Ok((0.5 * s).sqrt())
}

/// Total-variation distance `½ Σ |p − q|`, in `[0, 1]`.
///
/// # Errors
/// As [`kl_divergence`].
pub fn total_variation(p: &[f64], q: &[f64]) -> Result<f64> {
    check_pair(p, q)?;
    let (p, q) = (normalise(p), normalise(q));
    Ok(0.5 * p.iter().zip(&q).map(|(a, b)| (a - b).abs()).sum::<f64>())
}

/// Walks the merged order of two sorted samples and calls `f(delta, |F_u − F_v|)`
/// for each gap between consecutive pooled values (scipy's `_cdf_distance` layout;
/// gaps between tied values are 0 and contribute nothing). Branch-free merge.
#[inline]
fn cdf_walk(u: &[f64], v: &[f64], mut f: impl FnMut(f64, f64)) {
    let (nu, nv) = (u.len(), v.len());
    let inv = 1.0 / (nu as f64 * nv as f64);
    let get = |s: &[f64], k: usize| if k < s.len() { s[k] } else { f64::INFINITY };
    let (mut i, mut j) = (0usize, 0usize);
    let (mu, mv) = (nu as i64, nv as i64);
    for _ in 0..(nu + nv).saturating_sub(1) {
        let (x, y) = (get(u, i), get(v, j));
        let take_u = x <= y;
        let cur = if take_u { x } else { y };
        i += usize::from(take_u);
        j += usize::from(!take_u);
        let next = get(u, i).min(get(v, j));
        let diff = (i as i64 * mv - j as i64 * mu).unsigned_abs() as f64 * inv;
        f(next - cur, diff);
    }
}

fn prep(u: &[f64], v: &[f64]) -> Result<(Vec<f64>, Vec<f64>)> {
    nonempty(u, "u")?;
    nonempty(v, "v")?;
    all_finite(u, "u")?;
    all_finite(v, "v")?;
    Ok(sorted_pair(u, v))
}

/// Wasserstein-1 distance between the empirical distributions of two samples
/// (`scipy.stats.wasserstein_distance(u, v)`).
///
/// # Errors
/// An empty or non-finite sample.
pub fn wasserstein(u: &[f64], v: &[f64]) -> Result<f64> {
    let (u, v) = prep(u, v)?;
    Ok(wasserstein_sorted(&u, &v))
}

/// [`wasserstein`] on samples that are already sorted ascending and finite.
pub fn wasserstein_sorted(u: &[f64], v: &[f64]) -> f64 {
    let mut s = 0.0;
    cdf_walk(u, v, |d, diff| s += diff * d);
    s
}

/// Wasserstein-1 divided by the population standard deviation of the reference
/// (Evidently's "normed" Wasserstein; the denominator is floored at 1e-3 as Evidently
/// does, so a constant reference gives a finite value).
///
/// # Errors
/// As [`wasserstein`].
pub fn wasserstein_normalized(reference: &[f64], current: &[f64]) -> Result<f64> {
    let w = wasserstein(reference, current)?;
    Ok(w / std_pop(reference).max(1e-3))
}

/// Population standard deviation (ddof = 0), two-pass.
pub(crate) fn std_pop(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n).sqrt()
}

/// Energy distance (`scipy.stats.energy_distance(u, v)`): `sqrt(2) · ‖F_u − F_v‖₂`.
///
/// # Errors
/// As [`wasserstein`].
pub fn energy_distance(u: &[f64], v: &[f64]) -> Result<f64> {
    let (u, v) = prep(u, v)?;
    Ok(energy_distance_sorted(&u, &v))
}

/// [`energy_distance`] on samples that are already sorted ascending and finite.
pub fn energy_distance_sorted(u: &[f64], v: &[f64]) -> f64 {
    let mut s = 0.0;
    cdf_walk(u, v, |d, diff| s += diff * diff * d);
    (2.0 * s).sqrt()
}

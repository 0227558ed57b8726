//! Mann–Whitney U test (two-sided), matching `scipy.stats.mannwhitneyu`.

use super::{Method, TestResult};
use crate::error::{Error, Result, all_finite, nonempty};
use crate::special::norm_sf;

/// Largest `n_small * n_large` for which the exact distribution is built (it holds
/// `n_small * n_large + 1` doubles: 32 MB at the limit).
const MAX_EXACT_CELLS: u64 = 4_000_000;

/// Two-sided Mann–Whitney U test with continuity correction
/// (`scipy.stats.mannwhitneyu(x, y)`); `statistic` is `U1` of `x`.
///
/// `Method::Auto` follows scipy's rule — asymptotic if `n1 > 8 and n2 > 8` or there
/// are ties, else exact — except that it also goes asymptotic when `n1 · n2` exceeds
/// 4·10⁶ (bounded memory). The asymptotic p-value uses the tie-corrected variance.
///
/// # Errors
/// Empty or non-finite samples; `Method::Exact` with `n1 · n2 > 4·10⁶`.
pub fn mann_whitney_u(x: &[f64], y: &[f64], method: Method) -> Result<TestResult> {
    nonempty(x, "x")?;
    nonempty(y, "y")?;
    all_finite(x, "x")?;
    all_finite(y, "y")?;
    let (n1, n2) = (x.len(), y.len());
    let mut all: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    all.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let n = all.len();
    let mut r1 = 0.0f64;
    let mut tie_term = 0.0f64;
    let mut has_ties = false;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        if t > 1.0 {
            has_ties = true;
        }
        tie_term += t * t * t - t;
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for e in &all[i..=j] {
            if e.1 {
                r1 += avg;
            }
        }
        i = j + 1;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let u1 = r1 - n1f * (n1f + 1.0) / 2.0;
    let u2 = n1f * n2f - u1;
    let u = u1.max(u2);
    let method = match method {
        Method::Auto => {
            // scipy's rule; deviation: when the exact distribution would exceed
            // MAX_EXACT_CELLS (e.g. 8 vs 10^6 values) we use the asymptotic one, which
            // is very accurate there, instead of allocating without bound.
            if (n1 > 8 && n2 > 8) || has_ties || (n1 as u64) * (n2 as u64) > MAX_EXACT_CELLS {
                Method::Asymptotic
            } else {
                Method::Exact
            }
        }
        m => m,
    };
    let p = match method {
        Method::Exact => 2.0 * exact_sf(n1 as u64, n2 as u64, u as u64)?,
        _ => {
            let mu = n1f * n2f / 2.0;
            let nf = n1f + n2f;
            let s = (n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)))).sqrt();
            let z = (u - mu - 0.5) / s;
            if z.is_nan() { 1.0 } else { 2.0 * norm_sf(z) }
        }
    };
    Ok(TestResult {
        statistic: u1,
        pvalue: p.clamp(0.0, 1.0),
    })
}

/// `P(U >= u)` under the null without ties: the U distribution is the coefficient list
/// of the Gaussian binomial `[n1 + n2 choose n1]_q`, built as
/// `Π_{i=1..m} (1 - q^{M+i}) / (1 - q^i)` with `m = min(n1, n2)`, `M = max(n1, n2)`.
fn exact_sf(n1: u64, n2: u64, u: u64) -> Result<f64> {
    let (m, big) = (n1.min(n2), n1.max(n2));
    let umax = m * big;
    if umax > MAX_EXACT_CELLS {
        return Err(Error::LimitExceeded(format!(
            "exact Mann-Whitney distribution for sizes {n1} x {n2}"
        )));
    }
    let len = umax as usize + 1;
    let mut c = vec![0.0f64; len];
    c[0] = 1.0;
    let mut deg = 0usize;
    for i in 1..=m as usize {
        // multiply by (1 - q^{big+i})
        let s = big as usize + i;
        let newdeg = deg + s;
        for k in (s..=newdeg.min(len - 1)).rev() {
            c[k] -= c[k - s];
        }
        deg = newdeg;
        // divide by (1 - q^i): prefix recurrence c[k] += c[k - i]
        for k in i..len {
            c[k] += c[k - i];
        }
        deg -= i;
    }
    let total: f64 = c.iter().sum();
    // sf by the smaller tail, as scipy (symmetric distribution)
    let kc = umax - u;
    let tail: f64 = if u >= kc {
        c[..=kc as usize].iter().sum::<f64>()
    } else {
        // P(U >= u) = 1 - P(U <= u - 1)
        let below: f64 = c[..u as usize].iter().sum();
        return Ok(1.0 - below / total);
    };
    Ok(tail / total)
}

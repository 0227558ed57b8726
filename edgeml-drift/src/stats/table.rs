//! Tests on contingency tables: chi-square (homogeneity, scipy's `chi2_contingency`),
//! Fisher's exact test for 2×2 tables and the two-proportion z-test.

use super::TestResult;
use crate::error::{Error, Result};
use crate::special::{chi2_sf, ln_binom, norm_sf};

/// Chi-square test of independence on an `r × c` table given row by row
/// (`scipy.stats.chi2_contingency(table, correction=True)`): Yates' correction is
/// applied only when the degrees of freedom are 1.
///
/// Returns `(result, dof)`. With `dof == 0` (a single row or column) the statistic is
/// 0 and the p-value 1, as scipy.
///
/// # Errors
/// Ragged or empty tables, negative/non-finite counts, or a zero expected frequency
/// (a row or column summing to 0 — scipy raises there too; drop empty categories
/// first, as [`chi2_homogeneity`] does).
pub fn chi2_contingency(table: &[Vec<f64>]) -> Result<(TestResult, usize)> {
    let r = table.len();
    let c = table.first().map_or(0, Vec::len);
    if r == 0 || c == 0 {
        return Err(Error::InvalidArgument("empty contingency table".into()));
    }
    if table.iter().any(|row| row.len() != c) {
        return Err(Error::InvalidArgument("ragged contingency table".into()));
    }
    if table.iter().flatten().any(|&v| !v.is_finite() || v < 0.0) {
        return Err(Error::InvalidArgument(
            "counts must be finite and >= 0".into(),
        ));
    }
    let rows: Vec<f64> = table.iter().map(|row| row.iter().sum()).collect();
    let cols: Vec<f64> = (0..c)
        .map(|j| table.iter().map(|row| row[j]).sum())
        .collect();
    let total: f64 = rows.iter().sum();
    if rows.iter().chain(&cols).any(|&s| s == 0.0) {
        return Err(Error::InvalidArgument(
            "a row or column of the contingency table sums to 0 (zero expected frequency)".into(),
        ));
    }
    let dof = (r - 1) * (c - 1);
    if dof == 0 {
        return Ok((
            TestResult {
                statistic: 0.0,
                pvalue: 1.0,
            },
            0,
        ));
    }
    let mut stat = 0.0;
    for (i, row) in table.iter().enumerate() {
        for (j, &o) in row.iter().enumerate() {
            // scipy: expand_dims products / total**(d-1) — for 2D, rows*cols/total
            let e = rows[i] * cols[j] / total;
            let mut o = o;
            if dof == 1 {
                let diff = e - o;
                let mag = diff.abs().min(0.5);
                o += mag * diff.signum() * f64::from(diff != 0.0);
            }
            stat += (o - e) * (o - e) / e;
        }
    }
    Ok((
        TestResult {
            statistic: stat,
            pvalue: chi2_sf(stat, dof as f64),
        },
        dof,
    ))
}

/// Chi-square homogeneity test of two count vectors over the same categories
/// (a `2 × k` [`chi2_contingency`]), after dropping categories empty in both.
/// A single remaining category gives statistic 0 and p-value 1 (no evidence of drift).
///
/// # Errors
/// Length mismatch, bad counts, or an all-zero sample.
pub fn chi2_homogeneity(reference: &[f64], current: &[f64]) -> Result<(TestResult, usize)> {
    if reference.len() != current.len() {
        return Err(Error::LengthMismatch {
            what: "category counts",
            left: reference.len(),
            right: current.len(),
        });
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (&x, &y) in reference.iter().zip(current) {
        if x + y > 0.0 {
            a.push(x);
            b.push(y);
        }
    }
    chi2_contingency(&[a, b])
}

fn hypergeom_ln_pmf(k: u64, total: u64, good: u64, draws: u64) -> f64 {
    ln_binom(good, k) + ln_binom(total - good, draws - k) - ln_binom(total, draws)
}

/// Fisher's exact test (two-sided) on `[[a, b], [c, d]]`
/// (`scipy.stats.fisher_exact`). `statistic` is the sample odds ratio (`inf` when
/// `b·c = 0`, NaN — with p-value 1 — when a row or column is empty, as scipy).
///
/// The two-sided p-value sums the probabilities of all tables no more likely than the
/// observed one, with scipy's relative tolerance `1e-14`.
///
/// # Errors
/// Tables whose total exceeds 10⁹ (the sum runs over every feasible table; use the
/// chi-square test there).
pub fn fisher_exact_2x2(t: [[u64; 2]; 2]) -> Result<TestResult> {
    let [[a, b], [c, d]] = t;
    let total = a
        .checked_add(b)
        .and_then(|v| v.checked_add(c))
        .and_then(|v| v.checked_add(d));
    if total.is_none_or(|t| t > 1_000_000_000) {
        return Err(Error::LimitExceeded(
            "Fisher exact test on a table above 1e9".into(),
        ));
    }
    if a + b == 0 || c + d == 0 || a + c == 0 || b + d == 0 {
        return Ok(TestResult {
            statistic: f64::NAN,
            pvalue: 1.0,
        });
    }
    let odds = if c > 0 && b > 0 {
        (a * d) as f64 / (c * b) as f64
    } else {
        f64::INFINITY
    };
    let n1 = a + b;
    let n2 = c + d;
    let n = a + c;
    let total = n1 + n2; // <= 1e9, checked above
    let lo = n.saturating_sub(n2);
    let hi = n.min(n1);
    let pexact = hypergeom_ln_pmf(a, total, n1, n).exp();
    let mode = ((n + 1) as f64 * (n1 + 1) as f64 / (total + 2) as f64) as u64;
    let pmode = hypergeom_ln_pmf(mode, total, n1, n).exp();
    if (pexact - pmode).abs() / pexact.max(pmode) <= 1e-14 {
        return Ok(TestResult {
            statistic: odds,
            pvalue: 1.0,
        });
    }
    let gamma = 1.0 + 1e-14;
    let mut p = 0.0;
    for k in lo..=hi {
        let pk = hypergeom_ln_pmf(k, total, n1, n).exp();
        if pk <= pexact * gamma {
            p += pk;
        }
    }
    Ok(TestResult {
        statistic: odds,
        pvalue: p.min(1.0),
    })
}

/// Two-proportion z-test (Evidently's default for binary features): `k1` successes
/// out of `n1` against `k2` out of `n2`, pooled variance, two-sided normal p-value.
/// When the pooled proportion is 0 or 1 (both samples constant and equal) there is
/// no evidence of drift: statistic 0, p-value 1.
///
/// # Errors
/// `n1` or `n2` is 0, or a count exceeds its total.
pub fn z_test_proportions(k1: u64, n1: u64, k2: u64, n2: u64) -> Result<TestResult> {
    if n1 == 0 || n2 == 0 || k1 > n1 || k2 > n2 {
        return Err(Error::InvalidArgument(format!(
            "proportions {k1}/{n1}, {k2}/{n2}"
        )));
    }
    let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
    let pp = (p1 * n1 as f64 + p2 * n2 as f64) / (n1 + n2) as f64;
    let var = pp * (1.0 - pp) * (1.0 / n1 as f64 + 1.0 / n2 as f64);
    if var <= 0.0 {
        return Ok(TestResult {
            statistic: 0.0,
            pvalue: 1.0,
        });
    }
    let z = (p1 - p2) / var.sqrt();
    Ok(TestResult {
        statistic: z,
        pvalue: (2.0 * norm_sf(z.abs())).min(1.0),
    })
}

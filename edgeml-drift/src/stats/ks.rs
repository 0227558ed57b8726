//! Two-sample Kolmogorov–Smirnov test (two-sided), matching `scipy.stats.ks_2samp`.

use super::{Method, TestResult};
use crate::error::{Result, all_finite, nonempty};
use crate::sort::sorted_pair;
use crate::special::ln_gamma;
use crate::stats::kolmogorov::kstwo_sf;

/// scipy's `MAX_AUTO_N`: `auto` is exact when `max(n1, n2) <= 10_000`.
pub const KS_MAX_AUTO_N: usize = 10_000;

/// The KS statistic `D = sup |F1 - F2|` of two *sorted* finite samples, as scipy
/// computes it (`i/n1 - j/n2` after all values equal to each pooled value).
///
/// One branch-free merge pass: the ECDF difference is tracked as the exact integer
/// `i·n2 − j·n1` and only evaluated where the next pooled value differs (ties).
pub fn ks_statistic_sorted(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return f64::NAN;
    }
    let get = |s: &[f64], k: usize| if k < s.len() { s[k] } else { f64::INFINITY };
    let (mut i, mut j) = (0usize, 0usize);
    let (mut hi, mut lo) = (0i64, 0i64);
    let (mut hi_ij, mut lo_ij) = ((n1, n2), (n1, n2));
    let (m1, m2) = (n1 as i64, n2 as i64);
    for _ in 0..n1 + n2 {
        let (x, y) = (get(a, i), get(b, j));
        let take_a = x <= y;
        let v = if take_a { x } else { y };
        i += usize::from(take_a);
        j += usize::from(!take_a);
        let next = get(a, i).min(get(b, j));
        let num = if next != v {
            i as i64 * m2 - j as i64 * m1
        } else {
            0
        };
        if num > hi {
            hi = num;
            hi_ij = (i, j);
        }
        if num < lo {
            lo = num;
            lo_ij = (i, j);
        }
    }
    let f = |(i, j): (usize, usize)| i as f64 / n1 as f64 - j as f64 / n2 as f64;
    let maxs = f(hi_ij);
    let mins = (-f(lo_ij)).clamp(0.0, 1.0);
    if mins > maxs { mins } else { maxs }
}

/// One-sided statistics `(max(F1 − F2), max(F2 − F1))` of two sorted finite samples
/// (scipy's `maxS` and `minS`).
fn one_sided_statistics(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (n1, n2) = (a.len(), b.len());
    let get = |s: &[f64], k: usize| if k < s.len() { s[k] } else { f64::INFINITY };
    let (mut i, mut j) = (0usize, 0usize);
    let (mut maxs, mut mins) = (f64::NEG_INFINITY, f64::INFINITY);
    while i < n1 || j < n2 {
        let x = get(a, i).min(get(b, j));
        while i < n1 && a[i] <= x {
            i += 1;
        }
        while j < n2 && b[j] <= x {
            j += 1;
        }
        let d = i as f64 / n1 as f64 - j as f64 / n2 as f64;
        maxs = maxs.max(d);
        mins = mins.min(d);
    }
    (maxs, (-mins).clamp(0.0, 1.0))
}

/// `scipy.special.binom(n, k)` for integers `0 <= k <= n`: the exact product loop for
/// `min(k, n - k) < 20`, else `1 / ((n + 1) B(n − k + 1, k + 1))`.
fn binom_f64(n: u64, k: u64) -> f64 {
    let kx = k.min(n - k);
    if kx < 20 {
        let (mut num, mut den) = (1.0f64, 1.0f64);
        for i in 1..=kx {
            num *= (i + n - kx) as f64;
            den *= i as f64;
            if num.abs() > 1e50 {
                num /= den;
                den = 1.0;
            }
        }
        return num / den;
    }
    let (nf, kf) = (n as f64, k as f64);
    let lbeta = ln_gamma(nf - kf + 1.0) + ln_gamma(kf + 1.0) - ln_gamma(nf + 2.0);
    1.0 / (nf + 1.0) / lbeta.exp()
}

/// Number of lattice paths from (0,0) to (m,n) that go below the diagonal band
/// (scipy's `_count_paths_outside_method`, Hodges 1958); `None` on overflow.
fn count_paths_outside(m: u64, n: u64, g: u64, h: u64) -> Option<f64> {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (mg, ng) = (m / g, n / g);
    let lxj = n + (mg.saturating_sub(h)) / mg;
    // (mg - h) // mg with Python floor division, h may exceed mg
    let lxj = if h > mg {
        n.saturating_sub((h - mg).div_ceil(mg))
    } else {
        lxj
    };
    if lxj == 0 {
        return Some(binom_f64(m + n, n));
    }
    let xj: Vec<u64> = (0..lxj).map(|j| (h + mg * j).div_ceil(ng)).collect();
    let mut bv = vec![0.0f64; lxj as usize];
    bv[0] = 1.0;
    for j in 1..lxj as usize {
        let mut bj = binom_f64(xj[j] + j as u64, j as u64);
        for i in 0..j {
            let bin = binom_f64(xj[j] - xj[i] + (j - i) as u64, (j - i) as u64);
            bj -= bin * bv[i];
        }
        if !bj.is_finite() {
            return None; // scipy's FloatingPointError
        }
        bv[j] = bj;
    }
    let mut num = 0.0;
    for j in 0..lxj as usize {
        let bin = binom_f64((m - xj[j]) + (n - j as u64), n - j as u64);
        num += bv[j] * bin;
    }
    num.is_finite().then_some(num)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `P(D_{n,n} >= h/n)` (scipy's `_compute_prob_outside_square`).
fn prob_outside_square(n: u64, h: u64) -> f64 {
    let mut p = 0.0;
    let mut k = (n / h) as i64;
    let (n, h) = (n as f64, h as i64);
    while k >= 0 {
        let mut p1 = 1.0;
        let kh = (k * h) as f64;
        for j in 0..h {
            let jf = j as f64;
            p1 = (n - kh - jf) * p1 / (n + kh + jf + 1.0);
        }
        p = p1 * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// Proportion of lattice paths that leave the band `|x/m - y/n| < h/lcm`
/// (Hodges' inside method with Viehmann's recursion for `1 - p`, as scipy's
/// `_compute_outer_prob_inside_method`).
fn outer_prob_inside(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (mg, ng) = ((m / g) as i64, (n / g) as i64);
    let (h, n_i) = (h as i64, n as i64);
    let ceil_div = |a: i64, b: i64| -> i64 { a.div_euclid(b) + i64::from(a.rem_euclid(b) != 0) };
    let mut minj: i64 = 0;
    let mut maxj: i64 = ceil_div(h, mg).min(n_i + 1);
    let mut curlen = maxj - minj;
    let len_a = ((2 * maxj + 2).min(n_i + 1)) as usize;
    let mut a = vec![1.0f64; len_a.max(1)];
    for v in a.iter_mut().take(maxj as usize) {
        *v = 0.0;
    }
    for i in 1..=(m as i64) {
        let (lastminj, lastlen) = (minj, curlen);
        minj = ((ng * i - h).div_euclid(mg) + 1).max(0).min(n_i);
        maxj = ceil_div(ng * i + h, mg).min(n_i + 1);
        if maxj <= minj {
            return 1.0;
        }
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        let fi = i as f64;
        for jj in 0..(maxj - minj) {
            let j = (jj + minj) as f64;
            val = (a[(jj + minj - lastminj) as usize] * fi + val * j) / (fi + j);
            a[jj as usize] = val;
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            let s = (maxj - minj) as usize;
            let e = (s + (lastlen - curlen) as usize).min(a.len());
            for v in &mut a[s..e] {
                *v = 1.0;
            }
        }
    }
    a[(maxj - minj - 1) as usize]
}

/// Exact two-sided p-value; `None` when the computation is not trustworthy
/// (scipy then falls back to the asymptotic distribution).
fn exact_pvalue(n1: u64, n2: u64, d: f64) -> (f64, Option<f64>) {
    let g = gcd(n1, n2);
    let lcm = (n1 / g) * n2;
    let h = (d * lcm as f64).round_ties_even() as u64;
    let d = h as f64 / lcm as f64;
    if h == 0 {
        return (d, Some(1.0));
    }
    let p = if n1 == n2 {
        prob_outside_square(n1, h)
    } else {
        outer_prob_inside(n1, n2, g, h)
    };
    if p.is_finite() && (0.0..=1.0).contains(&p) {
        (d, Some(p))
    } else {
        (d, None)
    }
}

fn asymp_pvalue(n1: u64, n2: u64, d: f64) -> f64 {
    let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
    let en = (m * n / (m + n)).round_ties_even();
    kstwo_sf(en as u64, d)
}

/// Two-sided two-sample KS test (`scipy.stats.ks_2samp(a, b, method=...)`).
///
/// `Method::Auto` is exact when `max(n1, n2) <= 10_000`, else asymptotic, and the
/// exact path falls back to asymptotic when it overflows — all as scipy. Ties are
/// handled by evaluating the ECDFs after all equal values.
///
/// # Errors
/// An empty or non-finite sample.
pub fn ks_2samp(a: &[f64], b: &[f64], method: Method) -> Result<TestResult> {
    nonempty(a, "a")?;
    nonempty(b, "b")?;
    all_finite(a, "a")?;
    all_finite(b, "b")?;
    let (sa, sb) = sorted_pair(a, b);
    Ok(ks_2samp_sorted(&sa, &sb, method))
}

/// [`ks_2samp`] on samples already sorted ascending, finite and non-empty.
pub fn ks_2samp_sorted(a: &[f64], b: &[f64], method: Method) -> TestResult {
    let d = ks_statistic_sorted(a, b);
    ks_pvalue(a.len() as u64, b.len() as u64, d, method)
}

/// Two-sided p-value of a KS statistic `d` for sample sizes `n1`, `n2` (both > 0),
/// with scipy's method selection. The returned statistic is `d`, snapped to the
/// lattice `h / lcm(n1, n2)` when the exact path is taken (as scipy).
pub fn ks_pvalue(n1: u64, n2: u64, d: f64, method: Method) -> TestResult {
    let exact = match method {
        Method::Exact => true,
        Method::Asymptotic => false,
        Method::Auto => n1.max(n2) as usize <= KS_MAX_AUTO_N,
    };
    if exact {
        let g = gcd(n1, n2);
        // scipy switches to asymp when n1g * n2g would overflow int32
        if ((n1 / g) as f64) < i32::MAX as f64 / (n2 / g) as f64 {
            let (d2, p) = exact_pvalue(n1, n2, d);
            if let Some(p) = p {
                return TestResult {
                    statistic: d2,
                    pvalue: p.clamp(0.0, 1.0),
                };
            }
            return TestResult {
                statistic: d2,
                pvalue: asymp_pvalue(n1, n2, d2).clamp(0.0, 1.0),
            };
        }
    }
    TestResult {
        statistic: d,
        pvalue: asymp_pvalue(n1, n2, d).clamp(0.0, 1.0),
    }
}

/// Alternative hypothesis of a one- or two-sided test (scipy's `alternative`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Alternative {
    /// The distributions differ.
    #[default]
    TwoSided,
    /// The CDF of the first sample lies below the second's somewhere (scipy `'less'`:
    /// statistic `max(F2 − F1)`).
    Less,
    /// The CDF of the first sample lies above the second's somewhere (scipy
    /// `'greater'`: statistic `max(F1 − F2)`).
    Greater,
}

/// Two-sample KS test with a choice of alternative
/// (`scipy.stats.ks_2samp(a, b, alternative, method)`). One-sided exact p-values
/// count lattice paths (Hodges); when that overflows (`binom(n1 + n2, n1)` beyond
/// f64) scipy — and we — fall back to Hodges' asymptotic formula.
///
/// # Errors
/// An empty or non-finite sample.
pub fn ks_2samp_alternative(
    a: &[f64],
    b: &[f64],
    alternative: Alternative,
    method: Method,
) -> Result<TestResult> {
    if alternative == Alternative::TwoSided {
        return ks_2samp(a, b, method);
    }
    nonempty(a, "a")?;
    nonempty(b, "b")?;
    all_finite(a, "a")?;
    all_finite(b, "b")?;
    let (sa, sb) = sorted_pair(a, b);
    let (maxs, mins) = one_sided_statistics(&sa, &sb);
    let d = if alternative == Alternative::Less {
        mins
    } else {
        maxs
    };
    let (n1, n2) = (a.len() as u64, b.len() as u64);
    let exact = match method {
        Method::Exact => true,
        Method::Asymptotic => false,
        Method::Auto => n1.max(n2) as usize <= KS_MAX_AUTO_N,
    };
    let g = gcd(n1, n2);
    if exact && ((n1 / g) as f64) < i32::MAX as f64 / (n2 / g) as f64 {
        let lcm = (n1 / g) * n2;
        let h = (d * lcm as f64).round_ties_even() as u64;
        let d2 = h as f64 / lcm as f64;
        if h == 0 {
            return Ok(TestResult {
                statistic: d2,
                pvalue: 1.0,
            });
        }
        let p = if n1 == n2 {
            Some(
                (0..h)
                    .map(|j| (n1 - j) as f64 / (n1 as f64 + j as f64 + 1.0))
                    .product::<f64>(),
            )
        } else {
            // scipy raises on overflow and falls back; checking the total first skips
            // the O(n²) path count when it cannot succeed
            let bin = binom_f64(n1 + n2, n1);
            if bin.is_finite() {
                count_paths_outside(n1, n2, g, h)
                    .filter(|&num| num <= bin)
                    .map(|num| num / bin)
            } else {
                None
            }
        };
        if let Some(p) = p.filter(|p| (0.0..=1.0).contains(p)) {
            return Ok(TestResult {
                statistic: d2,
                pvalue: p,
            });
        }
        return Ok(TestResult {
            statistic: d2,
            pvalue: hodges(n1, n2, d2),
        });
    }
    Ok(TestResult {
        statistic: d,
        pvalue: hodges(n1, n2, d),
    })
}

/// Hodges' one-sided asymptotic tail (his Eqn 5.3), as scipy.
fn hodges(n1: u64, n2: u64, d: f64) -> f64 {
    let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
    let en = m * n / (m + n);
    let z = en.sqrt() * d;
    let expt = -2.0 * z * z - 2.0 * z * (m + 2.0 * n) / (m * n * (m + n)).sqrt() / 3.0;
    expt.exp().clamp(0.0, 1.0)
}

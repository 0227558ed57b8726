//! Cramér–von Mises two-sample test (`scipy.stats.cramervonmises_2samp`) and the
//! Anderson–Darling k-sample test (`scipy.stats.anderson_ksamp`, midrank variant).

use super::TestResult;
use crate::error::{Error, Result, all_finite, nonempty};
use crate::special::ln_gamma;
use core::f64::consts::PI;
use std::collections::BTreeMap;

/// Modified Bessel function of the second kind `K_ν(x)`, `x > 0`, by the trapezoidal
/// rule on `∫_0^∞ exp(−x cosh t) cosh(ν t) dt` (step 0.05: the rule converges like
/// `exp(−π²/h)` for this analytic integrand, far below double precision).
fn bessel_k(nu: f64, x: f64) -> f64 {
    let h: f64 = 0.05;
    let mut s = 0.5 * (-x).exp();
    let mut t = h;
    loop {
        let f = (-x * t.cosh()).exp() * (nu * t).cosh();
        s += f;
        if f < s * 1e-18 || t > 50.0 {
            break;
        }
        t += h;
    }
    s * h
}

/// CDF of the limiting Cramér–von Mises distribution, summed as scipy's
/// `_cdf_cvm_inf` (terms added until one falls below 1e-7).
fn cdf_cvm_inf(x: f64) -> f64 {
    let mut tot = 0.0;
    let mut k = 0u32;
    loop {
        let kf = f64::from(k);
        let u = (ln_gamma(kf + 0.5) - ln_gamma(kf + 1.0)).exp() / (PI.powf(1.5) * x.sqrt());
        let y = 4.0 * kf + 1.0;
        let q = y * y / (16.0 * x);
        let z = u * y.sqrt() * (-q).exp() * bessel_k(0.25, q);
        tot += z;
        if z.abs() < 1e-7 || k > 10_000 {
            return tot;
        }
        k += 1;
    }
}

fn average_ranks(z: &[(f64, usize)]) -> Vec<f64> {
    let mut r = vec![0.0; z.len()];
    let mut i = 0;
    while i < z.len() {
        let mut j = i;
        while j + 1 < z.len() && z[j + 1].0 == z[i].0 {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for e in &mut r[i..=j] {
            *e = avg;
        }
        i = j + 1;
    }
    r
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Exact p-value of the CvM rank statistic `u` (Xiao, Gordon & Yakovlev 2006): the
/// distribution of `Σ (a·v − b·u)²` over all lattice paths, as scipy's
/// `_pval_cvm_2samp_exact`.
fn cvm_exact_pvalue(s: f64, m: u64, n: u64) -> f64 {
    let lcm = m / gcd(m, n) * n;
    let (a, b) = (lcm / m, lcm / n);
    let mn = m * n;
    let zeta = ((lcm * lcm * (m + n)) as f64 * (6.0 * s - (mn * (4 * mn - 1)) as f64))
        .div_euclid((6 * mn * mn) as f64);
    let m = m as usize;
    let mut gs: Vec<BTreeMap<u64, u64>> = vec![BTreeMap::new(); m + 1];
    gs[0].insert(0, 1);
    for u in 0..=n {
        let mut next = Vec::with_capacity(m + 1);
        let mut tmp: BTreeMap<u64, u64> = BTreeMap::new();
        for (v, g) in gs.iter().enumerate() {
            let mut merged = tmp;
            for (&val, &f) in g {
                *merged.entry(val).or_default() += f;
            }
            let d = (a * v as u64) as i64 - (b * u) as i64;
            let res = (d * d) as u64;
            tmp = merged.into_iter().map(|(val, f)| (val + res, f)).collect();
            next.push(tmp.clone());
        }
        gs = next;
    }
    let total: f64 = gs[m].values().map(|&f| f as f64).sum();
    let hit: f64 = gs[m]
        .iter()
        .filter(|(v, _)| **v as f64 >= zeta)
        .map(|(_, &f)| f as f64)
        .sum();
    hit / total
}

/// Cramér–von Mises two-sample test (`scipy.stats.cramervonmises_2samp`): `auto` is
/// exact when `max(nx, ny) <= 20`, else the asymptotic distribution (p = 1 when the
/// normalised statistic is below 0.003, as scipy).
///
/// # Errors
/// Empty or non-finite samples, a sample of size 1 (scipy returns NaN there);
/// `Method::Exact` with more than 20 values per sample
/// (the path enumeration grows combinatorially).
pub fn cramervonmises_2samp(x: &[f64], y: &[f64], method: super::Method) -> Result<TestResult> {
    nonempty(x, "x")?;
    nonempty(y, "y")?;
    all_finite(x, "x")?;
    all_finite(y, "y")?;
    let (nx, ny) = (x.len(), y.len());
    if nx < 2 || ny < 2 {
        // scipy returns NaN here (`too_small=1`)
        return Err(Error::InvalidArgument(format!(
            "Cramér-von Mises needs at least 2 observations per sample, got {nx} and {ny}"
        )));
    }
    let mut z: Vec<(f64, usize)> = x
        .iter()
        .map(|&v| (v, 0))
        .chain(y.iter().map(|&v| (v, 1)))
        .collect();
    z.sort_by(|p, q| p.0.total_cmp(&q.0).then(p.1.cmp(&q.1)));
    let r = average_ranks(&z);
    let (mut sx, mut sy) = (0.0, 0.0);
    let (mut ix, mut iy) = (0usize, 0usize);
    for (e, rk) in z.iter().zip(&r) {
        if e.1 == 0 {
            ix += 1;
            sx += (rk - ix as f64) * (rk - ix as f64);
        } else {
            iy += 1;
            sy += (rk - iy as f64) * (rk - iy as f64);
        }
    }
    let u = nx as f64 * sx + ny as f64 * sy;
    let (k, n) = ((nx * ny) as f64, (nx + ny) as f64);
    let t = u / (k * n) - (4.0 * k - 1.0) / (6.0 * n);
    let exact = match method {
        super::Method::Auto => nx.max(ny) <= 20,
        super::Method::Exact => true,
        super::Method::Asymptotic => false,
    };
    if exact && nx.max(ny) > 20 {
        return Err(Error::LimitExceeded(format!(
            "exact Cramér-von Mises for sizes {nx} x {ny} (max 20)"
        )));
    }
    let p = if exact {
        cvm_exact_pvalue(u, nx as u64, ny as u64)
    } else {
        let et = (1.0 + 1.0 / n) / 6.0;
        let (fx, fy) = (nx as f64, ny as f64);
        let vt = (n + 1.0) * (4.0 * k * n - 3.0 * (fx * fx + fy * fy) - 2.0 * k)
            / (45.0 * n * n * 4.0 * k);
        let tn = 1.0 / 6.0 + (t - et) / (45.0 * vt).sqrt();
        if tn >= 0.003 {
            (1.0 - cdf_cvm_inf(tn)).max(0.0)
        } else {
            1.0
        }
    };
    Ok(TestResult {
        statistic: t,
        pvalue: p.clamp(0.0, 1.0),
    })
}

/// Result of [`anderson_ksamp`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AndersonResult {
    /// Standardised statistic `(A²kN − (k−1)) / σ` (scipy's `statistic`).
    pub statistic: f64,
    /// Critical values at significance 25%, 10%, 5%, 2.5%, 1%, 0.5%, 0.1%.
    pub critical_values: [f64; 7],
    /// p-value interpolated as scipy (quadratic fit of `ln(sig)` on the critical
    /// values), capped to `[0.001, 0.25]`.
    pub pvalue: f64,
}

/// Least-squares quadratic through `(x_i, y_i)` (numpy's `polyfit(x, y, 2)`, with its
/// column scaling), evaluated at `t`.
#[allow(clippy::needless_range_loop)] // small dense linear algebra reads best indexed
fn quadfit_eval(x: &[f64; 7], y: &[f64; 7], t: f64) -> f64 {
    let cols: [[f64; 7]; 3] = [x.map(|v| v * v), *x, [1.0; 7]];
    let scale: Vec<f64> = cols
        .iter()
        .map(|c| c.iter().map(|v| v * v).sum::<f64>().sqrt())
        .collect();
    let mut ata = [[0.0f64; 3]; 3];
    let mut atb = [0.0f64; 3];
    for i in 0..3 {
        for j in 0..3 {
            ata[i][j] = (0..7)
                .map(|r| cols[i][r] / scale[i] * cols[j][r] / scale[j])
                .sum();
        }
        atb[i] = (0..7).map(|r| cols[i][r] / scale[i] * y[r]).sum();
    }
    // Gaussian elimination with partial pivoting on the 3x3 normal equations
    let mut m = [[0.0f64; 4]; 3];
    for i in 0..3 {
        m[i][..3].copy_from_slice(&ata[i]);
        m[i][3] = atb[i];
    }
    for c in 0..3 {
        let p = (c..3)
            .max_by(|&a, &b| m[a][c].abs().total_cmp(&m[b][c].abs()))
            .unwrap_or(c);
        m.swap(c, p);
        for r in (c + 1)..3 {
            let f = m[r][c] / m[c][c];
            for k in c..4 {
                m[r][k] -= f * m[c][k];
            }
        }
    }
    let mut coef = [0.0f64; 3];
    for c in (0..3).rev() {
        let s: f64 = ((c + 1)..3).map(|k| m[c][k] * coef[k]).sum();
        coef[c] = (m[c][3] - s) / m[c][c];
    }
    let c: Vec<f64> = coef.iter().zip(&scale).map(|(c, s)| c / s).collect();
    (c[0] * t + c[1]) * t + c[2]
}

/// Anderson–Darling k-sample test, midrank variant (`scipy.stats.anderson_ksamp`,
/// whose default is midrank), with scipy's p-value interpolation and caps.
///
/// # Errors
/// Fewer than two samples, an empty or non-finite sample, fewer than 2 distinct values
/// or fewer than 4 observations in total (the variance formula divides by `N − 3`).
#[allow(clippy::needless_range_loop)]
pub fn anderson_ksamp(samples: &[&[f64]]) -> Result<AndersonResult> {
    if samples.len() < 2 {
        return Err(Error::InvalidArgument(
            "anderson_ksamp needs at least two samples".into(),
        ));
    }
    for s in samples {
        nonempty(s, "sample")?;
        all_finite(s, "sample")?;
    }
    let k = samples.len();
    let mut z: Vec<f64> = samples.iter().flat_map(|s| s.iter().copied()).collect();
    z.sort_by(f64::total_cmp);
    let nn = z.len();
    if nn < 4 {
        return Err(Error::InvalidArgument(format!(
            "anderson_ksamp needs >= 4 observations, got {nn}"
        )));
    }
    // distinct values with their multiplicities
    let mut zstar: Vec<(f64, usize, usize)> = Vec::new(); // (value, left index, count)
    let mut i = 0;
    while i < nn {
        let mut j = i;
        while j + 1 < nn && z[j + 1] == z[i] {
            j += 1;
        }
        zstar.push((z[i], i, j - i + 1));
        i = j + 1;
    }
    if zstar.len() < 2 {
        return Err(Error::InvalidArgument(
            "anderson_ksamp needs more than one distinct observation".into(),
        ));
    }
    let n_f = nn as f64;
    let mut a2 = 0.0;
    for s in samples {
        let mut ss = s.to_vec();
        ss.sort_by(f64::total_cmp);
        let mut inner = 0.0;
        let mut p = 0usize; // # of ss < current value
        for &(v, left, cnt) in &zstar {
            let lj = if nn == zstar.len() { 1.0 } else { cnt as f64 };
            let bj = left as f64 + lj / 2.0;
            let mut q = p;
            while q < ss.len() && ss[q] <= v {
                q += 1;
            }
            let fij = (q - p) as f64;
            let mij = q as f64 - fij / 2.0;
            let d = n_f * mij - bj * ss.len() as f64;
            inner += lj / n_f * d * d / (bj * (n_f - bj) - n_f * lj / 4.0);
            p = q;
        }
        a2 += inner / ss.len() as f64;
    }
    a2 *= (n_f - 1.0) / n_f;
    let hh: f64 = samples.iter().map(|s| 1.0 / s.len() as f64).sum();
    // hs_cs = cumsum(1 / [N-1, N-2, ..., 2])
    let mut hs = Vec::with_capacity(nn - 2);
    let mut acc = 0.0;
    for d in (2..nn).rev() {
        acc += 1.0 / d as f64;
        hs.push(acc);
    }
    let h = acc + 1.0;
    let g: f64 = hs.iter().enumerate().map(|(t, v)| v / (t + 2) as f64).sum();
    let kf = k as f64;
    let a = (4.0 * g - 6.0) * (kf - 1.0) + (10.0 - 6.0 * g) * hh;
    let b = (2.0 * g - 4.0) * kf * kf + 8.0 * h * kf + (2.0 * g - 14.0 * h - 4.0) * hh - 8.0 * h
        + 4.0 * g
        - 6.0;
    let c = (6.0 * h + 2.0 * g - 2.0) * kf * kf
        + (4.0 * h - 4.0 * g + 6.0) * kf
        + (2.0 * h - 6.0) * hh
        + 4.0 * h;
    let d = (2.0 * h + 6.0) * kf * kf - 4.0 * h * kf;
    let sigmasq =
        (a * n_f.powi(3) + b * n_f * n_f + c * n_f + d) / ((n_f - 1.0) * (n_f - 2.0) * (n_f - 3.0));
    let m = kf - 1.0;
    let stat = (a2 - m) / sigmasq.sqrt();
    let b0 = [0.675, 1.281, 1.645, 1.96, 2.326, 2.573, 3.085];
    let b1 = [-0.245, 0.25, 0.678, 1.149, 1.822, 2.364, 3.615];
    let b2 = [-0.105, -0.305, -0.362, -0.391, -0.396, -0.345, -0.154];
    let mut crit = [0.0f64; 7];
    for i in 0..7 {
        crit[i] = b0[i] + b1[i] / m.sqrt() + b2[i] / m;
    }
    let sig = [0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.001];
    let cmin = crit.iter().copied().fold(f64::INFINITY, f64::min);
    let cmax = crit.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let pvalue = if stat < cmin {
        0.25
    } else if stat > cmax {
        0.001
    } else {
        quadfit_eval(&crit, &sig.map(f64::ln), stat).exp()
    };
    Ok(AndersonResult {
        statistic: stat,
        critical_values: crit,
        pvalue,
    })
}

//! The distribution of the two-sided one-sample Kolmogorov–Smirnov statistic `D_n`
//! (scipy's `kstwo`), following the algorithm selection of Simard & L'Ecuyer (2011)
//! as scipy's `_kolmogn` does: Ruben–Gambino closed forms at the ends, the exact
//! one-sided Smirnov sum when the tail is small, the Durbin matrix (Marsaglia–Tsang–
//! Wang) where it is cheap, and the Pelz–Good expansion otherwise.
//!
//! Deviation: for `n <= 140` scipy uses Pomeranz's recursion in the middle range
//! `0.754693 < n x² <= 4`; we use the Durbin matrix there too. Both are exact
//! algorithms, so results agree to rounding (checked against scipy in the fixtures).

use crate::special::ln_gamma;
use core::f64::consts::PI;

/// `P(D+_n >= x)`: the exact one-sided Smirnov tail (Birnbaum & Tingey 1951), summed
/// in log space from the largest term outwards.
pub(crate) fn smirnov(n: u64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    if x >= 1.0 {
        return 0.0;
    }
    let nf = n as f64;
    let jmax = (nf * (1.0 - x)).floor() as u64;
    let lnfact_n = ln_gamma(nf + 1.0);
    let term = |j: u64| -> f64 {
        let jf = j as f64;
        let a = 1.0 - x - jf / nf;
        let b = x + jf / nf;
        if a <= 0.0 {
            // j/n = 1 - x exactly: the term is 0 unless n - j = 0.
            return if j == n {
                (b.ln() * (jf - 1.0)).exp()
            } else {
                0.0
            };
        }
        let lc = lnfact_n - ln_gamma(jf + 1.0) - ln_gamma(nf - jf + 1.0);
        (lc + (nf - jf) * a.ln() + (jf - 1.0) * b.ln()).exp()
    };
    let mut sum = 0.0;
    let mut past_peak_small = 0;
    let mut prev = 0.0;
    for j in 0..=jmax {
        let t = term(j);
        sum += t;
        if t < prev && t < sum * 1e-18 {
            past_peak_small += 1;
            if past_peak_small > 3 {
                break;
            }
        }
        prev = t;
    }
    (x * sum).clamp(0.0, 1.0)
}

/// `ln(n!) - n ln n` via Stirling, as scipy's `_log_nfactorial_div_n_pow_n`.
fn log_nfact_div_npow(n: f64) -> f64 {
    ln_gamma(n + 1.0) - n * n.ln()
}

/// Durbin matrix CDF `P(D_n <= d)` (Marsaglia, Tsang & Wang 2003).
fn durbin_cdf(n: u64, d: f64) -> f64 {
    let nd = n as f64 * d;
    if d >= 1.0 {
        return 1.0;
    }
    if nd <= 0.5 {
        return 0.0;
    }
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let m = 2 * k - 1;
    let mut hm = vec![0.0f64; m * m];
    let mut v = vec![0.0f64; m];
    let mut w = vec![0.0f64; m];
    let mut fac = 1.0;
    for j in 1..=m {
        w[j - 1] = fac;
        fac /= j as f64;
        v[j - 1] = (1.0 - h.powi(j as i32)) * fac;
    }
    let tt = (2.0 * h - 1.0).max(0.0).powi(m as i32) - 2.0 * h.powi(m as i32);
    v[m - 1] = (1.0 + tt) * fac;
    for i in 1..m {
        for r in (i - 1)..m {
            hm[r * m + i] = w[r - (i - 1)];
        }
    }
    for r in 0..m {
        hm[r * m] = v[r];
    }
    for c in 0..m {
        hm[(m - 1) * m + c] = v[m - 1 - c];
    }
    let matmul = |a: &[f64], b: &[f64]| -> Vec<f64> {
        let mut out = vec![0.0; m * m];
        for i in 0..m {
            for l in 0..m {
                let av = a[i * m + l];
                if av == 0.0 {
                    continue;
                }
                let brow = &b[l * m..(l + 1) * m];
                let orow = &mut out[i * m..(i + 1) * m];
                for (o, bv) in orow.iter_mut().zip(brow) {
                    *o += av * bv;
                }
            }
        }
        out
    };
    let mut pw = vec![0.0; m * m];
    for i in 0..m {
        pw[i * m + i] = 1.0;
    }
    let mut nn = n;
    let mut expnt: i64 = 0;
    let mut hexp: i64 = 0;
    let e128 = 2f64.powi(128);
    while nn > 0 {
        if nn % 2 == 1 {
            pw = matmul(&pw, &hm);
            expnt += hexp;
        }
        hm = matmul(&hm, &hm);
        hexp *= 2;
        if hm[(k - 1) * m + (k - 1)].abs() > e128 {
            for x in hm.iter_mut() {
                *x /= e128;
            }
            hexp += 128;
        }
        nn /= 2;
    }
    let mut p = pw[(k - 1) * m + (k - 1)];
    let em128 = 1.0 / e128;
    for i in 1..=n {
        p = i as f64 * p / n as f64;
        if p.abs() < em128 {
            p *= e128;
            expnt -= 128;
        }
    }
    if expnt != 0 {
        p *= 2f64.powi(expnt as i32);
    }
    p.clamp(0.0, 1.0)
}

/// Pelz–Good approximation to `P(D_n <= x)`.
fn pelz_good_cdf(n: u64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let nf = n as f64;
    let z = nf.sqrt() * x;
    let (z2, z3, z4, z6) = (z * z, z * z * z, z.powi(4), z.powi(6));
    let pi2 = PI * PI;
    let (pi4, pi6) = (pi2 * pi2, pi2 * pi2 * pi2);
    let qlog = -pi2 / 8.0 / z2;
    if qlog < -708.0 {
        return 0.0;
    }
    let q = qlog.exp();
    let k1a = -z2;
    let k1b = pi2 / 4.0;
    let k2a = 6.0 * z6 + 2.0 * z4;
    let k2b = (2.0 * z4 - 5.0 * z2) * pi2 / 4.0;
    let k2c = pi4 * (1.0 - 2.0 * z2) / 16.0;
    let k3d = pi6 * (5.0 - 30.0 * z2) / 64.0;
    let k3c = pi4 * (-60.0 * z2 + 212.0 * z4) / 16.0;
    let k3b = pi2 * (135.0 * z4 - 96.0 * z6) / 4.0;
    let k3a = -30.0 * z6 - 90.0 * z.powi(8);
    let mut kk = [0.0f64; 4];
    let maxk = (16.0 * z / PI).ceil() as i64;
    for k in (1..=maxk).rev() {
        let m = (2 * k - 1) as f64;
        let (m2, m4, m6) = (m * m, m.powi(4), m.powi(6));
        let qp = q.powf(8.0 * k as f64);
        let c = [
            1.0,
            k1a + k1b * m2,
            k2a + k2b * m2 + k2c * m4,
            k3a + k3b * m2 + k3c * m4 + k3d * m6,
        ];
        for (a, b) in kk.iter_mut().zip(c) {
            *a = *a * qp + b;
        }
    }
    let s2p = (2.0 * PI).sqrt();
    let den = [z, 6.0 * z4, 72.0 * z.powi(7), 6480.0 * z.powi(10)];
    for (a, d) in kk.iter_mut().zip(den) {
        *a = *a * q * s2p / d;
    }
    let q2 = (-pi2 / 2.0 / z2).exp();
    let sqrt3z = 3f64.sqrt() * z;
    let (mut e2, mut e3) = (0.0, 0.0);
    for k in (1..=maxk).rev() {
        let kf = k as f64;
        let k2 = kf * kf;
        let qp = q2.powf(k2);
        e2 += k2 * qp;
        let kpi = PI * kf;
        e3 += (sqrt3z + kpi) * (sqrt3z - kpi) * k2 * qp;
    }
    kk[2] += e2 * pi2 * s2p / (-36.0 * z3);
    kk[3] += e3 * pi2 * s2p / (216.0 * z6);
    let mut sum = 0.0;
    for (i, a) in kk.iter().enumerate() {
        sum += a / nf.powf(i as f64 / 2.0);
    }
    sum
}

/// Survival function of `D_n`: `P(D_n > x)` (scipy's `kstwo.sf(x, n)`).
/// (`scipy.stats.kstwo.sf(x, n)`; `n >= 1`, NaN for `n = 0`.)
pub fn kstwo_sf(n: u64, x: f64) -> f64 {
    if n == 0 || x.is_nan() {
        return f64::NAN;
    }
    if x >= 1.0 {
        return 0.0;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let nf = n as f64;
    let t = nf * x;
    if t <= 1.0 {
        if t <= 0.5 {
            return 1.0;
        }
        let prob = if n <= 140 {
            (1..=n).fold(1.0, |p, i| p * (i as f64 * (1.0 / nf) * (2.0 * t - 1.0)))
        } else {
            (log_nfact_div_npow(nf) + nf * (2.0 * t - 1.0).ln()).exp()
        };
        return (1.0 - prob).clamp(0.0, 1.0);
    }
    if t >= nf - 1.0 {
        return (2.0 * (1.0 - x).powf(nf)).clamp(0.0, 1.0);
    }
    if x >= 0.5 {
        return (2.0 * smirnov(n, x)).clamp(0.0, 1.0);
    }
    let nx2 = t * x;
    if n <= 140 {
        if nx2 <= 4.0 {
            return (1.0 - durbin_cdf(n, x)).clamp(0.0, 1.0);
        }
        return (2.0 * smirnov(n, x)).clamp(0.0, 1.0);
    }
    if nx2 >= 370.0 {
        return 0.0;
    }
    if nx2 >= 2.2 {
        return (2.0 * smirnov(n, x)).clamp(0.0, 1.0);
    }
    let cdf = if n <= 100_000 && nf * x.powf(1.5) <= 1.4 {
        durbin_cdf(n, x)
    } else {
        pelz_good_cdf(n, x)
    };
    (1.0 - cdf).clamp(0.0, 1.0)
}

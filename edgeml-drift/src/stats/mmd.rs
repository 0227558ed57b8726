//! Maximum mean discrepancy with a Gaussian (RBF) kernel and a seeded permutation
//! p-value.

use super::TestResult;
use crate::error::{Error, Result, all_finite, nonempty};
use crate::rng::SplitMix64;

/// Configuration of [`mmd_test`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MmdConfig {
    /// Kernel bandwidth σ in `k(x, y) = exp(-(x - y)² / (2σ²))`; `None` = the median
    /// heuristic (median of the pairwise absolute differences of the pooled sample).
    pub bandwidth: Option<f64>,
    /// Number of permutations (default 500).
    pub permutations: usize,
    /// Seed of the SplitMix64 generator that draws the permutations (default 0).
    pub seed: u64,
    /// Refuse pooled samples larger than this (the kernel matrix is n², default 4096).
    pub max_pooled: usize,
}

impl Default for MmdConfig {
    fn default() -> Self {
        Self {
            bandwidth: None,
            permutations: 500,
            seed: 0,
            max_pooled: 4096,
        }
    }
}

/// Biased (V-statistic) squared MMD between `x` and `y` with RBF bandwidth `sigma`.
///
/// # Errors
/// Empty or non-finite samples, a bandwidth that is not positive.
pub fn mmd2_rbf(x: &[f64], y: &[f64], sigma: f64) -> Result<f64> {
    nonempty(x, "x")?;
    nonempty(y, "y")?;
    all_finite(x, "x")?;
    all_finite(y, "y")?;
    if !(sigma > 0.0 && sigma.is_finite()) {
        return Err(Error::InvalidArgument(format!("bandwidth {sigma}")));
    }
    let g = 1.0 / (2.0 * sigma * sigma);
    let mean_k = |a: &[f64], b: &[f64]| -> f64 {
        let mut s = 0.0;
        for &u in a {
            for &v in b {
                s += (-(u - v) * (u - v) * g).exp();
            }
        }
        s / (a.len() as f64 * b.len() as f64)
    };
    Ok(mean_k(x, x) + mean_k(y, y) - 2.0 * mean_k(x, y))
}

fn median_heuristic(z: &[f64]) -> f64 {
    let mut d = Vec::with_capacity(z.len() * (z.len() - 1) / 2);
    for i in 0..z.len() {
        for j in (i + 1)..z.len() {
            d.push((z[i] - z[j]).abs());
        }
    }
    if d.is_empty() {
        return 1.0;
    }
    let mid = d.len() / 2;
    let (_, m, _) = d.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if m > 0.0 { m } else { 1.0 }
}

/// MMD two-sample test: `statistic` is the biased MMD², `pvalue` is
/// `(k + 1) / (B + 1)` where `k` counts the `B` seeded permutations whose MMD² is at
/// least the observed one. A zero median distance (e.g. constant samples) falls back
/// to bandwidth 1.
///
/// # Errors
/// Empty/non-finite samples, or a pooled size above `config.max_pooled`.
pub fn mmd_test(x: &[f64], y: &[f64], config: MmdConfig) -> Result<TestResult> {
    nonempty(x, "x")?;
    nonempty(y, "y")?;
    all_finite(x, "x")?;
    all_finite(y, "y")?;
    let n = x.len() + y.len();
    if n > config.max_pooled {
        return Err(Error::LimitExceeded(format!(
            "MMD on {n} pooled values (max_pooled = {})",
            config.max_pooled
        )));
    }
    let z: Vec<f64> = x.iter().chain(y).copied().collect();
    let sigma = config.bandwidth.unwrap_or_else(|| median_heuristic(&z));
    if !(sigma > 0.0 && sigma.is_finite()) {
        return Err(Error::InvalidArgument(format!("bandwidth {sigma}")));
    }
    let g = 1.0 / (2.0 * sigma * sigma);
    let mut k = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            k[i * n + j] = (-(z[i] - z[j]) * (z[i] - z[j]) * g).exp();
        }
    }
    let nx = x.len();
    let stat_of = |lab: &[bool]| -> f64 {
        let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
        for i in 0..n {
            let row = &k[i * n..(i + 1) * n];
            for j in 0..n {
                match (lab[i], lab[j]) {
                    (true, true) => sxx += row[j],
                    (false, false) => syy += row[j],
                    _ => sxy += row[j],
                }
            }
        }
        let (a, b) = (nx as f64, (n - nx) as f64);
        sxx / (a * a) + syy / (b * b) - sxy / (a * b)
    };
    let mut lab: Vec<bool> = (0..n).map(|i| i < nx).collect();
    let observed = stat_of(&lab);
    let mut rng = SplitMix64::new(config.seed);
    let mut hits = 0usize;
    for _ in 0..config.permutations {
        for i in (1..n).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            lab.swap(i, j);
        }
        if stat_of(&lab) >= observed - 1e-12 * observed.abs() {
            hits += 1;
        }
    }
    let p = (hits as f64 + 1.0) / (config.permutations as f64 + 1.0);
    Ok(TestResult {
        statistic: observed,
        pvalue: p,
    })
}

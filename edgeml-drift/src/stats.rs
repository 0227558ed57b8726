//! Two-sample tests with p-values, matching `scipy.stats`, and multiple-testing
//! corrections.

mod ecdf_two_sample;
mod kolmogorov;
mod ks;
mod mmd;
mod rank;
mod table;

pub use ecdf_two_sample::{AndersonResult, anderson_ksamp, cramervonmises_2samp};
pub use kolmogorov::kstwo_sf;
pub use ks::{
    Alternative, KS_MAX_AUTO_N, ks_2samp, ks_2samp_alternative, ks_2samp_sorted, ks_pvalue,
    ks_statistic_sorted,
};
pub use mmd::{MmdConfig, mmd_test, mmd2_rbf};
pub use rank::mann_whitney_u;
pub use table::{chi2_contingency, chi2_homogeneity, fisher_exact_2x2, z_test_proportions};

/// How a p-value is computed when a test has an exact and an asymptotic form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Method {
    /// scipy's `method='auto'` rule for the test.
    #[default]
    Auto,
    /// The exact null distribution.
    Exact,
    /// The asymptotic distribution.
    Asymptotic,
}

/// A test statistic and its p-value.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TestResult {
    /// The test statistic (scipy's `statistic`).
    pub statistic: f64,
    /// The p-value, in `[0, 1]`.
    pub pvalue: f64,
}

/// Bonferroni-adjusted p-values: `min(1, m · p_i)`.
pub fn bonferroni(pvalues: &[f64]) -> Vec<f64> {
    let m = pvalues.len() as f64;
    pvalues.iter().map(|p| (p * m).min(1.0)).collect()
}

/// Benjamini–Hochberg adjusted p-values (statsmodels' `fdr_bh`):
/// `q_(i) = min_{j >= i} min(1, m p_(j) / j)` in sorted order, returned in input order.
/// NaN p-values are passed through as NaN and do not count towards `m`.
pub fn benjamini_hochberg(pvalues: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..pvalues.len())
        .filter(|&i| !pvalues[i].is_nan())
        .collect();
    idx.sort_by(|&a, &b| pvalues[a].total_cmp(&pvalues[b]));
    let m = idx.len() as f64;
    let mut out = vec![f64::NAN; pvalues.len()];
    let mut running = 1.0f64;
    for (rank, &i) in idx.iter().enumerate().rev() {
        let q = pvalues[i] * m / (rank as f64 + 1.0);
        running = running.min(q).min(1.0);
        out[i] = running;
    }
    out
}

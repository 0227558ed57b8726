//! Per-feature drift reports with Evidently-like default test selection, serialisable
//! with serde.
//!
//! # Default test per feature (Evidently's `DataDriftPreset` rules)
//! `n` is the number of finite reference values, `u` the number of distinct values in
//! reference ∪ current:
//!
//! | feature | `n <= 1000` | `n > 1000` |
//! |---|---|---|
//! | numeric, `u > 5` | KS p-value < 0.05 | normed Wasserstein ≥ 0.1 |
//! | numeric, `u <= 5` | chi-square p < 0.05 (`u > 2`), else z-test p < 0.05 | Jensen–Shannon distance ≥ 0.1 |
//! | categorical | chi-square p < 0.05 (`u > 2`), else z-test p < 0.05 | Jensen–Shannon distance ≥ 0.1 |
//!
//! Deviation: Evidently's "chi-square" is a goodness-of-fit test of the current counts
//! against reference proportions, which is undefined when the current sample has a
//! category the reference lacks; we use the homogeneity test (`chi2_contingency` on
//! the 2 × k table), which handles unseen categories.
//!
//! Non-finite values (NaN, ±inf; empty cells of a categorical column) are removed
//! before testing and reported in [`FeatureDrift::nonfinite_reference`] /
//! [`FeatureDrift::nonfinite_current`]. A feature that cannot be tested (no finite
//! value left) gets `statistic: None` and a `note` saying why; it is not drifted.

use crate::binning::{BinRule, Binning, bin_edges, categorical_counts, histogram};
use crate::divergence::{self as dv, Smoothing};
use crate::error::{Error, Result};
use crate::sketch::NonFinite;
use crate::sort::sorted;
use crate::stats::{self, Method};
use std::collections::{BTreeSet, HashSet};

/// The values of one column.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValues {
    /// Numbers (NaN / ±inf allowed: they are counted, not tested).
    Numeric(Vec<f64>),
    /// Labels; `None` is a missing value (counted as NaN).
    Categorical(Vec<Option<String>>),
}

impl ColumnValues {
    /// Infers the type of a column of text cells: numeric when every non-empty cell
    /// parses as `f64` (`nan`, `inf` included), otherwise categorical. Empty cells
    /// are missing values (NaN / `None`).
    pub fn infer<S: AsRef<str>>(cells: &[S]) -> Self {
        let numeric = cells.iter().all(|c| {
            let t = c.as_ref().trim();
            t.is_empty() || t.parse::<f64>().is_ok()
        });
        if numeric {
            ColumnValues::Numeric(
                cells
                    .iter()
                    .map(|c| c.as_ref().trim().parse::<f64>().unwrap_or(f64::NAN))
                    .collect(),
            )
        } else {
            ColumnValues::Categorical(
                cells
                    .iter()
                    .map(|c| {
                        let t = c.as_ref().trim();
                        (!t.is_empty()).then(|| t.to_string())
                    })
                    .collect(),
            )
        }
    }

    /// Categorical view (numbers formatted with `{}`; NaN becomes missing).
    fn to_categorical(&self) -> Vec<Option<String>> {
        match self {
            ColumnValues::Categorical(v) => v.clone(),
            ColumnValues::Numeric(v) => v
                .iter()
                .map(|x| x.is_finite().then(|| format!("{x}")))
                .collect(),
        }
    }
}

/// A test or distance selectable for every feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestKind {
    /// Evidently's default choice per feature (see the module docs).
    Auto,
    /// Two-sample Kolmogorov–Smirnov p-value (numeric).
    Ks,
    /// Mann–Whitney U p-value (numeric).
    MannWhitney,
    /// Cramér–von Mises p-value (numeric).
    Cvm,
    /// Anderson–Darling k-sample p-value (numeric; capped to [0.001, 0.25] as scipy).
    Anderson,
    /// Wasserstein-1 divided by the reference std (numeric).
    Wasserstein,
    /// Energy distance (numeric).
    Energy,
    /// Population Stability Index.
    Psi,
    /// Kullback–Leibler divergence KL(reference ‖ current).
    Kl,
    /// Jensen–Shannon distance (natural log).
    Js,
    /// Hellinger distance.
    Hellinger,
    /// Total-variation distance.
    Tv,
    /// Chi-square homogeneity p-value.
    Chi2,
    /// Two-proportion z-test p-value (binary features).
    Z,
}

impl TestKind {
    /// Parses a CLI name (`auto`, `ks`, `mann_whitney`, `cvm`, `anderson`, `wasserstein`, `energy`, `psi`,
    /// `kl`, `js`, `hellinger`, `tv`, `chi2`, `z`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "auto" => Self::Auto,
            "ks" => Self::Ks,
            "mann_whitney" | "mwu" => Self::MannWhitney,
            "cvm" | "cramer_von_mises" => Self::Cvm,
            "anderson" | "ad" => Self::Anderson,
            "wasserstein" => Self::Wasserstein,
            "energy" => Self::Energy,
            "psi" => Self::Psi,
            "kl" => Self::Kl,
            "js" | "jensenshannon" => Self::Js,
            "hellinger" => Self::Hellinger,
            "tv" => Self::Tv,
            "chi2" | "chisquare" => Self::Chi2,
            "z" => Self::Z,
            _ => return None,
        })
    }

    /// Whether the score is a p-value (drift when below the threshold) rather than a
    /// distance (drift when at or above it).
    pub fn is_pvalue(self) -> bool {
        matches!(
            self,
            Self::Ks | Self::MannWhitney | Self::Cvm | Self::Anderson | Self::Chi2 | Self::Z
        )
    }

    /// Evidently's default threshold: 0.05 for p-values, 0.1 for distances.
    pub fn default_threshold(self) -> f64 {
        if self.is_pvalue() { 0.05 } else { 0.1 }
    }
}

/// Multiple-testing correction applied to the p-values of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    /// None (Evidently's behaviour).
    #[default]
    None,
    /// Bonferroni.
    Bonferroni,
    /// Benjamini–Hochberg.
    BenjaminiHochberg,
}

/// Report configuration; the default reproduces Evidently's `DataDriftPreset`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReportConfig {
    /// Test for every feature (`Auto`).
    pub test: TestKind,
    /// Threshold overriding the test's default.
    pub threshold: Option<f64>,
    /// Correction of p-values across features (`None`).
    pub correction: Correction,
    /// Share of drifted features for dataset drift (0.5, Evidently's `drift_share`).
    pub drift_share: f64,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            test: TestKind::Auto,
            threshold: None,
            correction: Correction::None,
            drift_share: 0.5,
        }
    }
}

/// Drift of one feature.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureDrift {
    /// Column name.
    pub name: String,
    /// `"numeric"` or `"categorical"`.
    pub kind: String,
    /// The test used.
    pub test: TestKind,
    /// Test statistic or distance (`None` when the feature could not be tested).
    pub statistic: Option<f64>,
    /// p-value for p-value tests.
    pub p_value: Option<f64>,
    /// p-value after the configured correction.
    pub p_value_adjusted: Option<f64>,
    /// Threshold used.
    pub threshold: f64,
    /// Whether drift was detected.
    pub drifted: bool,
    /// Finite reference values tested.
    pub n_reference: usize,
    /// Finite current values tested.
    pub n_current: usize,
    /// Non-finite / missing reference values (not tested).
    pub nonfinite_reference: NonFinite,
    /// Non-finite / missing current values (not tested).
    pub nonfinite_current: NonFinite,
    /// Why the result is partial, if it is.
    pub note: Option<String>,
}

/// A drift report over all features.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DriftReport {
    /// Per-feature results, in input order.
    pub features: Vec<FeatureDrift>,
    /// Number of drifted features.
    pub n_drifted: usize,
    /// `n_drifted / features.len()`.
    pub share_drifted: f64,
    /// `share_drifted >= drift_share`.
    pub dataset_drift: bool,
}

fn split_numeric(v: &[f64]) -> (Vec<f64>, NonFinite) {
    let mut nf = NonFinite::default();
    let mut out = Vec::with_capacity(v.len());
    for &x in v {
        if x.is_finite() {
            out.push(x);
        } else if x.is_nan() {
            nf.nan += 1;
        } else if x > 0.0 {
            nf.pos_inf += 1;
        } else {
            nf.neg_inf += 1;
        }
    }
    (out, nf)
}

fn split_cat(v: &[Option<String>]) -> (Vec<&str>, NonFinite) {
    let mut nf = NonFinite::default();
    let out = v
        .iter()
        .filter_map(|x| {
            if x.is_none() {
                nf.nan += 1;
            }
            x.as_deref()
        })
        .collect();
    (out, nf)
}

/// Score of one test on numeric samples (finite, non-empty, `a` sorted, `b` sorted).
fn numeric_score(test: TestKind, a: &[f64], b: &[f64]) -> Result<(f64, Option<f64>)> {
    let hist = |smoothing: Option<Smoothing>| -> Result<(Vec<f64>, Vec<f64>)> {
        let e = bin_edges(a, b, Binning::EqualWidth(BinRule::Sturges))?;
        let (ha, hb) = (histogram(a, &e), histogram(b, &e));
        Ok(match smoothing {
            Some(s) => (dv::smooth(&ha, s)?, dv::smooth(&hb, s)?),
            None => (ha, hb),
        })
    };
    Ok(match test {
        TestKind::Ks => {
            let r = stats::ks_2samp_sorted(a, b, Method::Auto);
            (r.statistic, Some(r.pvalue))
        }
        TestKind::MannWhitney => {
            let r = stats::mann_whitney_u(a, b, Method::Auto)?;
            (r.statistic, Some(r.pvalue))
        }
        TestKind::Cvm => {
            let r = stats::cramervonmises_2samp(a, b, Method::Auto)?;
            (r.statistic, Some(r.pvalue))
        }
        TestKind::Anderson => {
            let r = stats::anderson_ksamp(&[a, b])?;
            (r.statistic, Some(r.pvalue))
        }
        TestKind::Wasserstein => {
            let w = dv::wasserstein_sorted(a, b);
            (w / dv::std_pop(a).max(1e-3), None)
        }
        TestKind::Energy => (dv::energy_distance_sorted(a, b), None),
        TestKind::Psi => {
            // counts in, Evidently's zero replacement inside (no renormalisation)
            let (p, q) = hist(None)?;
            (dv::psi(&p, &q, Smoothing::default())?, None)
        }
        TestKind::Kl => {
            let (p, q) = hist(Some(Smoothing::default()))?;
            (dv::kl_divergence(&p, &q, None)?, None)
        }
        TestKind::Js => {
            let (p, q) = hist(None)?;
            (dv::js_distance(&p, &q, None)?, None)
        }
        TestKind::Hellinger => {
            let (p, q) = hist(None)?;
            (dv::hellinger(&p, &q)?, None)
        }
        TestKind::Tv => {
            let (p, q) = hist(None)?;
            (dv::total_variation(&p, &q)?, None)
        }
        TestKind::Chi2 | TestKind::Z | TestKind::Auto => {
            let sa: Vec<String> = a.iter().map(|x| format!("{x}")).collect();
            let sb: Vec<String> = b.iter().map(|x| format!("{x}")).collect();
            let ra: Vec<&str> = sa.iter().map(String::as_str).collect();
            let rb: Vec<&str> = sb.iter().map(String::as_str).collect();
            return categorical_score(test, &ra, &rb);
        }
    })
}

fn categorical_score(test: TestKind, a: &[&str], b: &[&str]) -> Result<(f64, Option<f64>)> {
    let (labels, ca, cb) = categorical_counts(a, b);
    Ok(match test {
        TestKind::Chi2 => {
            let (r, _) = stats::chi2_homogeneity(&ca, &cb)?;
            (r.statistic, Some(r.pvalue))
        }
        TestKind::Z => {
            // success = the first label (sorted); with one label there is no variance
            let (k1, k2) = if labels.is_empty() {
                (0.0, 0.0)
            } else {
                (ca[0], cb[0])
            };
            let r =
                stats::z_test_proportions(k1 as u64, a.len() as u64, k2 as u64, b.len() as u64)?;
            (r.statistic, Some(r.pvalue))
        }
        TestKind::Js => (dv::js_distance(&ca, &cb, None)?, None),
        TestKind::Psi => (dv::psi(&ca, &cb, Smoothing::default())?, None),
        TestKind::Kl => {
            let (p, q) = (
                dv::smooth(&ca, Smoothing::default())?,
                dv::smooth(&cb, Smoothing::default())?,
            );
            (dv::kl_divergence(&p, &q, None)?, None)
        }
        TestKind::Hellinger => (dv::hellinger(&ca, &cb)?, None),
        TestKind::Tv => (dv::total_variation(&ca, &cb)?, None),
        other => {
            return Err(Error::InvalidArgument(format!(
                "test {other:?} needs a numeric feature"
            )));
        }
    })
}

fn n_unique_numeric(a: &[f64], b: &[f64], cap: usize) -> usize {
    let mut s: HashSet<u64> = HashSet::new();
    for x in a.iter().chain(b) {
        s.insert((x + 0.0).to_bits());
        if s.len() > cap {
            break;
        }
    }
    s.len()
}

fn auto_test(numeric: bool, n_ref: usize, n_unique: usize) -> TestKind {
    match (numeric, n_ref <= 1000, n_unique <= 5) {
        (true, true, false) => TestKind::Ks,
        (true, false, false) => TestKind::Wasserstein,
        (_, true, _) => {
            if n_unique > 2 {
                TestKind::Chi2
            } else {
                TestKind::Z
            }
        }
        (_, false, _) => TestKind::Js,
    }
}

/// Drift of one feature.
///
/// A numeric-only test (KS, Mann–Whitney, Wasserstein, energy) requested for a
/// categorical feature falls back to the default categorical test, with a `note`.
///
/// A test that cannot run on the data (e.g. Cramér–von Mises on a single value) leaves
/// `statistic: None` with the reason in `note`.
///
/// # Errors
/// None at present; the `Result` is kept for future validation.
pub fn feature_drift(
    name: &str,
    reference: &ColumnValues,
    current: &ColumnValues,
    config: &ReportConfig,
) -> Result<FeatureDrift> {
    let numeric = matches!(
        (reference, current),
        (ColumnValues::Numeric(_), ColumnValues::Numeric(_))
    );
    let mut fd = FeatureDrift {
        name: name.to_string(),
        kind: if numeric { "numeric" } else { "categorical" }.to_string(),
        test: config.test,
        statistic: None,
        p_value: None,
        p_value_adjusted: None,
        threshold: 0.0,
        drifted: false,
        n_reference: 0,
        n_current: 0,
        nonfinite_reference: NonFinite::default(),
        nonfinite_current: NonFinite::default(),
        note: None,
    };
    let score = if let (true, ColumnValues::Numeric(r), ColumnValues::Numeric(c)) =
        (numeric, reference, current)
    {
        let (r, nr) = split_numeric(r);
        let (c, nc) = split_numeric(c);
        (
            fd.n_reference,
            fd.n_current,
            fd.nonfinite_reference,
            fd.nonfinite_current,
        ) = (r.len(), c.len(), nr, nc);
        if config.test == TestKind::Auto {
            fd.test = auto_test(true, r.len(), n_unique_numeric(&r, &c, 5));
        }
        if r.is_empty() || c.is_empty() {
            None
        } else {
            Some(numeric_score(fd.test, &sorted(&r), &sorted(&c)))
        }
    } else {
        let (rs, cs) = (reference.to_categorical(), current.to_categorical());
        let (r, nr) = split_cat(&rs);
        let (c, nc) = split_cat(&cs);
        (
            fd.n_reference,
            fd.n_current,
            fd.nonfinite_reference,
            fd.nonfinite_current,
        ) = (r.len(), c.len(), nr, nc);
        if config.test == TestKind::Auto {
            let u: BTreeSet<&str> = r.iter().chain(&c).copied().collect();
            fd.test = auto_test(false, r.len(), u.len());
        }
        if matches!(
            fd.test,
            TestKind::Ks
                | TestKind::MannWhitney
                | TestKind::Cvm
                | TestKind::Anderson
                | TestKind::Wasserstein
                | TestKind::Energy
        ) {
            // Evidently raises here; one categorical column should not sink a whole
            // report, so fall back to the default categorical test and say so.
            let u: BTreeSet<&str> = r.iter().chain(&c).copied().collect();
            let fallback = auto_test(false, r.len(), u.len());
            fd.note = Some(format!(
                "{:?} does not apply to a categorical feature; used {fallback:?}",
                fd.test
            ));
            fd.test = fallback;
        }
        if r.is_empty() || c.is_empty() {
            None
        } else {
            Some(categorical_score(fd.test, &r, &c))
        }
    };
    fd.threshold = config.threshold.unwrap_or(fd.test.default_threshold());
    match score {
        Some(Err(e)) => {
            // one untestable feature must not sink the report: say why instead
            fd.note = Some(format!("not tested: {e}"));
        }
        None => {
            fd.note = Some(format!(
                "no finite values in the {} sample",
                if fd.n_reference == 0 {
                    "reference"
                } else {
                    "current"
                }
            ));
        }
        Some(Ok((s, p))) => {
            fd.statistic = Some(s);
            fd.p_value = p;
            fd.p_value_adjusted = p;
            fd.drifted = match p {
                Some(p) => p < fd.threshold,
                None => s >= fd.threshold,
            };
        }
    }
    Ok(fd)
}

/// Drift report over named columns; both sides must have the same column names (in
/// any order — the report follows the reference order).
///
/// # Errors
/// Columns missing on either side ([`Error::Schema`]), or a test that does not apply.
pub fn drift_report(
    reference: &[(String, ColumnValues)],
    current: &[(String, ColumnValues)],
    config: &ReportConfig,
) -> Result<DriftReport> {
    let rn: BTreeSet<&str> = reference.iter().map(|c| c.0.as_str()).collect();
    let cn: BTreeSet<&str> = current.iter().map(|c| c.0.as_str()).collect();
    if rn != cn || rn.len() != reference.len() || cn.len() != current.len() {
        let only_r: Vec<&str> = rn.difference(&cn).copied().collect();
        let only_c: Vec<&str> = cn.difference(&rn).copied().collect();
        return Err(Error::Schema(format!(
            "columns differ (or are duplicated): only in reference {only_r:?}, only in current {only_c:?}"
        )));
    }
    let mut features = Vec::with_capacity(reference.len());
    for (name, rv) in reference {
        let cv = current.iter().find(|c| &c.0 == name).map(|c| &c.1);
        let Some(cv) = cv else { continue };
        features.push(feature_drift(name, rv, cv, config)?);
    }
    if config.correction != Correction::None {
        let idx: Vec<usize> = (0..features.len())
            .filter(|&i| features[i].p_value.is_some())
            .collect();
        let ps: Vec<f64> = idx
            .iter()
            .map(|&i| features[i].p_value.unwrap_or(1.0))
            .collect();
        let adj = match config.correction {
            Correction::Bonferroni => stats::bonferroni(&ps),
            _ => stats::benjamini_hochberg(&ps),
        };
        for (k, &i) in idx.iter().enumerate() {
            features[i].p_value_adjusted = Some(adj[k]);
            features[i].drifted = adj[k] < features[i].threshold;
        }
    }
    let n_drifted = features.iter().filter(|f| f.drifted).count();
    let share = if features.is_empty() {
        0.0
    } else {
        n_drifted as f64 / features.len() as f64
    };
    Ok(DriftReport {
        n_drifted,
        share_drifted: share,
        dataset_drift: !features.is_empty() && share >= config.drift_share,
        features,
    })
}

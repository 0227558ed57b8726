//! Two-sided tabular CUSUM and a confidence monitor (no river counterpart).

use edgeml_core::DriftDetector;
use std::collections::VecDeque;

/// Configuration of [`Cusum`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CusumConfig {
    /// In-control mean μ₀; `None` = the mean of the first `warm_up` observations.
    pub target: Option<f64>,
    /// In-control standard deviation σ; `None` = the sample std (ddof 1) of the warm-up
    /// (1 if that is 0).
    pub sigma: Option<f64>,
    /// Observations used to estimate μ₀/σ and before any alarm (30).
    pub warm_up: u64,
    /// Slack `k`, in units of σ (0.5: detects shifts of about 1σ quickly).
    pub slack: f64,
    /// Decision threshold `h`, in units of σ (5.0: in-control ARL ≈ 465).
    pub threshold: f64,
}

impl Default for CusumConfig {
    fn default() -> Self {
        Self {
            target: None,
            sigma: None,
            warm_up: 30,
            slack: 0.5,
            threshold: 5.0,
        }
    }
}

/// Page's two-sided tabular CUSUM: `S⁺ = max(0, S⁺ + x − μ₀ − kσ)`,
/// `S⁻ = max(0, S⁻ + μ₀ − kσ − x)`; drift when either exceeds `hσ`. The warning
/// flag is raised when either exceeds `hσ/2`.
#[derive(Debug, Clone)]
pub struct Cusum {
    cfg: CusumConfig,
    n: u64,
    mean: f64,
    m2: f64,
    mu: f64,
    sd: f64,
    s_hi: f64,
    s_lo: f64,
    drift: bool,
    warning: bool,
    nonfinite: u64,
}

impl Default for Cusum {
    fn default() -> Self {
        Self::new(CusumConfig::default())
    }
}

impl Cusum {
    /// A detector with the given configuration.
    pub fn new(cfg: CusumConfig) -> Self {
        Self {
            cfg,
            n: 0,
            mean: 0.0,
            m2: 0.0,
            mu: cfg.target.unwrap_or(0.0),
            sd: cfg.sigma.unwrap_or(1.0),
            s_hi: 0.0,
            s_lo: 0.0,
            drift: false,
            warning: false,
            nonfinite: 0,
        }
    }

    /// The two cumulative sums `(S⁺, S⁻)`.
    pub fn sums(&self) -> (f64, f64) {
        (self.s_hi, self.s_lo)
    }
}

super::common_impl!(Cusum, warning);

impl Cusum {
    /// One finite observation, after the shared non-finite and reset handling.
    fn step(&mut self, x: f64) {
        self.n += 1;
        if self.n <= self.cfg.warm_up {
            let d = x - self.mean;
            self.mean += d / self.n as f64;
            self.m2 += d * (x - self.mean);
            if self.n == self.cfg.warm_up {
                if self.cfg.target.is_none() {
                    self.mu = self.mean;
                }
                if self.cfg.sigma.is_none() {
                    let v = if self.n > 1 {
                        self.m2 / (self.n - 1) as f64
                    } else {
                        0.0
                    };
                    self.sd = if v > 0.0 { v.sqrt() } else { 1.0 };
                }
            }
            if self.cfg.warm_up > 0 {
                return;
            }
        }
        let k = self.cfg.slack * self.sd;
        self.s_hi = (self.s_hi + x - self.mu - k).max(0.0);
        self.s_lo = (self.s_lo + self.mu - k - x).max(0.0);
        let h = self.cfg.threshold * self.sd;
        self.drift = self.s_hi > h || self.s_lo > h;
        self.warning = !self.drift && (self.s_hi > h / 2.0 || self.s_lo > h / 2.0);
    }
}

/// Alarms when the mean confidence of the last `k` reports is below `threshold`
/// (only once `k` reports have been seen). Does not reset itself after an alarm: the
/// alarm stays raised while the windowed mean stays low.
#[derive(Debug, Clone)]
pub struct ConfidenceMonitor {
    k: usize,
    threshold: f64,
    window: VecDeque<f64>,
    sum: f64,
    since_resum: usize,
    drift: bool,
    nonfinite: u64,
}

impl ConfidenceMonitor {
    /// A monitor over the last `k` (at least 1) confidences.
    pub fn new(k: usize, threshold: f64) -> Self {
        let k = k.max(1);
        Self {
            k,
            threshold,
            window: VecDeque::with_capacity(k),
            sum: 0.0,
            since_resum: 0,
            drift: false,
            nonfinite: 0,
        }
    }

    /// Mean of the current window (NaN when empty).
    pub fn mean(&self) -> f64 {
        if self.window.is_empty() {
            f64::NAN
        } else {
            self.sum / self.window.len() as f64
        }
    }

    /// Number of ignored non-finite observations.
    pub fn nonfinite(&self) -> u64 {
        self.nonfinite
    }
}

impl DriftDetector for ConfidenceMonitor {
    fn update(&mut self, x: f64) {
        if !x.is_finite() {
            self.nonfinite += 1;
            return;
        }
        if self.window.len() == self.k
            && let Some(old) = self.window.pop_front()
        {
            self.sum -= old;
        }
        self.window.push_back(x);
        self.sum += x;
        // re-sum exactly once per window length: O(1) amortised, and the running sum's
        // rounding error cannot accumulate over long streams
        self.since_resum += 1;
        if self.since_resum >= self.k {
            self.sum = self.window.iter().sum();
            self.since_resum = 0;
        }
        if self.window.len() == self.k {
            self.drift = self.sum / (self.k as f64) < self.threshold;
        } else {
            self.drift = false;
        }
    }
    fn drift_detected(&self) -> bool {
        self.drift
    }
    fn reset(&mut self) {
        *self = Self::new(self.k, self.threshold);
    }
}

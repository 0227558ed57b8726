//! Detectors on a binary error stream (1 = the model erred): DDM, EDDM, HDDM_A,
//! HDDM_W, as river's `drift.binary`.
//!
//! Inputs are compared with `== 1.0` where river does (`x == 1`); DDM and the HDDMs
//! average whatever value they get, as river.

use super::RunningMean;

/// The shared detector impl plus `Default` (every binary detector has a default
/// configuration).
macro_rules! binary_impl {
    ($t:ty) => {
        super::common_impl!($t, warning);
        impl Default for $t {
            fn default() -> Self {
                Self::new(Default::default())
            }
        }
    };
}

/// Configuration of [`Ddm`]; defaults are river's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DdmConfig {
    /// Observations before a warning/drift can be signalled (30).
    pub warm_start: u64,
    /// Warning at `p_min + 2 s_min` (2.0).
    pub warning_threshold: f64,
    /// Drift at `p_min + 3 s_min` (3.0).
    pub drift_threshold: f64,
}

impl Default for DdmConfig {
    fn default() -> Self {
        Self {
            warm_start: 30,
            warning_threshold: 2.0,
            drift_threshold: 3.0,
        }
    }
}

/// Drift Detection Method (Gama et al. 2004).
#[derive(Debug, Clone)]
pub struct Ddm {
    cfg: DdmConfig,
    p: RunningMean,
    p_min: f64,
    s_min: f64,
    ps_min: f64,
    drift: bool,
    warning: bool,
    nonfinite: u64,
}

impl Ddm {
    /// A detector with the given configuration.
    pub fn new(cfg: DdmConfig) -> Self {
        Self {
            cfg,
            p: RunningMean::default(),
            p_min: f64::NAN,
            s_min: f64::NAN,
            ps_min: f64::INFINITY,
            drift: false,
            warning: false,
            nonfinite: 0,
        }
    }
    fn step(&mut self, x: f64) {
        self.p.update(x);
        let p = self.p.mean;
        let n = self.p.n;
        let s = (p * (1.0 - p) / n).sqrt();
        if n > self.cfg.warm_start as f64 {
            if p + s <= self.ps_min {
                self.p_min = p;
                self.s_min = s;
                self.ps_min = p + s;
            }
            self.warning = p + s > self.p_min + self.cfg.warning_threshold * self.s_min;
            if p + s > self.p_min + self.cfg.drift_threshold * self.s_min {
                self.drift = true;
                self.warning = false;
            }
        }
    }
}
binary_impl!(Ddm);

/// Configuration of [`Eddm`]; defaults are river's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EddmConfig {
    /// Observations (and errors) before a warning/drift (30).
    pub warm_start: u64,
    /// Warning level α (0.95).
    pub alpha: f64,
    /// Drift level β (0.9).
    pub beta: f64,
}

impl Default for EddmConfig {
    fn default() -> Self {
        Self {
            warm_start: 30,
            alpha: 0.95,
            beta: 0.9,
        }
    }
}

/// Early Drift Detection Method (Baena-García et al. 2006).
#[derive(Debug, Clone)]
pub struct Eddm {
    cfg: EddmConfig,
    dist_mean: RunningMean,
    dist_s: f64,
    n: u64,
    last_error: u64,
    n_errors: u64,
    p2s_max: f64,
    drift: bool,
    warning: bool,
    nonfinite: u64,
}

impl Eddm {
    /// A detector with the given configuration.
    pub fn new(cfg: EddmConfig) -> Self {
        Self {
            cfg,
            dist_mean: RunningMean::default(),
            dist_s: 0.0,
            n: 0,
            last_error: 0,
            n_errors: 0,
            p2s_max: -1.0,
            drift: false,
            warning: false,
            nonfinite: 0,
        }
    }
    fn step(&mut self, x: f64) {
        self.n += 1;
        if x == 1.0 {
            self.n_errors += 1;
            let d = (self.n - self.last_error) as f64;
            // river's stats.Var (ddof = 1), Welford
            let old = self.dist_mean.mean;
            self.dist_mean.update(d);
            self.dist_s += (d - old) * (d - self.dist_mean.mean);
            if self.n > self.cfg.warm_start {
                let var = if self.dist_mean.n > 1.0 {
                    self.dist_s / (self.dist_mean.n - 1.0)
                } else {
                    0.0
                };
                let p2s = self.dist_mean.mean + 2.0 * var.powf(0.5);
                if p2s > self.p2s_max {
                    self.p2s_max = p2s;
                } else if self.n_errors > self.cfg.warm_start {
                    let level = p2s / self.p2s_max;
                    if level < self.cfg.beta {
                        self.drift = true;
                    } else {
                        self.warning = level < self.cfg.alpha;
                    }
                }
            }
            self.last_error = self.n;
        }
    }
}
binary_impl!(Eddm);

/// Configuration of [`HddmA`]; defaults are river's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HddmAConfig {
    /// Confidence of the drift test (0.001).
    pub drift_confidence: f64,
    /// Confidence of the warning test (0.005).
    pub warning_confidence: f64,
    /// Also detect decreases (false).
    pub two_sided_test: bool,
}

impl Default for HddmAConfig {
    fn default() -> Self {
        Self {
            drift_confidence: 0.001,
            warning_confidence: 0.005,
            two_sided_test: false,
        }
    }
}

/// HDDM with A-test (Frías-Blanco et al. 2014): Hoeffding bounds on moving averages.
#[derive(Debug, Clone)]
pub struct HddmA {
    cfg: HddmAConfig,
    z: RunningMean,
    x_min: RunningMean,
    x_max: RunningMean,
    drift: bool,
    warning: bool,
    nonfinite: u64,
}

impl HddmA {
    /// A detector with the given configuration.
    pub fn new(cfg: HddmAConfig) -> Self {
        Self {
            cfg,
            z: RunningMean::default(),
            x_min: RunningMean::default(),
            x_max: RunningMean::default(),
            drift: false,
            warning: false,
            nonfinite: 0,
        }
    }
    fn bound(&self, n: f64) -> f64 {
        (1.0 / (2.0 * n) * (1.0 / self.cfg.drift_confidence).ln()).sqrt()
    }
    fn changed(&self, lo: &RunningMean, hi: &RunningMean, from: &RunningMean, conf: f64) -> bool {
        if from.n == self.z.n {
            return false;
        }
        let m = (self.z.n - from.n) / from.n * (1.0 / self.z.n);
        let eps = (m / 2.0 * (2.0 / conf).ln()).sqrt();
        hi.mean - lo.mean >= eps
    }
    fn step(&mut self, x: f64) {
        self.z.update(x);
        if self.x_min.n == 0.0 {
            self.x_min = self.z;
        }
        if self.x_max.n == 0.0 {
            self.x_max = self.z;
        }
        let eps_z = self.bound(self.z.n);
        if self.x_min.mean + self.bound(self.x_min.n) >= self.z.mean + eps_z {
            self.x_min = self.z;
        }
        if self.x_max.mean - self.bound(self.x_max.n) <= self.z.mean - eps_z {
            self.x_max = self.z;
        }
        let (z, xmin, xmax) = (self.z, self.x_min, self.x_max);
        if self.changed(&xmin, &z, &xmin, self.cfg.drift_confidence) {
            self.warning = false;
            self.drift = true;
        } else if self.changed(&xmin, &z, &xmin, self.cfg.warning_confidence) {
            self.warning = true;
            self.drift = false;
        } else {
            self.warning = false;
            self.drift = false;
        }
        if self.cfg.two_sided_test {
            if self.changed(&z, &xmax, &xmax, self.cfg.drift_confidence) {
                self.drift = true;
            } else if self.changed(&z, &xmax, &xmax, self.cfg.warning_confidence) {
                self.warning = true;
            }
        }
    }
}
binary_impl!(HddmA);

/// Configuration of [`HddmW`]; defaults are river's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HddmWConfig {
    /// Confidence of the drift test (0.001).
    pub drift_confidence: f64,
    /// Confidence of the warning test (0.005).
    pub warning_confidence: f64,
    /// EWMA weight λ of the newest observation (0.05).
    pub lambda: f64,
    /// Also detect decreases (false).
    pub two_sided_test: bool,
}

impl Default for HddmWConfig {
    fn default() -> Self {
        Self {
            drift_confidence: 0.001,
            warning_confidence: 0.005,
            lambda: 0.05,
            two_sided_test: false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct SampleInfo {
    ewma: f64,
    init: bool,
    ibc: f64,
}

impl SampleInfo {
    fn new() -> Self {
        Self {
            ewma: 0.0,
            init: false,
            ibc: 1.0,
        }
    }
    fn update(&mut self, x: f64, l: f64) {
        // river's EWMean: the first value initialises the mean
        self.ewma = if self.init {
            l * x + (1.0 - l) * self.ewma
        } else {
            x
        };
        self.init = true;
        self.ibc = l * l + (1.0 - l) * (1.0 - l) * self.ibc;
    }
}

/// HDDM with W-test (Frías-Blanco et al. 2014): McDiarmid bounds on EWMAs.
#[derive(Debug, Clone)]
pub struct HddmW {
    cfg: HddmWConfig,
    total: SampleInfo,
    s1_incr: SampleInfo,
    s2_incr: SampleInfo,
    s1_decr: SampleInfo,
    s2_decr: SampleInfo,
    incr_cut: f64,
    decr_cut: f64,
    drift: bool,
    warning: bool,
    nonfinite: u64,
}

impl HddmW {
    /// A detector with the given configuration.
    pub fn new(cfg: HddmWConfig) -> Self {
        let s = SampleInfo::new();
        Self {
            cfg,
            total: s,
            s1_incr: s,
            s2_incr: s,
            s1_decr: s,
            s2_decr: s,
            incr_cut: f64::INFINITY,
            decr_cut: f64::NEG_INFINITY,
            drift: false,
            warning: false,
            nonfinite: 0,
        }
    }
    fn bound(ibc: f64, conf: f64) -> f64 {
        (ibc * (1.0 / conf).ln() / 2.0).sqrt()
    }
    fn changed(s1: &SampleInfo, s2: &SampleInfo, conf: f64) -> bool {
        if !(s1.init && s2.init) {
            return false;
        }
        s2.ewma - s1.ewma > Self::bound(s1.ibc + s2.ibc, conf)
    }
    fn step(&mut self, x: f64) {
        let l = self.cfg.lambda;
        // river's lambd² and (1 - lambd)² are precomputed as lambd*lambd and
        // (1 - lambd)**2; the products are identical.
        self.total.update(x, l);
        let eps = Self::bound(self.total.ibc, self.cfg.drift_confidence);
        if self.total.ewma + eps < self.incr_cut {
            self.incr_cut = self.total.ewma + eps;
            self.s1_incr = self.total;
            self.s2_incr = SampleInfo::new();
        } else {
            self.s2_incr.update(x, l);
        }
        if Self::changed(&self.s1_incr, &self.s2_incr, self.cfg.drift_confidence) {
            self.warning = false;
            self.drift = true;
        } else if Self::changed(&self.s1_incr, &self.s2_incr, self.cfg.warning_confidence) {
            self.warning = true;
            self.drift = false;
        } else {
            self.warning = false;
            self.drift = false;
        }
        let eps = Self::bound(self.total.ibc, self.cfg.drift_confidence);
        if self.total.ewma - eps > self.decr_cut {
            self.decr_cut = self.total.ewma - eps;
            self.s1_decr = self.total;
            self.s2_decr = SampleInfo::new();
        } else {
            self.s2_decr.update(x, l);
        }
        if self.cfg.two_sided_test {
            if Self::changed(&self.s2_decr, &self.s1_decr, self.cfg.drift_confidence) {
                self.drift = true;
            } else if Self::changed(&self.s2_decr, &self.s1_decr, self.cfg.warning_confidence) {
                self.warning = true;
            }
        }
    }
}
binary_impl!(HddmW);

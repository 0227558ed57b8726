//! Page–Hinkley test, as river's `drift.PageHinkley`.

use super::RunningMean;

/// Which direction of change [`PageHinkley`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PhMode {
    /// Increases of the mean only.
    Up,
    /// Decreases of the mean only.
    Down,
    /// Both (river's default).
    Both,
}

/// Configuration of [`PageHinkley`]; defaults are river's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PageHinkleyConfig {
    /// Observations before a drift can be signalled (30).
    pub min_instances: u64,
    /// Tolerated magnitude of change δ (0.005).
    pub delta: f64,
    /// Alarm threshold λ (50).
    pub threshold: f64,
    /// Forgetting factor α of the cumulative sums (1 − 1e-4).
    pub alpha: f64,
    /// Direction (`Both`).
    pub mode: PhMode,
}

impl Default for PageHinkleyConfig {
    fn default() -> Self {
        Self {
            min_instances: 30,
            delta: 0.005,
            threshold: 50.0,
            alpha: 1.0 - 0.0001,
            mode: PhMode::Both,
        }
    }
}

/// Page–Hinkley change detector.
#[derive(Debug, Clone)]
pub struct PageHinkley {
    cfg: PageHinkleyConfig,
    mean: RunningMean,
    sum_inc: f64,
    sum_dec: f64,
    min_inc: f64,
    max_dec: f64,
    drift: bool,
    nonfinite: u64,
}

impl Default for PageHinkley {
    fn default() -> Self {
        Self::new(PageHinkleyConfig::default())
    }
}

impl PageHinkley {
    /// A detector with the given configuration.
    pub fn new(cfg: PageHinkleyConfig) -> Self {
        Self {
            cfg,
            mean: RunningMean::default(),
            sum_inc: 0.0,
            sum_dec: 0.0,
            min_inc: f64::INFINITY,
            max_dec: -1.0,
            drift: false,
            nonfinite: 0,
        }
    }
}

super::common_impl!(PageHinkley);

impl PageHinkley {
    /// One finite observation, after the shared non-finite and reset handling.
    fn step(&mut self, x: f64) {
        self.mean.update(x);
        let dev = x - self.mean.mean;
        self.sum_inc = self.cfg.alpha * self.sum_inc + dev - self.cfg.delta;
        self.sum_dec = self.cfg.alpha * self.sum_dec + dev + self.cfg.delta;
        if self.sum_inc < self.min_inc {
            self.min_inc = self.sum_inc;
        }
        if self.sum_dec > self.max_dec {
            self.max_dec = self.sum_dec;
        }
        if self.mean.n >= self.cfg.min_instances as f64 {
            let ti = self.sum_inc - self.min_inc;
            let td = self.max_dec - self.sum_dec;
            self.drift = match self.cfg.mode {
                PhMode::Up => ti > self.cfg.threshold,
                PhMode::Down => td > self.cfg.threshold,
                PhMode::Both => ti > self.cfg.threshold || td > self.cfg.threshold,
            };
        }
    }
}

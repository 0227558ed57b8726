//! KSWIN (Raab et al. 2020), as river's `drift.KSWIN`.

use super::mt::PyRandom;
use crate::stats::{Method, ks_2samp};
use std::collections::VecDeque;

/// Configuration of [`Kswin`]; defaults are river's except that a seed is required
/// (river's `seed=None` draws from OS entropy; ours defaults to 0).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KswinConfig {
    /// KS-test significance α (0.005).
    pub alpha: f64,
    /// Sliding window size (100).
    pub window_size: usize,
    /// Size of the most recent sub-window tested (30).
    pub stat_size: usize,
    /// Seed of the sub-window sampler (CPython's MT19937, so indices match river with
    /// the same seed).
    pub seed: u64,
}

impl Default for KswinConfig {
    fn default() -> Self {
        Self {
            alpha: 0.005,
            window_size: 100,
            stat_size: 30,
            seed: 0,
        }
    }
}

/// Kolmogorov–Smirnov windowing drift detector.
///
/// When the window is full, `stat_size` values drawn without replacement from the
/// older part are compared with the `stat_size` most recent ones by a two-sample KS
/// test (exact p-value); drift when `p <= alpha` and `D > 0.1`.
#[derive(Debug, Clone)]
pub struct Kswin {
    cfg: KswinConfig,
    window: VecDeque<f64>,
    rng: PyRandom,
    idx: Vec<usize>,
    a: Vec<f64>,
    b: Vec<f64>,
    p_value: f64,
    drift: bool,
    nonfinite: u64,
}

impl Default for Kswin {
    fn default() -> Self {
        Self::new(KswinConfig::default())
    }
}

impl Kswin {
    /// A detector with the given configuration (`stat_size` is clamped to
    /// `[1, window_size - 1]`, `window_size` to at least 2).
    pub fn new(mut cfg: KswinConfig) -> Self {
        cfg.window_size = cfg.window_size.max(2);
        cfg.stat_size = cfg.stat_size.clamp(1, cfg.window_size - 1);
        Self {
            cfg,
            window: VecDeque::with_capacity(cfg.window_size),
            rng: PyRandom::new(cfg.seed),
            idx: Vec::new(),
            a: Vec::new(),
            b: Vec::new(),
            p_value: 0.0,
            drift: false,
            nonfinite: 0,
        }
    }

    /// p-value of the last test (0 before the window is full, as river).
    pub fn p_value(&self) -> f64 {
        self.p_value
    }
}

super::common_impl!(Kswin);

impl Kswin {
    /// One finite observation, after the shared non-finite and reset handling.
    fn step(&mut self, x: f64) {
        if self.window.len() == self.cfg.window_size {
            self.window.pop_front();
        }
        self.window.push_back(x);
        self.drift = false;
        if self.window.len() >= self.cfg.window_size {
            let (w, s) = (self.cfg.window_size, self.cfg.stat_size);
            self.rng.sample_range(w - s, s, &mut self.idx);
            self.a.clear();
            self.a.extend(self.idx.iter().map(|&i| self.window[i]));
            self.b.clear();
            self.b.extend(self.window.range(w - s..w));
            if let Ok(r) = ks_2samp(&self.a, &self.b, Method::Auto) {
                self.p_value = r.pvalue;
                if r.pvalue <= self.cfg.alpha && r.statistic > 0.1 {
                    self.drift = true;
                    // river keeps only the recent part here, but resets everything on
                    // the next update anyway.
                }
            }
        }
    }
}

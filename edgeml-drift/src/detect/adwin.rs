//! ADWIN (Bifet & Gavaldà 2007) with river's exact arithmetic.

/// Largest batch of queued variance increments.
const PENDING_MAX: usize = 64;

/// Configuration of [`Adwin`]; defaults are river's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdwinConfig {
    /// Confidence δ (0.002).
    pub delta: f64,
    /// Check for change every `clock` updates (32).
    pub clock: u32,
    /// Summaries per row before two are merged (5).
    pub max_buckets: usize,
    /// Minimum length of each sub-window (5).
    pub min_window_length: u32,
    /// No check until the window is longer than this (10).
    pub grace_period: u32,
}

impl Default for AdwinConfig {
    fn default() -> Self {
        Self {
            delta: 0.002,
            clock: 32,
            max_buckets: 5,
            min_window_length: 5,
            grace_period: 10,
        }
    }
}

/// One row of the exponential histogram: up to `max_buckets + 1` summaries of
/// `2^row` points each, oldest first, in a ring buffer (river shifts arrays on every
/// merge; the ring makes removal O(1)).
#[derive(Debug, Clone)]
struct Row {
    head: usize,
    len: usize,
    total: Vec<f64>,
    var: Vec<f64>,
}

impl Row {
    fn new(cap: usize) -> Self {
        Self {
            head: 0,
            len: 0,
            total: vec![0.0; cap],
            var: vec![0.0; cap],
        }
    }
    #[inline]
    fn idx(&self, k: usize) -> usize {
        let i = self.head + k;
        if i >= self.total.len() {
            i - self.total.len()
        } else {
            i
        }
    }
    #[inline]
    fn push(&mut self, t: f64, v: f64) {
        let i = self.idx(self.len);
        self.total[i] = t;
        self.var[i] = v;
        self.len += 1;
    }
    #[inline]
    fn pop_front(&mut self, n: usize) {
        self.head = self.idx(n);
        self.len -= n;
    }
    #[inline]
    fn total(&self, k: usize) -> f64 {
        self.total[self.idx(k)]
    }
    #[inline]
    fn var(&self, k: usize) -> f64 {
        self.var[self.idx(k)]
    }
}

/// ADaptive WINdowing drift detector on a real-valued stream.
///
/// Reproduces river's `drift.ADWIN` detection indices (same bucket merging, the same
/// cut scan from the oldest bucket, the same floating-point operation order). After a
/// drift the whole detector resets on the next `update`, as river's wrapper does.
///
/// Data-structure differences that keep the arithmetic bit-identical but make updates
/// cheaper: each row of the exponential histogram is a ring buffer (river shifts its
/// arrays on every merge); window-variance increments are queued and applied in one
/// batch before each scan, so their divisions pipeline instead of sitting on every
/// update's critical path; divisions by bucket sizes (powers of two) are exact
/// multiplications; the clock is a countdown instead of a 64-bit modulo; and cuts are
/// first rejected without the square root when that is provably conclusive.
#[derive(Debug, Clone)]
pub struct Adwin {
    cfg: AdwinConfig,
    rows: Vec<Row>,
    total: f64,
    variance: f64,
    width: f64,
    tick: u64,
    until_check: u32,
    pend_x: Vec<f64>,
    pend_total: Vec<f64>,
    pend_w: Vec<f64>,
    pend_inc: Vec<f64>,
    n_detections: u64,
    drift: bool,
    nonfinite: u64,
}

impl Default for Adwin {
    fn default() -> Self {
        Self::new(AdwinConfig::default())
    }
}

impl Adwin {
    /// A detector with the given configuration (a zero clock is treated as 1,
    /// `max_buckets` is at least 1).
    pub fn new(mut cfg: AdwinConfig) -> Self {
        cfg.clock = cfg.clock.max(1);
        cfg.max_buckets = cfg.max_buckets.max(1);
        Self {
            cfg,
            rows: vec![Row::new(cfg.max_buckets + 1)],
            total: 0.0,
            variance: 0.0,
            width: 0.0,
            tick: 0,
            until_check: cfg.clock,
            pend_x: Vec::with_capacity(PENDING_MAX),
            pend_total: Vec::with_capacity(PENDING_MAX),
            pend_w: Vec::with_capacity(PENDING_MAX),
            pend_inc: Vec::with_capacity(PENDING_MAX),
            n_detections: 0,
            drift: false,
            nonfinite: 0,
        }
    }

    /// Current window length.
    pub fn width(&self) -> f64 {
        self.width
    }

    /// Mean of the current window (0 when empty).
    pub fn estimation(&self) -> f64 {
        if self.width == 0.0 {
            0.0
        } else {
            self.total / self.width
        }
    }

    fn insert(&mut self, value: f64) {
        self.rows[0].push(value, 0.0);
        self.width += 1.0;
        // The window variance is only read by the cut scan and by deletions, so its
        // increments are queued and computed in a batch right before (see
        // `flush_variance`): same operations in the same order, bit-identical to
        // river, but the divisions of a batch are independent and pipeline/vectorise.
        self.pend_x.push(value);
        self.pend_total.push(self.total);
        self.pend_w.push(self.width);
        if self.pend_x.len() == PENDING_MAX {
            self.flush_variance();
        }
        self.total += value;
        // compress
        let mb = self.cfg.max_buckets;
        let mut idx = 0;
        while self.rows[idx].len == mb + 1 {
            let n1 = (1u64 << idx) as f64;
            let r = &self.rows[idx];
            let (t0, t1, v0, v1) = (r.total(0), r.total(1), r.var(0), r.var(1));
            // n1 is a power of two: multiplying by its exact reciprocal gives the same
            // correctly rounded result as river's divisions, without a divider.
            let inv = 1.0 / n1;
            let (mu1, mu2) = (t0 * inv, t1 * inv);
            let temp = n1 * n1 * (mu1 - mu2) * (mu1 - mu2) * (0.5 * inv);
            if idx + 1 >= self.rows.len() {
                self.rows.push(Row::new(mb + 1));
            }
            self.rows[idx + 1].push(t0 + t1, v0 + v1 + temp);
            self.rows[idx].pop_front(2);
            if self.rows[idx + 1].len <= mb {
                break;
            }
            idx += 1;
        }
    }

    /// Applies the queued variance increments, in insertion order.
    fn flush_variance(&mut self) {
        let n = self.pend_x.len();
        if n == 0 {
            return;
        }
        self.pend_inc.clear();
        self.pend_inc.extend(
            self.pend_x
                .iter()
                .zip(&self.pend_total)
                .zip(&self.pend_w)
                .map(|((&x, &t), &w)| {
                    let d = x - t / (w - 1.0);
                    let inc = (w - 1.0) * d * d / w;
                    if w > 1.0 { inc } else { 0.0 }
                }),
        );
        for &inc in &self.pend_inc {
            self.variance += inc;
        }
        self.pend_x.clear();
        self.pend_total.clear();
        self.pend_w.clear();
    }

    fn delete_oldest(&mut self) {
        let last = self.rows.len() - 1;
        let n = (1u64 << last) as f64;
        let (u, v) = (self.rows[last].total(0), self.rows[last].var(0));
        let mu = u * (1.0 / n); // n = 2^last: exact, as the division
        self.width -= n;
        self.total -= u;
        let mu_w = self.total / self.width;
        let inc = v + n * self.width * (mu - mu_w) * (mu - mu_w) / (n + self.width);
        self.variance -= inc;
        self.rows[last].pop_front(1);
        if self.rows[last].len == 0 {
            self.rows.pop();
        }
    }

    fn detect(&mut self) -> bool {
        let mut change = false;
        // river checks `tick % clock == 0`; a countdown avoids a 64-bit division per
        // update and fires on the same ticks.
        self.tick += 1;
        self.until_check -= 1;
        if self.until_check > 0 {
            return false;
        }
        self.until_check = self.cfg.clock;
        if self.width <= f64::from(self.cfg.grace_period) {
            return false;
        }
        self.flush_variance();
        let mwl = f64::from(self.cfg.min_window_length);
        let mut reduce = true;
        while reduce {
            reduce = false;
            let (mut n0, mut n1, mut u0, mut u1) = (0.0f64, self.width, 0.0f64, self.total);
            // constant during one scan: the width changes only after a deletion,
            // which restarts the scan
            let delta_prime = (2.0 * self.width.ln() / self.cfg.delta).ln();
            let var_w = self.variance / self.width;
            'outer: for idx in (0..self.rows.len()).rev() {
                let size = (1u64 << idx) as f64;
                let len = self.rows[idx].len;
                for k in 0..len {
                    n0 += size;
                    n1 -= size;
                    let t = self.rows[idx].total(k);
                    u0 += t;
                    u1 -= t;
                    if idx == 0 && k == len - 1 {
                        break 'outer;
                    }
                    if n1 >= mwl && n0 >= mwl {
                        let dm = u0 / n0 - u1 / n1;
                        let m_recip = 1.0 / (n0 - mwl + 1.0) + 1.0 / (n1 - mwl + 1.0);
                        let a = 2.0 * m_recip * var_w * delta_prime;
                        // Cheap rejection without the square root: eps >= sqrt(a), and
                        // the 1e-12 margin dwarfs any rounding, so the decision is
                        // exactly river's.
                        if dm * dm <= a * (1.0 - 1e-12) {
                            continue;
                        }
                        let eps = a.sqrt() + 2.0 / 3.0 * delta_prime * m_recip;
                        if dm.abs() > eps {
                            reduce = true;
                            change = true;
                            if self.width > 0.0 {
                                self.delete_oldest();
                                break 'outer;
                            }
                        }
                    }
                }
            }
        }
        if change {
            self.n_detections += 1;
        }
        change
    }
}

super::common_impl!(Adwin);

impl Adwin {
    /// One finite observation, after the shared non-finite and reset handling.
    fn step(&mut self, x: f64) {
        self.insert(x);
        self.drift = self.detect();
    }
}

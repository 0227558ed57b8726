//! The histogram shared by [`Entropy`] and [`Mse`], and their threshold searches.
//!
//! The grid is canonical: `bins` bins (even) of width `w = 2^k`, bin `i` covering
//! `[(i - bins/2)·w, (i - bins/2 + 1)·w)`, with `k` the smallest integer such that
//! `(bins/2)·w > max|x|` over everything observed. A value's bin is
//! `floor(x / w) + bins/2`, exact because `w` is a power of two; when the range grows,
//! `w` doubles and bins merge pairwise (`m → floor(m / 2)` around the zero bin), also
//! exactly. The counts are therefore a function of the multiset of finite values
//! alone: merging two observers gives the very histogram one observer fed both streams
//! would hold, in any order and any batching. The data occupy between a half and all
//! of the bins on the side of the largest magnitude.
//!
//! onnxruntime's `HistogramCollector` instead spans `[-t, t]` with `t` the first
//! batch's `max|x|` and appends bins as later batches exceed it, so its grid depends
//! on the order of the batches and two collectors cannot be merged exactly; the
//! threshold searches below are its (and PyTorch's) algorithms applied to this grid.

use super::MinMax;
use crate::{Error, Result};
use edgeml_core::Observer;

/// Mergeable signed histogram on a power-of-two grid (see the module docs).
#[derive(Debug, Clone, PartialEq)]
struct Hist {
    counts: Vec<u64>,
    /// Bin width exponent; `None` until a non-zero value is seen (zeros sit in bin
    /// `bins/2` whatever the width).
    exp: Option<i32>,
    minmax: MinMax,
}

fn pow2(k: i32) -> f64 {
    2f64.powi(k)
}

impl Hist {
    fn new(bins: usize) -> Result<Self> {
        if bins < 2 || !bins.is_multiple_of(2) || bins > 1 << 24 {
            return Err(Error::Invalid(format!(
                "{bins} histogram bins (need an even count in [2, 2^24])"
            )));
        }
        Ok(Self::empty(bins))
    }

    /// The default histogram of both observers: 2048 bins (onnxruntime's Percentile
    /// and TensorRT's for Entropy, PyTorch's for the L2 search).
    fn with_2048_bins() -> Self {
        Self::empty(2048)
    }

    fn empty(bins: usize) -> Self {
        Self {
            counts: vec![0; bins],
            exp: None,
            minmax: MinMax::new(),
        }
    }

    fn half(&self) -> i64 {
        (self.counts.len() / 2) as i64
    }

    /// The smallest `k` with `half · 2^k > amax` (`amax` finite and positive).
    fn exp_for(&self, amax: f64) -> i32 {
        let half = self.half() as f64;
        let mut k = (amax / half).log2().ceil() as i32;
        while half * pow2(k) <= amax {
            k += 1;
        }
        while half * pow2(k - 1) > amax {
            k -= 1;
        }
        k
    }

    /// Widens the grid to `2^k` (merging bins) if it is narrower.
    fn widen(&mut self, k: i32) {
        let Some(old) = self.exp else {
            self.exp = Some(k);
            return;
        };
        if k <= old {
            return;
        }
        let d = (k - old).min(62) as u32;
        let half = self.half();
        let mut merged = vec![0u64; self.counts.len()];
        for (i, &c) in self.counts.iter().enumerate() {
            let m = (i as i64 - half) >> d;
            merged[(m + half) as usize] += c;
        }
        self.counts = merged;
        self.exp = Some(k);
    }

    fn bin(&self, x: f32) -> usize {
        let half = self.half();
        let m = match self.exp {
            Some(k) => (f64::from(x) / pow2(k)).floor() as i64,
            None => 0,
        };
        (m + half).clamp(0, 2 * half - 1) as usize
    }

    fn observe(&mut self, values: &[f32]) {
        self.minmax.observe(values);
        let amax = values
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f32, |m, v| m.max(v.abs()));
        if amax > 0.0 {
            let k = self.exp_for(f64::from(amax));
            self.widen(k);
        }
        for &v in values {
            if v.is_finite() {
                let b = self.bin(v);
                self.counts[b] += 1;
            }
        }
    }

    fn merge(&mut self, other: &Self) {
        self.minmax.merge(&other.minmax);
        let mut other = other.clone();
        match (self.exp, other.exp) {
            (Some(a), Some(b)) if a < b => self.widen(b),
            (Some(a), Some(_)) => other.widen(a),
            (None, Some(b)) => self.widen(b),
            (_, None) => {}
        }
        if self.counts.len() == other.counts.len() {
            for (a, b) in self.counts.iter_mut().zip(&other.counts) {
                *a += b;
            }
        } else {
            // Different bin counts: rebin the other's bin centres (approximate).
            let ohalf = other.half();
            let w = other.exp.map_or(0.0, pow2);
            for (i, &c) in other.counts.iter().enumerate() {
                if c > 0 {
                    let centre = ((i as i64 - ohalf) as f64 + 0.5) * w;
                    if let Some(k) = (centre != 0.0).then(|| self.exp_for(centre.abs())) {
                        self.widen(k);
                    }
                    let b = self.bin(centre as f32);
                    self.counts[b] += c;
                }
            }
        }
    }

    /// Lower edge of bin `i` (may be `i == bins`, the top edge).
    fn edge(&self, i: usize) -> f64 {
        (i as i64 - self.half()) as f64 * self.exp.map_or(0.0, pow2)
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(lo, hi)` clamped to the observed min and max, as onnxruntime clamps.
    fn clamp(&self, lo: f64, hi: f64) -> (f32, f32) {
        let (mn, mx) = self.minmax.range();
        let lo = (lo as f32).max(mn).min(mx);
        let hi = (hi as f32).min(mx).max(lo);
        (lo, hi)
    }
}

/// Entropy (KL-divergence) calibration, onnxruntime's `CalibrationMethod.Entropy`:
/// the TensorRT threshold search of `HistogramCollector.get_entropy_threshold`
/// (onnxruntime 1.2x) on a mergeable histogram (see below).
///
/// For each candidate `i` from `quantized_bins/2` to `bins/2`, the bins
/// `[bins/2 - i, bins/2 + i + 1)` form the reference distribution `p` (the outlier
/// counts on either side added to its end bins); `q` merges the same bins into
/// `quantized_bins` groups and spreads each group's count evenly (truncated to an
/// integer, as onnxruntime's int64 array does) over the group's non-empty bins of `p`;
/// both are smoothed (zeros become 1e-4, taken off the non-zero bins) and the
/// candidate with the least `KL(p ‖ q)` (first on ties, compared in f32 as onnxruntime
/// stores them) gives the range `(edge[bins/2 - i], edge[bins/2 + i + 1])`, clamped to
/// the observed min and max.
///
/// The histogram is edgeml's canonical power-of-two grid (exactly mergeable, memory
/// `bins` counters), not onnxruntime's first-batch grid: on the same histogram the
/// thresholds are onnxruntime's to the bin edge (`tests/observers.rs`, fixtures from
/// `scripts/make_observer_fixtures.py`). Defaults: 2048 bins, 128 quantized bins.
/// onnxruntime's `create_calibrator` defaults to 128 bins for Entropy, which leaves
/// its search a single candidate (the full min/max range); 2048 is its Percentile
/// and Distribution default and TensorRT's, and makes the search search.
#[derive(Debug, Clone, PartialEq)]
pub struct Entropy {
    hist: Hist,
    quantized_bins: usize,
}

impl Default for Entropy {
    /// 2048 bins, 128 quantized bins (see the type's docs).
    fn default() -> Self {
        Self {
            hist: Hist::with_2048_bins(),
            quantized_bins: 128,
        }
    }
}

impl Entropy {
    /// An observer with `bins` histogram bins and `quantized_bins` target bins.
    ///
    /// # Errors
    /// [`Error::Invalid`] unless `bins` is even, in `[2, 2^24]`, and
    /// `1 <= quantized_bins <= bins`.
    pub fn new(bins: usize, quantized_bins: usize) -> Result<Self> {
        let hist = Hist::new(bins)?;
        if quantized_bins == 0 || quantized_bins > bins {
            return Err(Error::Invalid(format!(
                "{quantized_bins} quantized bins for {bins} histogram bins"
            )));
        }
        Ok(Self {
            hist,
            quantized_bins,
        })
    }

    /// Non-finite values skipped so far.
    pub fn skipped(&self) -> u64 {
        self.hist.minmax.skipped()
    }
}

/// onnxruntime's `smooth_distribution` (eps 1e-4), in f64; `None` if all zero.
fn smooth(p: &[f64]) -> Option<Vec<f64>> {
    let zeros = p.iter().filter(|&&v| v == 0.0).count();
    let nonzeros = p.len() - zeros;
    if nonzeros == 0 {
        return None;
    }
    let eps = 1e-4;
    let eps1 = eps * zeros as f64 / nonzeros as f64;
    Some(
        p.iter()
            .map(|&v| if v == 0.0 { eps } else { v - eps1 })
            .collect(),
    )
}

/// `KL(p ‖ q)` of two positive vectors, each normalised (scipy's `entropy(p, q)`).
fn kl(p: &[f64], q: &[f64]) -> f64 {
    let sp: f64 = p.iter().sum();
    let sq: f64 = q.iter().sum();
    p.iter()
        .zip(q)
        .map(|(&a, &b)| {
            let (a, b) = (a / sp, b / sq);
            if a > 0.0 { a * (a / b).ln() } else { 0.0 }
        })
        .sum()
}

impl Entropy {
    fn threshold(&self) -> (f64, f64) {
        let hist = &self.hist.counts;
        let n = hist.len();
        let zero = n / 2;
        let nq = self.quantized_bins;
        let half_q = nq / 2;
        let mut best: Option<(f32, usize, usize)> = None;
        for i in half_q..=zero {
            let start = zero - i;
            let end = (zero + i + 1).min(n);
            let sliced = &hist[start..end];
            let mut p: Vec<f64> = sliced.iter().map(|&c| c as f64).collect();
            let left: u64 = hist[..start].iter().sum();
            let right: u64 = hist[end..].iter().sum();
            p[0] += left as f64;
            let last = p.len() - 1;
            p[last] += right as f64;
            let merged = sliced.len() / nq;
            let mut qbins = vec![0u64; nq];
            for (j, qb) in qbins.iter_mut().enumerate() {
                *qb = sliced[j * merged..(j + 1) * merged].iter().sum();
            }
            qbins[nq - 1] += sliced[nq * merged..].iter().sum::<u64>();
            let mut q = vec![0.0f64; p.len()];
            for (j, &qb) in qbins.iter().enumerate() {
                let (s, e) = (j * merged, (j + 1) * merged);
                let norm = p[s..e].iter().filter(|&&v| v != 0.0).count() as u64;
                // Integer division: onnxruntime assigns into an int64 array.
                if let Some(v) = qb.checked_div(norm) {
                    q[s..e].iter_mut().for_each(|x| *x = v as f64);
                }
            }
            let div = match (smooth(&p), smooth(&q)) {
                (Some(p), Some(q)) => kl(&p, &q) as f32,
                _ => f32::INFINITY,
            };
            if best.is_none_or(|(b, _, _)| div < b) {
                best = Some((div, start, end));
            }
        }
        match best {
            Some((_, s, e)) => (self.hist.edge(s), self.hist.edge(e)),
            None => (self.hist.edge(0), self.hist.edge(n)),
        }
    }
}

/// L2-optimal calibration, PyTorch's `HistogramObserver` (the range minimising the
/// expected squared quantization error, `_non_linear_param_search` in
/// `torch/ao/quantization/observer.py`) on a mergeable histogram.
///
/// The search runs on the occupied bins of the histogram (from the bin of the observed
/// minimum to that of the maximum): it moves the lower or upper end of the range
/// inward, whichever the cumulative distribution moves further for a 10⁻⁵ step in
/// quantile, and stops as soon as the L2 error (each source bin's values spread
/// uniformly and rounded to the centre of its 256 destination bins, clipped values
/// counted at the end bins) grows. The range found is clamped to the observed min and
/// max. PyTorch's defaults: 2048 bins, 256 destination bins (8 bits). Differences
/// from PyTorch: its histogram spans exactly `[min, max]` and is re-binned by
/// upsampling when the range grows (order-dependent and not mergeable); here the grid
/// is edgeml's canonical one (see [`Entropy`]), and the error is computed in f64
/// (PyTorch: f32). `tests/observers.rs` checks the thresholds against a numpy
/// transcription of PyTorch's search (`scripts/make_observer_fixtures.py`).
#[derive(Debug, Clone, PartialEq)]
pub struct Mse {
    hist: Hist,
}

impl Default for Mse {
    /// 2048 bins (PyTorch's default).
    fn default() -> Self {
        Self {
            hist: Hist::with_2048_bins(),
        }
    }
}

/// PyTorch's `_get_norm`: `density · (end³ − begin³) / 3`.
fn l2_norm(begin: f64, end: f64, density: f64) -> f64 {
    density * (end * end * end - begin * begin * begin) / 3.0
}

/// PyTorch's `_compute_quantization_error` for the bins `start..=end` of `hist`.
fn quantization_error(hist: &[u64], width: f64, start: usize, end: usize) -> f64 {
    const DST: f64 = 256.0;
    let dst_width = width * (end - start + 1) as f64 / DST;
    if dst_width == 0.0 {
        return 0.0;
    }
    let mut norm = 0.0;
    for (i, &c) in hist.iter().enumerate() {
        let density = c as f64 / width;
        let begin = (i as f64 - start as f64) * width;
        let end_ = begin + width;
        let db = (begin / dst_width).floor().clamp(0.0, DST - 1.0);
        let de = (end_ / dst_width).floor().clamp(0.0, DST - 1.0);
        let db_centre = (db + 0.5) * dst_width;
        norm += l2_norm(begin - db_centre, dst_width / 2.0, density);
        norm += (de - db - 1.0) * l2_norm(-dst_width / 2.0, dst_width / 2.0, density);
        let de_centre = de * dst_width + dst_width / 2.0;
        norm += l2_norm(-dst_width / 2.0, end_ - de_centre, density);
    }
    norm
}

impl Mse {
    /// An observer with `bins` histogram bins.
    ///
    /// # Errors
    /// [`Error::Invalid`] unless `bins` is even and in `[2, 2^24]`.
    pub fn new(bins: usize) -> Result<Self> {
        Ok(Self {
            hist: Hist::new(bins)?,
        })
    }

    /// Non-finite values skipped so far.
    pub fn skipped(&self) -> u64 {
        self.hist.minmax.skipped()
    }

    fn threshold(&self) -> (f64, f64) {
        let (mn, mx) = self.hist.minmax.range();
        let (i0, i1) = (self.hist.bin(mn), self.hist.bin(mx));
        let hist = &self.hist.counts[i0..=i1];
        let width = self.hist.exp.map_or(0.0, pow2);
        let bins = hist.len();
        let total = hist.iter().sum::<u64>() as f64;
        let csum: Vec<f64> = hist
            .iter()
            .scan(0u64, |a, &c| {
                *a += c;
                Some(*a as f64)
            })
            .collect();
        let step = 1e-5;
        let (mut alpha, mut beta) = (0.0f64, 1.0f64);
        let (mut start, mut end) = (0usize, bins - 1);
        let mut norm_min = f64::INFINITY;
        while alpha < beta {
            let (next_alpha, next_beta) = (alpha + step, beta - step);
            let (mut l, mut r) = (start, end);
            while l < end && csum[l] < next_alpha * total {
                l += 1;
            }
            while r > start && csum[r] > next_beta * total {
                r -= 1;
            }
            let (mut ns, mut ne) = (start, end);
            if (l - start) > (end - r) {
                ns = l;
                alpha = next_alpha;
            } else {
                ne = r;
                beta = next_beta;
            }
            if ns == start && ne == end {
                continue;
            }
            let norm = quantization_error(hist, width, ns, ne);
            if norm > norm_min {
                break;
            }
            norm_min = norm;
            start = ns;
            end = ne;
        }
        let lo = self.hist.edge(i0);
        (lo + width * start as f64, lo + width * (end + 1) as f64)
    }
}

/// The [`Observer`] impl of the histogram observers, which differ only in their
/// `threshold` search: observing and merging fill the histogram (merging is exact when
/// both observers have the same bin count; otherwise the other's bins are re-binned at
/// their centres), and the range is the search's threshold clamped to the observed
/// min and max (the min/max itself while the histogram is empty or all zero).
macro_rules! histogram_observer {
    ($($t:ty),*) => {$(
        impl Observer for $t {
            fn observe(&mut self, values: &[f32]) {
                self.hist.observe(values);
            }

            fn merge(&mut self, other: &Self) {
                self.hist.merge(&other.hist);
            }

            fn range(&self) -> (f32, f32) {
                if self.hist.total() == 0 || self.hist.exp.is_none() {
                    return self.hist.minmax.range();
                }
                let (lo, hi) = self.threshold();
                self.hist.clamp(lo, hi)
            }
        }
    )*};
}

histogram_observer!(Entropy, Mse);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_canonical_and_exact() {
        let mut h = Hist::new(8).unwrap();
        h.observe(&[0.0, 0.0]);
        assert_eq!(h.exp, None);
        assert_eq!(h.counts[4], 2);
        h.observe(&[1.0]); // 4 · 2^k > 1 → k = -1 (w = 0.5)
        assert_eq!(h.exp, Some(-1));
        assert_eq!(h.counts[6], 1);
        h.observe(&[-2.0]); // k = 0, bins merge
        assert_eq!(h.exp, Some(0));
        assert_eq!(h.counts, vec![0, 0, 1, 0, 2, 1, 0, 0]);
        let mut a = Hist::new(8).unwrap();
        a.observe(&[-2.0, 0.0]);
        let mut b = Hist::new(8).unwrap();
        b.observe(&[1.0, 0.0]);
        a.merge(&b);
        assert_eq!(a.counts, h.counts);
        assert!(Hist::new(7).is_err());
        assert!(Entropy::new(128, 256).is_err());
    }
}

//! Calibration observers implementing [`edgeml_core::Observer`], each streaming and
//! mergeable with memory independent of the amount of data observed:
//!
//! | observer | anchor | defaults |
//! |---|---|---|
//! | [`MinMax`] | onnxruntime `CalibrationMethod.MinMax` | — |
//! | [`MovingAverageMinMax`] | PyTorch `MovingAverageMinMaxObserver` | averaging constant 0.01 |
//! | [`Percentile`] | onnxruntime `CalibrationMethod.Percentile` | 2048 bins, 99.999 |
//! | [`Entropy`] | onnxruntime `CalibrationMethod.Entropy` (TensorRT KL search) | 2048 bins, 128 quantized bins |
//! | [`Mse`] | PyTorch `HistogramObserver` (L2 search) | 2048 bins, 256 destination bins |
//!
//! [`Entropy`] and [`Mse`] share a histogram on a power-of-two grid whose counts do not
//! depend on how the data was batched or split, so merging is exact.
//!
//! Non-finite values (NaN, ±Inf) are skipped and counted (`skipped()`); an observer
//! that has seen no finite value proposes the range `(0, 0)`, which the quantization
//! math turns into scale 1.0, zero point 0.

mod histogram;

pub use histogram::{Entropy, Mse};

use crate::{Error, Result};
use edgeml_core::Observer;

/// The running minimum and maximum, as onnxruntime's `MinMaxCalibrater` (without its
/// moving average).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MinMax {
    min: Option<(f32, f32)>,
    skipped: u64,
}

impl MinMax {
    /// A fresh observer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Non-finite values skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

impl Observer for MinMax {
    fn observe(&mut self, values: &[f32]) {
        let (mut lo, mut hi) = self.min.unwrap_or((f32::INFINITY, f32::NEG_INFINITY));
        for &v in values {
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            } else {
                self.skipped += 1;
            }
        }
        if lo <= hi {
            self.min = Some((lo, hi));
        }
    }

    fn merge(&mut self, other: &Self) {
        self.skipped += other.skipped;
        self.min = match (self.min, other.min) {
            (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
            (a, b) => a.or(b),
        };
    }

    fn range(&self) -> (f32, f32) {
        self.min.unwrap_or((0.0, 0.0))
    }
}

/// The exponential moving average of each batch's minimum and maximum, PyTorch's
/// `MovingAverageMinMaxObserver`: the first batch sets the range, each later batch
/// moves it by `c · (batch − range)` (default `c = 0.01`, PyTorch's
/// `averaging_constant`). Batches without a finite value leave it unchanged. The state
/// is kept in f64 (PyTorch: f32).
///
/// The average depends on the order of the batches, so [`Observer::merge`] appends:
/// `a.merge(&b)` is the observer that saw `a`'s batches, then `b`'s (exact up to
/// rounding; it keeps `b`'s first batch and batch count for this).
#[derive(Debug, Clone, PartialEq)]
pub struct MovingAverageMinMax {
    c: f64,
    state: Option<Ema>,
    skipped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Ema {
    min: f64,
    max: f64,
    first: (f64, f64),
    batches: u64,
}

impl Default for MovingAverageMinMax {
    /// Averaging constant 0.01 (PyTorch's default).
    fn default() -> Self {
        Self {
            c: 0.01,
            state: None,
            skipped: 0,
        }
    }
}

impl MovingAverageMinMax {
    /// An observer with averaging constant `c`.
    ///
    /// # Errors
    /// [`Error::Invalid`] unless `0 < c <= 1`.
    pub fn new(c: f64) -> Result<Self> {
        if !(c > 0.0 && c <= 1.0) {
            return Err(Error::Invalid(format!(
                "averaging constant {c} is not in (0, 1]"
            )));
        }
        Ok(Self {
            c,
            ..Self::default()
        })
    }

    /// Non-finite values skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Batches that moved the range so far.
    pub fn batches(&self) -> u64 {
        self.state.map_or(0, |s| s.batches)
    }
}

impl Observer for MovingAverageMinMax {
    fn observe(&mut self, values: &[f32]) {
        let mut batch = MinMax::new();
        batch.observe(values);
        self.skipped += batch.skipped;
        let Some((lo, hi)) = batch.min else {
            return;
        };
        let (lo, hi) = (f64::from(lo), f64::from(hi));
        self.state = Some(match self.state {
            None => Ema {
                min: lo,
                max: hi,
                first: (lo, hi),
                batches: 1,
            },
            Some(s) => Ema {
                min: s.min + self.c * (lo - s.min),
                max: s.max + self.c * (hi - s.max),
                batches: s.batches + 1,
                ..s
            },
        });
    }

    /// Appends `other`'s batches after `self`'s: with `r = (1 − c)^n` for `other`'s
    /// `n` batches and `b₁` its first batch, the result is `other + r · (self − b₁)`.
    fn merge(&mut self, other: &Self) {
        self.skipped += other.skipped;
        self.state = match (self.state, other.state) {
            (None, s) | (s, None) => s,
            (Some(a), Some(b)) => {
                let r = (1.0 - self.c).powf(b.batches as f64);
                Some(Ema {
                    min: b.min + r * (a.min - b.first.0),
                    max: b.max + r * (a.max - b.first.1),
                    first: a.first,
                    batches: a.batches + b.batches,
                })
            }
        };
    }

    fn range(&self) -> (f32, f32) {
        self.state.map_or((0.0, 0.0), |s| {
            let (lo, hi) = (s.min as f32, s.max as f32);
            (lo.min(hi), hi.max(lo))
        })
    }
}

/// A percentile of the absolute values, from a histogram — onnxruntime's percentile
/// calibrator (`CalibrationMethod.Percentile`, 2048 bins, percentile 99.999).
///
/// The histogram covers `[0, top]` in `bins` equal bins of `|x|`. When a value exceeds
/// `top`, `top` doubles (adjacent bins merge pairwise, exactly) until it fits, so
/// memory is `bins` counters whatever the data. The threshold `t` is the upper edge of
/// the bin in which the cumulative count reaches `percentile`% of all values.
///
/// The range is `(-t, t)` when symmetric; otherwise `(max(min, -t), min(max, t))`
/// with the exact signed min and max seen. Both are clamped to the observed min/max as
/// onnxruntime does. Deliberate differences from onnxruntime: its asymmetric range
/// takes the *lower* tail percentile of `|x|` as `rmin` (losing the negative side of
/// signed tensors) and the *lower* edge of the threshold bin; edgeml mirrors the
/// absolute threshold and takes the upper edge, which never clips inside the
/// percentile's own bin. Merging two observers rebins the other's counts at their bin
/// centres (exact when both have the same `top`).
#[derive(Debug, Clone, PartialEq)]
pub struct Percentile {
    counts: Vec<u64>,
    top: f32,
    percentile: f64,
    symmetric: bool,
    minmax: MinMax,
}

impl Default for Percentile {
    /// 2048 bins, percentile 99.999, asymmetric: onnxruntime's defaults.
    fn default() -> Self {
        Self {
            counts: vec![0; 2048],
            top: 0.0,
            percentile: 99.999,
            symmetric: false,
            minmax: MinMax::new(),
        }
    }
}

impl Percentile {
    /// An observer with `bins` histogram bins keeping `percentile`% of the values.
    ///
    /// # Errors
    /// [`Error::Invalid`] if `bins` is 0 or above 2^24, or `percentile` is not in
    /// `(0, 100]`.
    pub fn new(bins: usize, percentile: f64, symmetric: bool) -> Result<Self> {
        if bins == 0 || bins > 1 << 24 {
            return Err(Error::Invalid(format!("{bins} histogram bins")));
        }
        if !(percentile > 0.0 && percentile <= 100.0) {
            return Err(Error::Invalid(format!(
                "percentile {percentile} is not in (0, 100]"
            )));
        }
        Ok(Self {
            counts: vec![0; bins],
            top: 0.0,
            percentile,
            symmetric,
            minmax: MinMax::new(),
        })
    }

    /// Non-finite values skipped so far.
    pub fn skipped(&self) -> u64 {
        self.minmax.skipped
    }

    /// Doubles `top` (merging bin pairs) until it covers `amax`.
    fn grow(&mut self, amax: f32) {
        if amax <= self.top {
            return;
        }
        if self.top == 0.0 {
            // Everything so far was 0 and sits in bin 0, which stays bin 0.
            self.top = amax;
            return;
        }
        let n = self.counts.len();
        while self.top < amax {
            for i in 0..n {
                let c = self.counts[i];
                self.counts[i] = 0;
                self.counts[i / 2] += c;
            }
            self.top *= 2.0;
            if !self.top.is_finite() {
                self.top = f32::MAX;
                break;
            }
        }
    }

    fn bin(&self, a: f32) -> usize {
        let n = self.counts.len();
        if self.top <= 0.0 {
            return 0;
        }
        let i = (f64::from(a) / f64::from(self.top) * n as f64) as usize;
        i.min(n - 1)
    }
}

impl Observer for Percentile {
    fn observe(&mut self, values: &[f32]) {
        self.minmax.observe(values);
        let amax = values
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f32, |m, v| m.max(v.abs()));
        self.grow(amax);
        for &v in values {
            if v.is_finite() {
                let b = self.bin(v.abs());
                self.counts[b] += 1;
            }
        }
    }

    fn merge(&mut self, other: &Self) {
        self.minmax.merge(&other.minmax);
        self.grow(other.top);
        let n = other.counts.len() as f64;
        for (i, &c) in other.counts.iter().enumerate() {
            if c > 0 {
                let centre = ((i as f64 + 0.5) / n * f64::from(other.top)) as f32;
                let b = self.bin(centre);
                self.counts[b] += c;
            }
        }
    }

    fn range(&self) -> (f32, f32) {
        let total: u64 = self.counts.iter().sum();
        let (lo, hi) = self.minmax.range();
        if total == 0 {
            return (lo, hi);
        }
        let want = self.percentile / 100.0 * total as f64;
        let mut acc = 0u64;
        let n = self.counts.len();
        let mut idx = n - 1;
        for (i, &c) in self.counts.iter().enumerate() {
            acc += c;
            if acc as f64 >= want {
                idx = i;
                break;
            }
        }
        let t = ((idx + 1) as f64 / n as f64 * f64::from(self.top)) as f32;
        if self.symmetric {
            (
                -t.min(lo.abs().max(hi.abs())),
                t.min(lo.abs().max(hi.abs())),
            )
        } else {
            (lo.max(-t), hi.min(t))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minmax_skips_non_finite_and_merges() {
        let mut a = MinMax::new();
        assert_eq!(a.range(), (0.0, 0.0));
        a.observe(&[1.0, f32::NAN, -2.0, f32::INFINITY]);
        assert_eq!(a.range(), (-2.0, 1.0));
        assert_eq!(a.skipped(), 2);
        let mut b = MinMax::new();
        b.observe(&[5.0]);
        a.merge(&b);
        assert_eq!(a.range(), (-2.0, 5.0));
        let mut c = MinMax::new();
        c.merge(&a);
        assert_eq!(c.range(), (-2.0, 5.0));
    }

    #[test]
    fn moving_average_follows_pytorch_formula() {
        let mut m = MovingAverageMinMax::default();
        assert_eq!(m.range(), (0.0, 0.0));
        m.observe(&[-1.0, 3.0]);
        assert_eq!(m.range(), (-1.0, 3.0));
        m.observe(&[f32::NAN]); // no finite value: unchanged
        assert_eq!(m.batches(), 1);
        assert_eq!(m.skipped(), 1);
        m.observe(&[-3.0, 5.0]);
        // min = -1 + 0.01 (-3 + 1) = -1.02; max = 3 + 0.01 (5 - 3) = 3.02
        let (lo, hi) = m.range();
        assert!(
            (lo + 1.02).abs() < 1e-6 && (hi - 3.02).abs() < 1e-6,
            "{lo} {hi}"
        );
        assert!(MovingAverageMinMax::new(0.0).is_err());
        assert!(MovingAverageMinMax::new(1.5).is_err());
    }

    #[test]
    fn percentile_cuts_outliers_and_is_bounded() {
        let mut p = Percentile::new(1000, 99.0, false).unwrap();
        let v: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        for _ in 0..10 {
            p.observe(&v);
        }
        p.observe(&[1000.0]); // one outlier: top grows by doubling
        assert_eq!(p.counts.len(), 1000);
        let (lo, hi) = p.range();
        assert_eq!(lo, 0.0);
        assert!(hi < 2.5 && hi > 0.9, "{hi}");
        // 100%: the observed max.
        let mut q = Percentile::new(64, 100.0, false).unwrap();
        q.observe(&[-3.0, 1.0]);
        assert_eq!(q.range(), (-3.0, 1.0));
    }

    #[test]
    fn percentile_symmetric_constant_and_merge() {
        let mut p = Percentile::new(128, 99.999, true).unwrap();
        p.observe(&[0.0; 10]);
        assert_eq!(p.range(), (0.0, 0.0));
        p.observe(&[-2.0, 1.0]);
        let (lo, hi) = p.range();
        assert_eq!(lo, -hi);
        assert!(hi <= 2.0 && hi > 1.9);
        let mut a = Percentile::new(128, 100.0, false).unwrap();
        a.observe(&[0.5, -0.25]);
        let mut b = Percentile::new(128, 100.0, false).unwrap();
        b.observe(&[4.0, f32::NAN]);
        a.merge(&b);
        assert_eq!(a.range(), (-0.25, 4.0));
        assert_eq!(a.skipped(), 1);
        assert!(Percentile::new(0, 99.0, false).is_err());
        assert!(Percentile::new(8, 0.0, false).is_err());
        assert!(Percentile::new(8, f64::NAN, false).is_err());
    }
}

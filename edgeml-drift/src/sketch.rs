//! Mergeable sketches for fleets: a relative-error quantile sketch ([`QuantileSketch`],
//! DDSketch-style logarithmic buckets) and a fixed-edge [`HistogramSketch`].
//!
//! Devices summarise their data locally, ship the sketch (JSON via serde, or the
//! compact binary form of [`QuantileSketch::to_bytes`]), and a server merges them.
//! Merging adds integer bucket counts, so it is exactly associative and commutative.
//!
//! # Error bounds (`QuantileSketch` with accuracy α)
//! Every finite non-zero `x` is stored in bucket `i = ceil(log_γ |x|)`, γ = (1+α)/(1−α),
//! covering `(γ^{i-1}, γ^i]`, and represented by `2γ^i/(γ+1)`, which is within
//! relative error α of every value of the bucket. Hence:
//! - **quantiles**: [`QuantileSketch::quantile`] returns `x̂` with `|x̂ − x_q| ≤ α |x_q|`
//!   where `x_q` is the exact lower `q`-quantile (the element of rank `⌊q (n−1)⌋`);
//! - **Wasserstein-1** between two sketches differs from the exact value by at most
//!   `α (E|u| + E|v|)` (each value moves by at most `α|x|`; triangle inequality) —
//!   returned as [`SketchDistance::max_error`];
//! - **KS**: ECDFs are exact at bucket boundaries, so the sketch brackets the exact
//!   statistic, `d_lower ≤ D ≤ d_upper` ([`ks_from_sketches`]); its p-value is
//!   computed from `d_lower`, so it is never smaller than the exact p-value: the sketch
//!   test cannot raise an alarm that the exact test would not.
//!
//! Non-finite values are counted (`nan`, `pos_inf`, `neg_inf`) and never bucketed.

use crate::error::{Error, Result};
use std::collections::BTreeMap;

mod compare;
mod histogram;

pub use compare::{
    SketchDistance, SketchKs, aligned_counts, ks_from_sketches, wasserstein_from_sketches,
};
pub use histogram::HistogramSketch;

/// Counts of non-finite values seen by a sketch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NonFinite {
    /// NaNs.
    pub nan: u64,
    /// `+inf`.
    pub pos_inf: u64,
    /// `-inf`.
    pub neg_inf: u64,
}

impl NonFinite {
    pub(crate) fn add(&mut self, x: f64) {
        if x.is_nan() {
            self.nan += 1;
        } else if x > 0.0 {
            self.pos_inf += 1;
        } else {
            self.neg_inf += 1;
        }
    }
    pub(crate) fn merge(&mut self, o: &NonFinite) {
        self.nan += o.nan;
        self.pos_inf += o.pos_inf;
        self.neg_inf += o.neg_inf;
    }
    /// Total non-finite values.
    pub fn total(&self) -> u64 {
        self.nan + self.pos_inf + self.neg_inf
    }
}

/// Relative-error quantile sketch (DDSketch-style, no bucket collapsing: memory grows
/// with `log_γ(max|x| / min|x|)`, about 2300 buckets for α = 1% over 1e-9..1e9).
///
/// Deserialisation (serde) validates: α in (0, 1) and bucket counts adding up to the
/// count, otherwise it fails.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "QuantileSketchRepr")]
pub struct QuantileSketch {
    alpha: f64,
    #[serde(skip_serializing)]
    ln_gamma: f64,
    pos: BTreeMap<i32, u64>,
    neg: BTreeMap<i32, u64>,
    zero: u64,
    count: u64,
    sum_abs: f64,
    min: f64,
    max: f64,
    nonfinite: NonFinite,
}

/// Values with `|x|` below this are counted as zero (keeps indices in `i32`).
const MIN_ABS: f64 = 1e-300;

impl QuantileSketch {
    /// An empty sketch with relative accuracy `alpha` (e.g. 0.01).
    ///
    /// # Errors
    /// `alpha` outside `(0, 1)`.
    pub fn new(alpha: f64) -> Result<Self> {
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(Error::InvalidArgument(format!(
                "sketch accuracy alpha = {alpha}"
            )));
        }
        Ok(Self {
            alpha,
            ln_gamma: ((1.0 + alpha) / (1.0 - alpha)).ln(),
            pos: BTreeMap::new(),
            neg: BTreeMap::new(),
            zero: 0,
            count: 0,
            sum_abs: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            nonfinite: NonFinite::default(),
        })
    }

    /// A sketch of `xs`.
    ///
    /// # Errors
    /// As [`QuantileSketch::new`].
    pub fn from_slice(alpha: f64, xs: &[f64]) -> Result<Self> {
        let mut s = Self::new(alpha)?;
        for &x in xs {
            s.insert(x);
        }
        Ok(s)
    }

    /// The accuracy α.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Number of finite values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Non-finite values seen.
    pub fn nonfinite(&self) -> NonFinite {
        self.nonfinite
    }

    /// Exact minimum and maximum of the finite values (`None` when empty).
    pub fn min_max(&self) -> Option<(f64, f64)> {
        (self.count > 0).then_some((self.min, self.max))
    }

    /// Mean of `|x|` over the finite values (exact up to summation rounding).
    pub fn mean_abs(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_abs / self.count as f64
        }
    }

    #[inline]
    fn index(&self, a: f64) -> i32 {
        (a.ln() / self.ln_gamma).ceil() as i32
    }

    /// Representative value of bucket `i` (positive side).
    #[inline]
    fn value(&self, i: i32) -> f64 {
        let g = (self.ln_gamma).exp();
        2.0 * (f64::from(i) * self.ln_gamma).exp() / (g + 1.0)
    }

    /// Upper boundary `γ^i` of bucket `i`.
    #[inline]
    fn upper(&self, i: i32) -> f64 {
        (f64::from(i) * self.ln_gamma).exp()
    }

    /// Adds one value (non-finite values are only counted).
    pub fn insert(&mut self, x: f64) {
        if !x.is_finite() {
            self.nonfinite.add(x);
            return;
        }
        self.count += 1;
        self.sum_abs += x.abs();
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        let a = x.abs();
        if a < MIN_ABS {
            self.zero += 1;
        } else if x > 0.0 {
            *self.pos.entry(self.index(a)).or_default() += 1;
        } else {
            *self.neg.entry(self.index(a)).or_default() += 1;
        }
    }

    /// Adds `other` into `self`.
    ///
    /// # Errors
    /// The accuracies differ.
    pub fn merge(&mut self, other: &QuantileSketch) -> Result<()> {
        if self.alpha != other.alpha {
            return Err(Error::InvalidArgument(format!(
                "cannot merge sketches with alpha {} and {}",
                self.alpha, other.alpha
            )));
        }
        for (k, v) in &other.pos {
            *self.pos.entry(*k).or_default() += v;
        }
        for (k, v) in &other.neg {
            *self.neg.entry(*k).or_default() += v;
        }
        self.zero += other.zero;
        self.count += other.count;
        self.sum_abs += other.sum_abs;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.nonfinite.merge(&other.nonfinite);
        Ok(())
    }

    /// Buckets in increasing value order: `(representative, upper boundary, count)`.
    /// Negative buckets `(−γ^i, −γ^{i−1}]` have upper boundary `−γ^{i−1}`; the zero
    /// bucket has representative and boundary 0.
    pub(crate) fn ordered(&self) -> Vec<(f64, f64, u64)> {
        let mut v = Vec::with_capacity(self.pos.len() + self.neg.len() + 1);
        for (&i, &c) in self.neg.iter().rev() {
            v.push((-self.value(i), -self.upper(i - 1), c));
        }
        if self.zero > 0 {
            v.push((0.0, 0.0, self.zero));
        }
        for (&i, &c) in &self.pos {
            v.push((self.value(i), self.upper(i), c));
        }
        v
    }

    /// The lower `q`-quantile (rank `⌊q (n−1)⌋`), within relative error α, clamped to
    /// the exact `[min, max]`.
    ///
    /// # Errors
    /// Empty sketch or `q` outside `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Result<f64> {
        if self.count == 0 {
            return Err(Error::EmptySample("sketch"));
        }
        if !(0.0..=1.0).contains(&q) {
            return Err(Error::InvalidArgument(format!("quantile {q}")));
        }
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        let mut seen = 0u64;
        for (rep, _, c) in self.ordered() {
            seen += c;
            if seen > rank {
                return Ok(rep.clamp(self.min, self.max));
            }
        }
        Ok(self.max)
    }

    /// Compact binary form: magic, α, counters, then the buckets as zig-zag varint
    /// index deltas and varint counts.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = b"EDQS1".to_vec();
        out.extend_from_slice(&self.alpha.to_le_bytes());
        out.extend_from_slice(&self.sum_abs.to_le_bytes());
        out.extend_from_slice(&self.min.to_le_bytes());
        out.extend_from_slice(&self.max.to_le_bytes());
        for v in [
            self.zero,
            self.count,
            self.nonfinite.nan,
            self.nonfinite.pos_inf,
            self.nonfinite.neg_inf,
        ] {
            put_varint(&mut out, v);
        }
        for m in [&self.pos, &self.neg] {
            put_varint(&mut out, m.len() as u64);
            let mut prev = 0i64;
            for (&k, &c) in m {
                let d = i64::from(k) - prev;
                put_varint(&mut out, ((d << 1) ^ (d >> 63)) as u64);
                put_varint(&mut out, c);
                prev = i64::from(k);
            }
        }
        out
    }

    /// Parses [`QuantileSketch::to_bytes`] output, validating it.
    ///
    /// # Errors
    /// Truncated or inconsistent input.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let bad = |m: &str| Error::Serde(format!("quantile sketch bytes: {m}"));
        let rest = b.strip_prefix(b"EDQS1").ok_or_else(|| bad("bad magic"))?;
        let mut r = Reader { b: rest, pos: 0 };
        let alpha = r.f64().ok_or_else(|| bad("truncated"))?;
        let mut s = Self::new(alpha).map_err(|_| bad("alpha"))?;
        s.sum_abs = r.f64().ok_or_else(|| bad("truncated"))?;
        s.min = r.f64().ok_or_else(|| bad("truncated"))?;
        s.max = r.f64().ok_or_else(|| bad("truncated"))?;
        let mut c = [0u64; 5];
        for v in &mut c {
            *v = r.varint().ok_or_else(|| bad("truncated"))?;
        }
        s.zero = c[0];
        s.count = c[1];
        s.nonfinite = NonFinite {
            nan: c[2],
            pos_inf: c[3],
            neg_inf: c[4],
        };
        let mut total = s.zero;
        for side in 0..2 {
            let n = r.varint().ok_or_else(|| bad("truncated"))?;
            if n > (r.b.len() - r.pos) as u64 {
                return Err(bad("bucket count larger than input"));
            }
            let mut prev = 0i64;
            for _ in 0..n {
                let z = r.varint().ok_or_else(|| bad("truncated"))?;
                let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
                let k = prev.checked_add(d).ok_or_else(|| bad("index overflow"))?;
                let k32 = i32::try_from(k).map_err(|_| bad("index range"))?;
                let cnt = r.varint().ok_or_else(|| bad("truncated"))?;
                total = total
                    .checked_add(cnt)
                    .ok_or_else(|| bad("count overflow"))?;
                if side == 0 {
                    s.pos.insert(k32, cnt)
                } else {
                    s.neg.insert(k32, cnt)
                };
                prev = k;
            }
        }
        if total != s.count || r.pos != r.b.len() {
            return Err(bad("counts do not add up"));
        }
        Ok(s)
    }

    /// Recomputes the derived field and validates (serde deserialisation already does
    /// this; kept for callers that build sketches by other means).
    ///
    /// # Errors
    /// Bad α or inconsistent counts.
    pub fn validated(mut self) -> Result<Self> {
        let fresh = Self::new(self.alpha).map_err(|e| Error::Serde(e.to_string()))?;
        self.ln_gamma = fresh.ln_gamma;
        let total = self
            .pos
            .values()
            .chain(self.neg.values())
            .try_fold(self.zero, |a, &c| a.checked_add(c));
        if total != Some(self.count) {
            return Err(Error::Serde("quantile sketch counts do not add up".into()));
        }
        Ok(self)
    }
}

/// The serialised fields of a [`QuantileSketch`]; converted with validation.
#[derive(serde::Deserialize)]
struct QuantileSketchRepr {
    alpha: f64,
    pos: BTreeMap<i32, u64>,
    neg: BTreeMap<i32, u64>,
    zero: u64,
    count: u64,
    sum_abs: f64,
    min: f64,
    max: f64,
    nonfinite: NonFinite,
}

impl TryFrom<QuantileSketchRepr> for QuantileSketch {
    type Error = Error;
    fn try_from(r: QuantileSketchRepr) -> Result<Self> {
        QuantileSketch {
            alpha: r.alpha,
            ln_gamma: 0.0,
            pos: r.pos,
            neg: r.neg,
            zero: r.zero,
            count: r.count,
            sum_abs: r.sum_abs,
            min: r.min,
            max: r.max,
            nonfinite: r.nonfinite,
        }
        .validated()
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn f64(&mut self) -> Option<f64> {
        let s = self.b.get(self.pos..self.pos + 8)?;
        self.pos += 8;
        Some(f64::from_le_bytes(s.try_into().ok()?))
    }
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
}

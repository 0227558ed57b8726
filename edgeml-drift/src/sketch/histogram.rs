//! Fixed-edge histogram sketch.

use super::NonFinite;
use crate::error::{Error, Result};

/// Fixed-edge histogram sketch: mergeable when the edges are identical.
/// Bins are `[e_i, e_{i+1})`, the last one closed; values outside are counted in
/// `underflow`/`overflow`, non-finite ones in `nonfinite`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HistogramSketch {
    edges: Vec<f64>,
    counts: Vec<u64>,
    underflow: u64,
    overflow: u64,
    nonfinite: NonFinite,
}

impl HistogramSketch {
    /// An empty histogram on `edges` (at least 2, finite, strictly increasing).
    ///
    /// # Errors
    /// Invalid edges.
    pub fn new(edges: Vec<f64>) -> Result<Self> {
        if edges.len() < 2
            || edges.iter().any(|e| !e.is_finite())
            || edges.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(Error::InvalidArgument(
                "histogram edges must be finite and increasing".into(),
            ));
        }
        let n = edges.len() - 1;
        Ok(Self {
            edges,
            counts: vec![0; n],
            underflow: 0,
            overflow: 0,
            nonfinite: NonFinite::default(),
        })
    }

    /// Adds one value.
    pub fn insert(&mut self, x: f64) {
        if !x.is_finite() {
            self.nonfinite.add(x);
            return;
        }
        let nb = self.counts.len();
        if x < self.edges[0] {
            self.underflow += 1;
        } else if x > self.edges[nb] {
            self.overflow += 1;
        } else {
            let i = self
                .edges
                .partition_point(|&e| e <= x)
                .saturating_sub(1)
                .min(nb - 1);
            self.counts[i] += 1;
        }
    }

    /// Adds `other` into `self`.
    ///
    /// # Errors
    /// Different edges.
    pub fn merge(&mut self, other: &HistogramSketch) -> Result<()> {
        if self.edges != other.edges {
            return Err(Error::InvalidArgument(
                "cannot merge histograms with different edges".into(),
            ));
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.underflow += other.underflow;
        self.overflow += other.overflow;
        self.nonfinite.merge(&other.nonfinite);
        Ok(())
    }

    /// Counts per bin with underflow and overflow prepended/appended (ready for the
    /// histogram divergences).
    pub fn counts_with_outliers(&self) -> Vec<f64> {
        let mut v = Vec::with_capacity(self.counts.len() + 2);
        v.push(self.underflow as f64);
        v.extend(self.counts.iter().map(|&c| c as f64));
        v.push(self.overflow as f64);
        v
    }

    /// Non-finite values seen.
    pub fn nonfinite(&self) -> NonFinite {
        self.nonfinite
    }
}

//! Streaming drift detectors with river's semantics and defaults.
//!
//! Every detector implements [`DriftDetector`](edgeml_core::DriftDetector). As in river,
//! a detector that signalled a drift resets itself at the start of the *next*
//! `update`. Non-finite observations are ignored (the state does not change, the
//! flags keep their value) and counted in `nonfinite()`; river would propagate NaN
//! into its statistics instead.
//!
//! | detector | river class | defaults |
//! |---|---|---|
//! | [`Adwin`] | `drift.ADWIN` | δ = 0.002, clock 32, 5 buckets per row, min window 5, grace 10 |
//! | [`PageHinkley`] | `drift.PageHinkley` | min 30, δ = 0.005, λ = 50, α = 0.9999, both directions |
//! | [`Ddm`] | `drift.binary.DDM` | warm start 30, warning 2σ, drift 3σ |
//! | [`Eddm`] | `drift.binary.EDDM` | warm start 30, α = 0.95, β = 0.9 |
//! | [`HddmA`] | `drift.binary.HDDMA` | drift 0.001, warning 0.005, one-sided |
//! | [`HddmW`] | `drift.binary.HDDMW` | drift 0.001, warning 0.005, λ = 0.05, one-sided |
//! | [`Kswin`] | `drift.KSWIN` | α = 0.005, window 100, stat size 30, seed required |
//! | [`Cusum`] | none in river 0.26 | see its docs |
//! | [`ConfidenceMonitor`] | none | see its docs |

/// What every detector that resets itself after a drift shares, written once:
/// `nonfinite()`, and a [`DriftDetector`](edgeml_core::DriftDetector) impl whose
/// `update` ignores a non-finite observation (counting it, leaving state and flags as
/// they are), resets a detector that signalled a drift at the start of the next update
/// (keeping the count), then hands the observation to the detector's own `step(x)`.
/// `reset` rebuilds the detector from its `cfg`; with `warning`, `warning_detected`
/// reports the detector's `warning` flag.
macro_rules! common_impl {
    ($t:ty) => {
        $crate::detect::common_impl!(@impl $t, );
    };
    ($t:ty, warning) => {
        $crate::detect::common_impl!(@impl $t, fn warning_detected(&self) -> bool {
            self.warning
        });
    };
    (@impl $t:ty, $($warning:tt)*) => {
        impl $t {
            /// Number of ignored non-finite observations.
            pub fn nonfinite(&self) -> u64 {
                self.nonfinite
            }
        }
        impl edgeml_core::DriftDetector for $t {
            fn update(&mut self, x: f64) {
                if !x.is_finite() {
                    self.nonfinite += 1;
                    return;
                }
                if self.drift {
                    let nf = self.nonfinite;
                    self.reset();
                    self.nonfinite = nf;
                }
                self.step(x);
            }
            fn drift_detected(&self) -> bool {
                self.drift
            }
            $($warning)*
            fn reset(&mut self) {
                *self = Self::new(self.cfg);
            }
        }
    };
}
pub(crate) use common_impl;

mod adwin;
mod binary;
mod cusum;
mod kswin;
mod mt;
mod page_hinkley;

pub use adwin::{Adwin, AdwinConfig};
pub use binary::{Ddm, DdmConfig, Eddm, EddmConfig, HddmA, HddmAConfig, HddmW, HddmWConfig};
pub use cusum::{ConfidenceMonitor, Cusum, CusumConfig};
pub use kswin::{Kswin, KswinConfig};
pub use page_hinkley::{PageHinkley, PageHinkleyConfig, PhMode};

/// river's `stats.Mean`: `n += 1; mean += (x - mean) / n` (bit-for-bit the same
/// operation order).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct RunningMean {
    pub(crate) n: f64,
    pub(crate) mean: f64,
}

impl RunningMean {
    pub(crate) fn update(&mut self, x: f64) {
        self.n += 1.0;
        self.mean += (1.0 / self.n) * (x - self.mean);
    }
}

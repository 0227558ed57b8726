//! Capability traits implemented across the family.

/// A streaming concept-drift detector: feed it one observation at a time.
///
/// Observations are whatever the detector monitors: a model's error indicator (0/1) for
/// DDM-style detectors, a real-valued statistic (loss, confidence, a feature) for ADWIN,
/// Page-Hinkley, KSWIN or CUSUM.
///
/// # Implementing
/// `update` must run in bounded (ideally O(1) amortised or O(log n)) time and memory.
/// After a drift is signalled, detectors that follow river's semantics reset their state
/// on the *next* `update`; document any difference. `drift_detected` and
/// `warning_detected` describe the state after the most recent `update`.
///
/// # Errors
/// `update` itself does not fail; implementations document how they treat non-finite
/// values (edgeml's detectors ignore them and count them).
///
/// # Panics
/// Implementations must not panic on any input.
pub trait DriftDetector {
    /// Feeds one observation.
    fn update(&mut self, x: f64);
    /// Whether the most recent `update` signalled a drift.
    fn drift_detected(&self) -> bool;
    /// Whether the most recent `update` signalled a warning (detectors without a warning
    /// zone return `false`).
    fn warning_detected(&self) -> bool {
        false
    }
    /// Forgets everything seen so far, keeping the configuration.
    fn reset(&mut self);
}

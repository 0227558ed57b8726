//! Schedules for the temperature and the loss weights, as plain functions of the step.

/// A value that changes with the training step: constant, or a linear or cosine ramp
/// from `start` (at step 0) to `end` (at step `steps` and after).
///
/// ```
/// use edgeml_distill::Schedule;
///
/// let t = Schedule::Cosine { start: 4.0, end: 1.0, steps: 100 };
/// assert_eq!(t.at(0), 4.0);
/// assert!((t.at(50) - 2.5).abs() < 1e-6);
/// assert_eq!(t.at(100), 1.0);
/// assert_eq!(t.at(1_000), 1.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// The same value at every step.
    Constant(f32),
    /// `start + (end − start)·s/steps`, held at `end` from step `steps` on.
    Linear {
        /// The value at step 0.
        start: f32,
        /// The value from step `steps` on.
        end: f32,
        /// The length of the ramp (0 jumps to `end` at once).
        steps: u64,
    },
    /// `end + (start − end)·(1 + cos(π·s/steps))/2` (the shape of PyTorch's
    /// `CosineAnnealingLR`), held at `end` from step `steps` on.
    Cosine {
        /// The value at step 0.
        start: f32,
        /// The value from step `steps` on.
        end: f32,
        /// The length of the ramp (0 jumps to `end` at once).
        steps: u64,
    },
}

impl Schedule {
    /// The value at `step`.
    pub fn at(&self, step: u64) -> f32 {
        match *self {
            Schedule::Constant(v) => v,
            Schedule::Linear { start, end, steps } => linear(start, end, step, steps),
            Schedule::Cosine { start, end, steps } => cosine(start, end, step, steps),
        }
    }
}

/// The fraction of the ramp done at `step`, in `[0, 1]`.
fn progress(step: u64, steps: u64) -> f64 {
    if steps == 0 || step >= steps {
        1.0
    } else {
        step as f64 / steps as f64
    }
}

/// Linear ramp from `start` (step 0) to `end` (step `steps` and after).
pub fn linear(start: f32, end: f32, step: u64, steps: u64) -> f32 {
    let p = progress(step, steps);
    if p >= 1.0 {
        return end;
    }
    (f64::from(start) + (f64::from(end) - f64::from(start)) * p) as f32
}

/// Cosine ramp from `start` (step 0) to `end` (step `steps` and after).
pub fn cosine(start: f32, end: f32, step: u64, steps: u64) -> f32 {
    let p = progress(step, steps);
    if p >= 1.0 {
        return end;
    }
    let w = 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
    (f64::from(end) + (f64::from(start) - f64::from(end)) * w) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_hit_their_ends_and_midpoints() {
        assert_eq!(linear(1.0, 3.0, 0, 10), 1.0);
        assert_eq!(linear(1.0, 3.0, 5, 10), 2.0);
        assert_eq!(linear(1.0, 3.0, 10, 10), 3.0);
        assert_eq!(linear(1.0, 3.0, 99, 10), 3.0);
        assert_eq!(linear(1.0, 3.0, 0, 0), 3.0);
        assert_eq!(cosine(4.0, 0.0, 0, 8), 4.0);
        assert!((cosine(4.0, 0.0, 4, 8) - 2.0).abs() < 1e-6);
        // cos(π/4): 2·(1 + √2/2)
        assert!((cosine(4.0, 0.0, 2, 8) - (2.0 + 2f32.sqrt())).abs() < 1e-6);
        assert_eq!(cosine(4.0, 0.0, 8, 8), 0.0);
        assert_eq!(Schedule::Constant(0.3).at(12345), 0.3);
        assert_eq!(
            Schedule::Linear {
                start: 0.0,
                end: 1.0,
                steps: 4
            }
            .at(1),
            0.25
        );
    }
}

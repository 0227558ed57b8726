//! Pruning schedules: TF-MOT's `ConstantSparsity` and `PolynomialDecay`, and Zhu &
//! Gupta's gradual cubic schedule.
//!
//! TF-MOT (`tensorflow_model_optimization/python/core/sparsity/keras/
//! pruning_schedule.py`) prunes at `step` when
//! `begin_step <= step && (step <= end_step || end_step == -1) &&
//! (step − begin_step) % frequency == 0`: the first pruning step is `begin_step` itself
//! and the phase of `frequency` is relative to `begin_step`, not to 0. `end_step` is
//! inclusive. Here `end_step == -1` is `None`.

use crate::error::{Error, Result, check_sparsity};
use edgeml_core::Schedule;

/// TF-MOT's `_should_prune_in_step`.
fn in_turn(step: u64, begin: u64, end: Option<u64>, frequency: u64) -> bool {
    step >= begin && end.is_none_or(|e| step <= e) && (step - begin).is_multiple_of(frequency)
}

fn check_steps(begin: u64, end: Option<u64>, frequency: u64) -> Result<()> {
    if frequency == 0 {
        return Err(Error::InvalidArgument("frequency must be > 0".into()));
    }
    if let Some(e) = end
        && e < begin
    {
        return Err(Error::InvalidArgument(format!(
            "end_step {e} is before begin_step {begin}"
        )));
    }
    Ok(())
}

/// TF-MOT `ConstantSparsity(target_sparsity, begin_step, end_step=-1, frequency=100)`:
/// the sparsity is `target` at every step (also outside `[begin, end]`, as in TF-MOT,
/// where only `should_prune` depends on the step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConstantSparsity {
    target: f64,
    begin_step: u64,
    end_step: Option<u64>,
    frequency: u64,
}

impl ConstantSparsity {
    /// `end_step: None` prunes forever (TF-MOT's `-1`); TF-MOT's default frequency is
    /// 100.
    ///
    /// # Errors
    /// [`Error::InvalidSparsity`] unless `target` is in `[0, 1)`;
    /// [`Error::InvalidArgument`] for `frequency == 0` or `end_step < begin_step`.
    pub fn new(
        target: f64,
        begin_step: u64,
        end_step: Option<u64>,
        frequency: u64,
    ) -> Result<Self> {
        check_sparsity(target, "target_sparsity")?;
        check_steps(begin_step, end_step, frequency)?;
        Ok(Self {
            target,
            begin_step,
            end_step,
            frequency,
        })
    }
}

impl Schedule for ConstantSparsity {
    fn sparsity(&self, _step: u64) -> f32 {
        // tf.constant(target_sparsity, dtype=tf.float32); a value just below 1 could
        // round to 1.0 in f32, which the trait forbids.
        (self.target as f32).min(1.0 - f32::EPSILON / 2.0)
    }

    fn should_prune(&self, step: u64) -> bool {
        in_turn(step, self.begin_step, self.end_step, self.frequency)
    }
}

/// TF-MOT `PolynomialDecay(initial_sparsity, final_sparsity, begin_step, end_step,
/// power=3, frequency=100)`, evaluated in `f32` like TF-MOT:
///
/// `p = clamp((step − begin_step) / (end_step − begin_step), 0, 1)`,
/// `s = (initial − final) · (1 − p)^power + final`.
///
/// Before `begin_step` the sparsity is `initial`, after `end_step` it is `final`
/// (`p` is clamped); `should_prune` is true only on `begin_step + j·frequency <=
/// end_step`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolynomialDecay {
    initial: f64,
    final_: f64,
    begin_step: u64,
    end_step: u64,
    power: f32,
    frequency: u64,
}

impl PolynomialDecay {
    /// A polynomial-decay schedule with TF-MOT's defaults `power = 3`,
    /// `frequency = 100`; change them with [`PolynomialDecay::with_power`] and
    /// [`PolynomialDecay::with_frequency`].
    ///
    /// # Errors
    /// [`Error::InvalidSparsity`] unless both sparsities are in `[0, 1)`;
    /// [`Error::InvalidArgument`] unless `begin_step < end_step` (TF-MOT accepts
    /// `begin_step == end_step` and then divides by zero).
    pub fn new(initial: f64, final_: f64, begin_step: u64, end_step: u64) -> Result<Self> {
        check_sparsity(initial, "initial_sparsity")?;
        check_sparsity(final_, "final_sparsity")?;
        if end_step <= begin_step {
            return Err(Error::InvalidArgument(format!(
                "PolynomialDecay needs begin_step < end_step, got {begin_step} and {end_step}"
            )));
        }
        Ok(Self {
            initial,
            final_,
            begin_step,
            end_step,
            power: 3.0,
            frequency: 100,
        })
    }

    /// Sets the exponent (TF-MOT default 3).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a non-finite or negative power.
    pub fn with_power(mut self, power: f32) -> Result<Self> {
        if !(power.is_finite() && power >= 0.0) {
            return Err(Error::InvalidArgument(format!("power {power}")));
        }
        self.power = power;
        Ok(self)
    }

    /// Sets how often masks are recomputed (TF-MOT default 100).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for 0.
    pub fn with_frequency(mut self, frequency: u64) -> Result<Self> {
        check_steps(self.begin_step, Some(self.end_step), frequency)?;
        self.frequency = frequency;
        Ok(self)
    }
}

impl Schedule for PolynomialDecay {
    fn sparsity(&self, step: u64) -> f32 {
        // TF-MOT: p = cast(step − begin, float32) / (end − begin), clamped to [0, 1];
        // before begin_step the numerator is negative and p clamps to 0.
        let num = step.checked_sub(self.begin_step).map_or(-1.0, |d| d as f32);
        let p = (num / (self.end_step - self.begin_step) as f32).clamp(0.0, 1.0);
        // `initial − final` is a Python float (f64) difference, cast to float32 when it
        // meets the float32 tensor; so is `final`.
        let s = ((self.initial - self.final_) as f32) * (1.0f32 - p).powf(self.power)
            + self.final_ as f32;
        // Rounding cannot take s far outside [min, max] of the two sparsities; the
        // clamp keeps the trait's [0, 1) promise.
        s.clamp(0.0, self.initial.max(self.final_) as f32)
    }

    fn should_prune(&self, step: u64) -> bool {
        in_turn(step, self.begin_step, Some(self.end_step), self.frequency)
    }
}

/// Zhu & Gupta's gradual pruning ("To prune, or not to prune", 2017, eq. 1):
/// `s_t = s_f + (s_i − s_f) · (1 − (t − t0) / (n·Δt))³` for
/// `t ∈ {t0, t0 + Δt, …, t0 + n·Δt}`.
///
/// Between pruning steps the sparsity holds the value of the last pruning step
/// (`t` is rounded down to `t0 + j·Δt`); before `t0` it is `s_i`, after `t0 + n·Δt` it
/// is `s_f`. Computed in `f64`, returned as `f32`. At pruning steps it equals
/// `PolynomialDecay(s_i, s_f, t0, t0 + n·Δt)` with power 3 and frequency `Δt`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradualCubic {
    initial: f64,
    final_: f64,
    begin_step: u64,
    num_updates: u64,
    frequency: u64,
}

impl GradualCubic {
    /// `initial` = `s_i`, `final_` = `s_f`, `begin_step` = `t0`, `num_updates` = `n`,
    /// `frequency` = `Δt`.
    ///
    /// # Errors
    /// [`Error::InvalidSparsity`] unless both sparsities are in `[0, 1)`;
    /// [`Error::InvalidArgument`] for `n == 0`, `Δt == 0`, or `t0 + n·Δt` overflowing.
    pub fn new(
        initial: f64,
        final_: f64,
        begin_step: u64,
        num_updates: u64,
        frequency: u64,
    ) -> Result<Self> {
        check_sparsity(initial, "initial_sparsity")?;
        check_sparsity(final_, "final_sparsity")?;
        if num_updates == 0 || frequency == 0 {
            return Err(Error::InvalidArgument(format!(
                "GradualCubic needs n > 0 and Δt > 0, got n = {num_updates}, Δt = {frequency}"
            )));
        }
        num_updates
            .checked_mul(frequency)
            .and_then(|d| d.checked_add(begin_step))
            .ok_or_else(|| Error::InvalidArgument("t0 + n·Δt overflows".into()))?;
        Ok(Self {
            initial,
            final_,
            begin_step,
            num_updates,
            frequency,
        })
    }

    /// The last pruning step, `t0 + n·Δt`.
    pub fn end_step(&self) -> u64 {
        self.begin_step + self.num_updates * self.frequency
    }
}

impl Schedule for GradualCubic {
    fn sparsity(&self, step: u64) -> f32 {
        let j = step
            .checked_sub(self.begin_step)
            .map_or(0, |d| (d / self.frequency).min(self.num_updates));
        let frac = 1.0 - j as f64 / self.num_updates as f64;
        let s = self.final_ + (self.initial - self.final_) * frac * frac * frac;
        (s as f32).min(1.0 - f32::EPSILON / 2.0)
    }

    fn should_prune(&self, step: u64) -> bool {
        in_turn(step, self.begin_step, Some(self.end_step()), self.frequency)
    }
}

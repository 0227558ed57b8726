//! Gradual magnitude pruning of an [`Mlp`]'s weight matrices during [`train`]
//! (`crate::train`): layer-wise exact-k masks recomputed on a sparsity schedule.

use std::fmt;
use std::sync::Arc;

use edgeml_core::Schedule as SparsitySchedule;

use crate::error::{Error, Result};
use crate::mlp::Mlp;

/// Gradual magnitude pruning during [`train`](crate::train) (Zhu & Gupta's "To prune,
/// or not to prune", as TF-MOT's `prune_low_magnitude`).
///
/// Only the weight matrices are pruned, each layer on its own: at sparsity `s` a layer
/// of `n` weights has its `round(s·n)` smallest magnitudes pruned (Python's `round`,
/// half to even; ties broken by the lower index, as `edgeml-prune`'s exact-k and
/// PyTorch's `l1_unstructured`). Biases and the input standardisation are never pruned.
///
/// Steps count optimizer updates from 0 over the whole run. After the update of step
/// `t` the trainer asks [`schedule`](Self::schedule): when
/// `should_prune(t)`, every layer's mask is recomputed from the current weights at
/// `sparsity(t)` (the schedule `edgeml_core::Schedule` is the trait that
/// `edgeml-prune`'s `PolynomialDecay`, `ConstantSparsity` and `GradualCubic`
/// implement); then the pruned weights are set to zero. Before every update the
/// gradients of pruned weights are zeroed, and their optimizer moments are zeroed when
/// they are pruned, so neither momentum nor weight decay moves them again.
///
/// The run must end at [`sparsity`](Self::sparsity): [`train`](crate::train) refuses a
/// schedule whose last mask update within `epochs` does not give every layer exactly
/// `round(sparsity·n)` pruned weights. Early stopping and the choice of the best epoch
/// only consider epochs that end with every layer at that count (the epochs of the
/// ramp are never restored), so the trained network always has the target sparsity.
#[derive(Clone)]
pub struct PruneDuringTraining {
    /// The sparsity of every weight matrix at the end, in `[0, 1)`.
    pub sparsity: f64,
    /// When masks are recomputed and at which sparsity.
    pub schedule: Arc<dyn SparsitySchedule + Send + Sync>,
}

impl PruneDuringTraining {
    /// Pruning to `sparsity` on `schedule` (which must end at `sparsity`).
    pub fn new(sparsity: f64, schedule: impl SparsitySchedule + Send + Sync + 'static) -> Self {
        PruneDuringTraining {
            sparsity,
            schedule: Arc::new(schedule),
        }
    }

    /// Pruning from 0 to `sparsity` with TF-MOT's `PolynomialDecay(0, sparsity,
    /// begin_step, end_step, power=3, frequency)` formula,
    /// `s(t) = sparsity·(1 − (1 − p)³)`, `p = clamp((t − begin_step)/(end_step −
    /// begin_step), 0, 1)`, masks recomputed on `begin_step + j·frequency ≤ end_step`.
    /// (`edgeml-prune`'s `PolynomialDecay` gives the same schedule and more options.)
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a sparsity outside `[0, 1)`,
    /// `end_step <= begin_step` or `frequency == 0`.
    pub fn polynomial(
        sparsity: f64,
        begin_step: u64,
        end_step: u64,
        frequency: u64,
    ) -> Result<Self> {
        check_sparsity(sparsity)?;
        if end_step <= begin_step || frequency == 0 {
            return Err(Error::InvalidArgument(format!(
                "polynomial pruning needs begin_step < end_step and frequency > 0, got \
                 {begin_step}, {end_step}, {frequency}"
            )));
        }
        Ok(Self::new(
            sparsity,
            Cubic {
                target: sparsity,
                begin: begin_step,
                end: end_step,
                frequency,
            },
        ))
    }
}

impl fmt::Debug for PruneDuringTraining {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PruneDuringTraining")
            .field("sparsity", &self.sparsity)
            .field("schedule", &"dyn Schedule")
            .finish()
    }
}

impl PartialEq for PruneDuringTraining {
    /// Equal sparsities and the same schedule object (`Arc::ptr_eq`: schedules are not
    /// comparable through the trait).
    fn eq(&self, other: &Self) -> bool {
        self.sparsity == other.sparsity && Arc::ptr_eq(&self.schedule, &other.schedule)
    }
}

/// TF-MOT's `PolynomialDecay` from 0, power 3, in `f32` as TF-MOT evaluates it.
#[derive(Debug, Clone, Copy)]
struct Cubic {
    target: f64,
    begin: u64,
    end: u64,
    frequency: u64,
}

impl SparsitySchedule for Cubic {
    fn sparsity(&self, step: u64) -> f32 {
        let num = step.checked_sub(self.begin).map_or(-1.0, |d| d as f32);
        let p = (num / (self.end - self.begin) as f32).clamp(0.0, 1.0);
        let s = -(self.target as f32) * (1.0 - p).powi(3) + self.target as f32;
        s.clamp(0.0, self.target as f32)
    }

    fn should_prune(&self, step: u64) -> bool {
        step >= self.begin && step <= self.end && (step - self.begin).is_multiple_of(self.frequency)
    }
}

fn check_sparsity(s: f64) -> Result<()> {
    if (0.0..1.0).contains(&s) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "sparsity {s} is not in [0, 1)"
        )))
    }
}

/// How many of `n` weights sparsity `s` prunes.
pub(crate) fn pruned_count(s: f64, n: usize) -> usize {
    ((s * n as f64).round_ties_even() as usize).min(n)
}

/// The masks of one training run.
pub(crate) struct Masks {
    schedule: Arc<dyn SparsitySchedule + Send + Sync>,
    /// `(offset, length)` of each weight matrix in the flat parameters.
    layers: Vec<(usize, usize)>,
    /// One flag per parameter; biases are always kept.
    keep: Vec<bool>,
    /// Pruned weights per layer now, and at the target.
    pruned: Vec<usize>,
    target: Vec<usize>,
}

impl Masks {
    pub(crate) fn new(cfg: &PruneDuringTraining, mlp: &Mlp) -> Result<Self> {
        check_sparsity(cfg.sparsity)?;
        let layers: Vec<(usize, usize)> = (0..mlp.sizes().len() - 1)
            .map(|l| {
                let (off, n_in, n_out) = mlp.layer_at(l);
                (off, n_in * n_out)
            })
            .collect();
        if let Some(&(_, n)) = layers.iter().find(|l| u32::try_from(l.1).is_err()) {
            return Err(Error::InvalidArgument(format!(
                "a weight matrix of {n} entries is too large to prune (at most 2^32 - 1)"
            )));
        }
        let target = layers
            .iter()
            .map(|&(_, n)| pruned_count(cfg.sparsity, n))
            .collect();
        Ok(Masks {
            schedule: Arc::clone(&cfg.schedule),
            pruned: vec![0; layers.len()],
            layers,
            keep: vec![true; mlp.num_params()],
            target,
        })
    }

    /// Checks that the last mask update before step `steps` gives the target counts.
    pub(crate) fn check_reaches_target(&self, steps: u64, sparsity: f64) -> Result<()> {
        let last = (0..steps)
            .rev()
            .find(|&t| self.schedule.should_prune(t))
            .map(|t| (t, f64::from(self.schedule.sparsity(t))));
        let ok = last.is_some_and(|(_, s)| {
            self.layers
                .iter()
                .zip(&self.target)
                .all(|(&(_, n), &k)| pruned_count(s, n) == k)
        });
        if ok {
            return Ok(());
        }
        Err(Error::InvalidArgument(match last {
            Some((t, s)) => format!(
                "the pruning schedule's last mask update within the {steps} training steps \
                 (step {t}) is at sparsity {s}, not the target {sparsity}"
            ),
            None => {
                format!("the pruning schedule recomputes no mask within the {steps} training steps")
            }
        }))
    }

    /// After the optimizer update of `step`: recomputes the masks when the schedule
    /// says so (zeroing the moments of newly pruned weights), then zeroes the pruned
    /// weights.
    pub(crate) fn after_update(
        &mut self,
        step: u64,
        params: &mut [f32],
        moments: &mut [&mut [f32]],
    ) {
        if self.schedule.should_prune(step) {
            let s = f64::from(self.schedule.sparsity(step));
            for (li, &(off, n)) in self.layers.iter().enumerate() {
                let k = pruned_count(s, n);
                let w = &params[off..off + n];
                // (|w| bits, index) keys: exact-k with the lower index pruned first
                let mut keys: Vec<u64> = w
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (u64::from(v.to_bits() & 0x7fff_ffff) << 32) | i as u64)
                    .collect();
                let keep = &mut self.keep[off..off + n];
                keep.fill(true);
                if k > 0 {
                    keys.select_nth_unstable(k - 1);
                    for &key in &keys[..k] {
                        keep[(key & 0xffff_ffff) as usize] = false;
                    }
                }
                self.pruned[li] = k;
            }
            for m in moments.iter_mut() {
                zero_pruned(m, &self.keep);
            }
        }
        zero_pruned(params, &self.keep);
    }

    /// Zeroes the gradients of the pruned weights.
    pub(crate) fn mask_gradient(&self, grad: &mut [f32]) {
        zero_pruned(grad, &self.keep);
    }

    /// Whether every layer has its target number of pruned weights.
    pub(crate) fn at_target(&self) -> bool {
        self.pruned == self.target
    }

    /// Pruned weights over all weight-matrix entries, now.
    pub(crate) fn sparsity(&self) -> f64 {
        self.fraction(&self.pruned)
    }

    /// Pruned weights over all weight-matrix entries, at the target.
    pub(crate) fn target_sparsity(&self) -> f64 {
        self.fraction(&self.target)
    }

    fn fraction(&self, pruned: &[usize]) -> f64 {
        let total: usize = self.layers.iter().map(|l| l.1).sum();
        pruned.iter().sum::<usize>() as f64 / total.max(1) as f64
    }
}

fn zero_pruned(v: &mut [f32], keep: &[bool]) {
    for (x, &k) in v.iter_mut().zip(keep) {
        if !k {
            *x = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_polynomial_follows_tf_mot() {
        let p = PruneDuringTraining::polynomial(0.8, 10, 50, 10).unwrap();
        let s = &p.schedule;
        assert_eq!(s.sparsity(0), 0.0);
        assert_eq!(s.sparsity(10), 0.0);
        // p = 0.5: 0.8·(1 − 0.125)
        assert!((s.sparsity(30) - 0.7).abs() < 1e-6);
        assert_eq!(s.sparsity(50), 0.8);
        assert_eq!(s.sparsity(5000), 0.8);
        let steps: Vec<u64> = (0..100).filter(|&t| s.should_prune(t)).collect();
        assert_eq!(steps, [10, 20, 30, 40, 50]);
        assert!(PruneDuringTraining::polynomial(1.0, 0, 1, 1).is_err());
        assert!(PruneDuringTraining::polynomial(0.5, 3, 3, 1).is_err());
        assert!(PruneDuringTraining::polynomial(0.5, 0, 3, 0).is_err());
    }

    #[test]
    fn counts_round_half_to_even() {
        assert_eq!(pruned_count(0.5, 5), 2);
        assert_eq!(pruned_count(0.5, 7), 4);
        assert_eq!(pruned_count(0.875, 2048), 1792);
        assert_eq!(pruned_count(0.0, 10), 0);
    }
}

//! Divergences between the teacher's and the student's softened distributions.

use edgeml_core::{DistillLoss, Targets};

use crate::ce::log_softmax_f64;
use crate::error::{
    Error, Result, check_finite, check_shape, check_teacher, sample_weights, weight_of,
};
use crate::teacher::{TeacherOutput, teacher_logits};

/// Which divergence [`SoftLoss`] computes between the teacher's `p = softmax(z_t/T)` and
/// the student's `q = softmax(z_s/T)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Divergence {
    /// `KL(p ‖ q) = Σ p·(log p − log q)`, as
    /// `F.kl_div(log_softmax(z_s/T), softmax(z_t/T), reduction='batchmean')`.
    #[default]
    ForwardKl,
    /// `KL(q ‖ p) = Σ q·(log q − log p)`, as
    /// `F.kl_div(log_softmax(z_t/T), softmax(z_s/T), reduction='batchmean')`; infinite
    /// (an error) when the teacher gives probability 0 to a class.
    ReverseKl,
    /// `½·KL(p ‖ m) + ½·KL(q ‖ m)` with `m = (p + q)/2` (natural log, at most ln 2).
    JensenShannon,
    /// `−Σ p·log q`, as `F.cross_entropy(z_s/T, softmax(z_t/T))` (probability targets).
    SoftCrossEntropy,
}

/// Options of [`SoftLoss`]. `Default`: forward KL at `T = 1` (plain `F.kl_div` with
/// `reduction='batchmean'`), teacher logits, `T²` scaling on (a no-op at `T = 1`).
#[derive(Debug, Clone, PartialEq)]
pub struct SoftConfig {
    /// The divergence.
    pub divergence: Divergence,
    /// Temperature `T > 0` of both softmaxes.
    pub temperature: f32,
    /// Multiply the loss (and its gradient) by `T²`.
    pub scale_by_t_squared: bool,
    /// What the teacher's rows hold.
    pub teacher: TeacherOutput,
}

impl Default for SoftConfig {
    fn default() -> Self {
        SoftConfig {
            divergence: Divergence::ForwardKl,
            temperature: 1.0,
            scale_by_t_squared: true,
            teacher: TeacherOutput::Logits,
        }
    }
}

/// A divergence between softened teacher and student distributions, reduced as
/// `Σ s_i·ℓ_i / Σ s_i` (the batch mean without per-sample weights) and multiplied by
/// `T²` if configured. Reads `teacher` (required) and `sample_weights`. Computed in
/// f64 (log-sum-exp); the gradient is with respect to the student logits `z_s`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SoftLoss {
    /// The options.
    pub config: SoftConfig,
}

impl SoftLoss {
    /// A soft loss with the given options.
    pub fn new(config: SoftConfig) -> Self {
        SoftLoss { config }
    }

    /// The loss of the batch; writes its gradient with respect to `student` into `grad`.
    ///
    /// # Errors
    /// Length or class-count mismatches, non-finite logits, a teacher that is not what
    /// [`SoftConfig::teacher`] says, a bad temperature or weights, and
    /// [`Error::InfiniteLoss`] for a reverse KL against a zero teacher probability.
    pub fn loss_and_grad(
        &self,
        student: &[f32],
        batch: usize,
        classes: usize,
        targets: &Targets<'_>,
        grad: &mut [f32],
    ) -> Result<f64> {
        let cfg = &self.config;
        check_shape(student, batch, classes, grad)?;
        let t = cfg.temperature;
        if !(t.is_finite() && t > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "temperature {t} is not finite and positive"
            )));
        }
        check_finite(student, "student logits")?;
        let teacher = targets.teacher.ok_or(Error::Missing("teacher"))?;
        check_teacher(teacher, batch, classes)?;
        let zt = teacher_logits(cfg.teacher, teacher, classes)?;
        let sw = sample_weights(targets.sample_weights, batch)?;
        let denom: f64 = sw.map_or(batch as f64, |w| w.iter().map(|&x| f64::from(x)).sum());
        let t = f64::from(t);
        let tscale = if cfg.scale_by_t_squared { t * t } else { 1.0 };
        let (mut lp, mut lq, mut h) = (vec![0.0; classes], vec![0.0; classes], vec![0.0; classes]);
        let mut total = 0.0;
        for (i, ((zs, zt), g)) in student
            .chunks_exact(classes)
            .zip(zt.chunks_exact(classes))
            .zip(grad.chunks_exact_mut(classes))
            .enumerate()
        {
            let c = if denom > 0.0 {
                weight_of(sw, i) / denom * tscale
            } else {
                0.0
            };
            log_softmax_f64(zt, t, &mut lp);
            log_softmax_f64(zs, t, &mut lq);
            let loss = match cfg.divergence {
                Divergence::ForwardKl | Divergence::SoftCrossEntropy => {
                    let kl = cfg.divergence == Divergence::ForwardKl;
                    let mut l = 0.0;
                    for j in 0..classes {
                        let p = lp[j].exp();
                        if p > 0.0 {
                            l += p * (if kl { lp[j] } else { 0.0 } - lq[j]);
                        }
                        // ∂/∂z_s = (q − p)/T for both
                        h[j] = (lq[j].exp() - p) / t;
                    }
                    l
                }
                Divergence::ReverseKl => {
                    let mut l = 0.0;
                    for j in 0..classes {
                        let q = lq[j].exp();
                        h[j] = lq[j] - lp[j];
                        if q > 0.0 {
                            if lp[j] == f64::NEG_INFINITY {
                                return Err(Error::InfiniteLoss(
                                    "reverse KL: the teacher gives probability 0 to a class the student does not",
                                ));
                            }
                            l += q * h[j];
                        } else {
                            h[j] = 0.0;
                        }
                    }
                    softmax_chain(&lq, &mut h, t);
                    l
                }
                Divergence::JensenShannon => {
                    let mut l = 0.0;
                    for j in 0..classes {
                        let (a, b) = (lp[j], lq[j]);
                        let hi = a.max(b);
                        // log m = log((p + q)/2), in log space
                        let lm =
                            hi + ((a - hi).exp() + (b - hi).exp()).ln() - std::f64::consts::LN_2;
                        let (p, q) = (a.exp(), b.exp());
                        if p > 0.0 {
                            l += 0.5 * p * (a - lm);
                        }
                        if q > 0.0 {
                            l += 0.5 * q * (b - lm);
                        }
                        // ∂JS/∂q_j = ½·log(q_j/m_j)
                        h[j] = if q > 0.0 { 0.5 * (b - lm) } else { 0.0 };
                    }
                    softmax_chain(&lq, &mut h, t);
                    l
                }
            };
            total += c * loss;
            for (g, &hj) in g.iter_mut().zip(&h) {
                *g = (c * hj) as f32;
            }
        }
        Ok(total)
    }
}

/// Turns `h = ∂ℓ/∂q` into `∂ℓ/∂z_s` through `q = softmax(z_s/T)`:
/// `q_k·(h_k − Σ_j q_j·h_j)/T`.
fn softmax_chain(lq: &[f64], h: &mut [f64], t: f64) {
    let mean: f64 = lq.iter().zip(h.iter()).map(|(&l, &x)| l.exp() * x).sum();
    for (x, &l) in h.iter_mut().zip(lq) {
        *x = l.exp() * (*x - mean) / t;
    }
}

impl DistillLoss for SoftLoss {
    fn loss_and_grad(
        &self,
        student: &[f32],
        batch: usize,
        width: usize,
        targets: &Targets<'_>,
        grad: &mut [f32],
    ) -> edgeml_core::Result<f64> {
        Ok(SoftLoss::loss_and_grad(
            self, student, batch, width, targets, grad,
        )?)
    }
}

//! Feature (hint) losses: MSE, cosine embedding, attention transfer.

use edgeml_core::{DistillLoss, Targets};

use crate::error::{
    Error, Result, check_finite, check_len, check_shape, check_teacher, sample_weights, weight_of,
};

/// The teacher, the per-sample weights and `Σ s_i`.
type Common<'a> = (&'a [f32], Option<&'a [f32]>, f64);

/// The teacher's rows and the per-sample weights, checked, with `Σ s_i`.
fn common<'a>(
    student: &[f32],
    batch: usize,
    width: usize,
    targets: &Targets<'a>,
    grad: &[f32],
) -> Result<Common<'a>> {
    check_shape(student, batch, width, grad)?;
    check_finite(student, "student")?;
    let teacher = targets.teacher.ok_or(Error::Missing("teacher"))?;
    let sw = sample_weights(targets.sample_weights, batch)?;
    check_finite(teacher, "teacher")?;
    let denom = sw.map_or(batch as f64, |w| w.iter().map(|&x| f64::from(x)).sum());
    Ok((teacher, sw, denom))
}

/// Mean squared error between student and teacher rows of the same width, as
/// `F.mse_loss(student, teacher)` (`reduction='mean'`, dividing by `batch × width`):
/// logit matching, or the FitNets hint loss on (already projected) features. With
/// per-sample weights: `Σ_i s_i·Σ_j (x_ij − y_ij)² / (width·Σ s_i)`. Reads `teacher`
/// and `sample_weights`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mse;

impl Mse {
    /// The loss of the batch; writes its gradient with respect to `student` into `grad`.
    ///
    /// # Errors
    /// Length or width mismatches, non-finite inputs, a missing teacher, bad weights.
    pub fn loss_and_grad(
        &self,
        student: &[f32],
        batch: usize,
        width: usize,
        targets: &Targets<'_>,
        grad: &mut [f32],
    ) -> Result<f64> {
        let (teacher, sw, denom) = common(student, batch, width, targets, grad)?;
        check_teacher(teacher, batch, width)?;
        let mut total = 0.0;
        for (i, ((x, y), g)) in student
            .chunks_exact(width)
            .zip(teacher.chunks_exact(width))
            .zip(grad.chunks_exact_mut(width))
            .enumerate()
        {
            let c = if denom > 0.0 {
                weight_of(sw, i) / (denom * width as f64)
            } else {
                0.0
            };
            let mut row = 0.0;
            for ((&a, &b), g) in x.iter().zip(y).zip(g.iter_mut()) {
                let d = f64::from(a) - f64::from(b);
                row += d * d;
                *g = (2.0 * c * d) as f32;
            }
            total += c * row;
        }
        Ok(total)
    }
}

/// `ε` that PyTorch adds to each squared norm in `F.cosine_embedding_loss`.
const COSINE_EPS: f64 = 1e-12;

/// `1 − cos(student_i, teacher_i)` averaged over the batch, as
/// `F.cosine_embedding_loss(student, teacher, target=ones)` (DistilBERT's hidden-state
/// alignment); `cos = x·y / sqrt((‖x‖² + 1e-12)·(‖y‖² + 1e-12))` exactly as PyTorch
/// computes it. With per-sample weights: `Σ s_i·(1 − cos_i) / Σ s_i`. Reads `teacher`
/// and `sample_weights`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CosineEmbedding;

impl CosineEmbedding {
    /// The loss of the batch; writes its gradient with respect to `student` into `grad`.
    ///
    /// # Errors
    /// Length or width mismatches, non-finite inputs, a missing teacher, bad weights.
    pub fn loss_and_grad(
        &self,
        student: &[f32],
        batch: usize,
        width: usize,
        targets: &Targets<'_>,
        grad: &mut [f32],
    ) -> Result<f64> {
        let (teacher, sw, denom) = common(student, batch, width, targets, grad)?;
        check_teacher(teacher, batch, width)?;
        let mut total = 0.0;
        for (i, ((x, y), g)) in student
            .chunks_exact(width)
            .zip(teacher.chunks_exact(width))
            .zip(grad.chunks_exact_mut(width))
            .enumerate()
        {
            let c = if denom > 0.0 {
                weight_of(sw, i) / denom
            } else {
                0.0
            };
            let (mut xy, mut xx, mut yy) = (0.0f64, COSINE_EPS, COSINE_EPS);
            for (&a, &b) in x.iter().zip(y) {
                let (a, b) = (f64::from(a), f64::from(b));
                xy += a * b;
                xx += a * a;
                yy += b * b;
            }
            let d = (xx * yy).sqrt();
            let cos = xy / d;
            total += c * (1.0 - cos);
            // ∂cos/∂x = (y − (x·y/(‖x‖²+ε))·x) / d
            for ((&a, &b), g) in x.iter().zip(y).zip(g.iter_mut()) {
                *g = (-c * (f64::from(b) - xy / xx * f64::from(a)) / d) as f32;
            }
        }
        Ok(total)
    }
}

/// `ε` of `F.normalize`.
const NORMALIZE_EPS: f64 = 1e-12;

/// Attention transfer (Zagoruyko & Komodakis, 2017), as the authors' code
/// `(at(s) − at(t)).pow(2).mean()` with `at(x) = F.normalize(x.pow(2).mean(1).flatten(1))`:
/// each sample's activation-based spatial attention map (the channel mean of squared
/// activations, L2-normalized over the `spatial` positions) is compared by squared L2
/// distance, divided by `spatial` and averaged over the batch (with per-sample weights:
/// `Σ s_i·‖u_i − v_i‖² / (spatial·Σ s_i)`).
///
/// Rows are `channels × spatial` (NCHW flattened); student and teacher may have
/// different channel counts but share `spatial = H·W`. Reads `teacher` and
/// `sample_weights`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionTransfer {
    /// The number of spatial positions `H·W` of both feature maps.
    pub spatial: usize,
}

impl AttentionTransfer {
    /// Attention transfer over maps with `spatial = H·W` positions.
    pub fn new(spatial: usize) -> Self {
        AttentionTransfer { spatial }
    }

    /// The loss of the batch; writes its gradient with respect to `student` into `grad`.
    ///
    /// # Errors
    /// `spatial` is 0 or does not divide a row, length mismatches, non-finite inputs, a
    /// missing teacher, bad weights.
    pub fn loss_and_grad(
        &self,
        student: &[f32],
        batch: usize,
        width: usize,
        targets: &Targets<'_>,
        grad: &mut [f32],
    ) -> Result<f64> {
        let hw = self.spatial;
        let (teacher, sw, denom) = common(student, batch, width, targets, grad)?;
        if hw == 0 || !width.is_multiple_of(hw) {
            return Err(Error::InvalidArgument(format!(
                "spatial size {hw} does not divide the row width {width}"
            )));
        }
        let t_width = teacher.len().checked_div(batch).unwrap_or(0);
        if batch > 0 && (t_width == 0 || !t_width.is_multiple_of(hw)) {
            return Err(Error::InvalidArgument(format!(
                "teacher rows of {t_width} values are not a whole number of {hw}-position maps"
            )));
        }
        check_len("teacher", teacher.len(), batch * t_width)?;
        let (mut u, mut v) = (vec![0.0f64; hw], vec![0.0f64; hw]);
        let mut total = 0.0;
        for i in 0..batch {
            let x = &student[i * width..(i + 1) * width];
            let y = &teacher[i * t_width..(i + 1) * t_width];
            let nu = attention(x, hw, &mut u);
            attention(y, hw, &mut v);
            let c = if denom > 0.0 {
                weight_of(sw, i) / (denom * hw as f64)
            } else {
                0.0
            };
            let mut row = 0.0;
            let mut ug = 0.0;
            for (uk, &vk) in u.iter_mut().zip(&v) {
                let d = *uk - vk;
                row += d * d;
                ug += *uk * 2.0 * c * d;
            }
            total += c * row;
            // g_a = (g_u − u·(u·g_u)) / ‖a‖ when ‖a‖ > ε (else F.normalize divides by ε)
            let (norm, project) = if nu > NORMALIZE_EPS {
                (nu, ug)
            } else {
                (NORMALIZE_EPS, 0.0)
            };
            let ga: Vec<f64> = u
                .iter()
                .zip(&v)
                .map(|(&uk, &vk)| (2.0 * c * (uk - vk) - uk * project) / norm)
                .collect();
            let channels = (width / hw) as f64;
            for (ch, g) in grad[i * width..(i + 1) * width]
                .chunks_exact_mut(hw)
                .enumerate()
            {
                let xs = &x[ch * hw..(ch + 1) * hw];
                for ((g, &a), &gk) in g.iter_mut().zip(xs).zip(&ga) {
                    *g = (gk * 2.0 * f64::from(a) / channels) as f32;
                }
            }
        }
        Ok(total)
    }
}

/// Writes the normalized attention map of `x` (`channels × hw`) into `out` and returns
/// the norm of the unnormalized map.
fn attention(x: &[f32], hw: usize, out: &mut [f64]) -> f64 {
    out.fill(0.0);
    let channels = (x.len() / hw) as f64;
    for ch in x.chunks_exact(hw) {
        for (o, &a) in out.iter_mut().zip(ch) {
            *o += f64::from(a) * f64::from(a);
        }
    }
    let mut norm = 0.0;
    for o in out.iter_mut() {
        *o /= channels;
        norm += *o * *o;
    }
    let norm = norm.sqrt();
    let scale = norm.max(NORMALIZE_EPS);
    for o in out.iter_mut() {
        *o /= scale;
    }
    norm
}

macro_rules! impl_distill_loss {
    ($($t:ty),*) => {$(
        impl DistillLoss for $t {
            fn loss_and_grad(
                &self,
                student: &[f32],
                batch: usize,
                width: usize,
                targets: &Targets<'_>,
                grad: &mut [f32],
            ) -> edgeml_core::Result<f64> {
                Ok(<$t>::loss_and_grad(self, student, batch, width, targets, grad)?)
            }
        }
    )*};
}
impl_distill_loss!(Mse, CosineEmbedding, AttentionTransfer);

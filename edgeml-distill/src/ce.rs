//! Cross-entropy with hard labels, exactly as PyTorch's `F.cross_entropy` defines it.

use edgeml_core::{DistillLoss, Targets};

use crate::error::{
    Error, Result, check_finite, check_len, check_shape, sample_weights, weight_of,
};

/// Options of the hard-label cross-entropy; `Default` equals PyTorch's
/// `F.cross_entropy` defaults (`weight=None`, `ignore_index=-100`,
/// `label_smoothing=0.0`, `reduction='mean'`).
#[derive(Debug, Clone, PartialEq)]
pub struct CrossEntropyConfig {
    /// Per-class weights `w_c` (PyTorch's `weight`), one per class; `None` weighs every
    /// class 1.
    pub class_weights: Option<Vec<f32>>,
    /// Samples whose label equals this value contribute neither to the loss nor to the
    /// normalizer (PyTorch's `ignore_index`).
    pub ignore_index: i64,
    /// `ε` in `[0, 1]`: the target is `(1 − ε)·onehot(y) + ε/C` (PyTorch's
    /// `label_smoothing`).
    pub label_smoothing: f32,
}

impl Default for CrossEntropyConfig {
    fn default() -> Self {
        CrossEntropyConfig {
            class_weights: None,
            ignore_index: -100,
            label_smoothing: 0.0,
        }
    }
}

/// The hard-label part shared by [`CrossEntropy`] and [`crate::Kd`]: per-row
/// coefficients after validating labels, weights and the configuration.
///
/// For a kept sample `i` with label `y`, per-sample weight `s_i` and
/// `a_i = s_i / D`, `D = Σ_{kept} s_i·w_{y_i}`:
/// `ℓ_i = a_i·[(1−ε)·w_y·(−log p_y) + (ε/C)·Σ_c w_c·(−log p_c)]` and
/// `∂ℓ_i/∂z_c = a_i·[((1−ε)·w_y + (ε/C)·W)·p_c − (1−ε)·w_y·[c = y] − (ε/C)·w_c]`
/// with `W = Σ_c w_c`. This is PyTorch's formula (`nll_loss` plus the smoothing term,
/// both divided by `D`) with `s_i` multiplying each sample's weight; a 0/1 mask
/// therefore acts exactly like `ignore_index`.
#[derive(Debug)]
pub(crate) struct HardPlan<'a> {
    /// `(label, a_i)` per row; `None` for ignored rows (or when every row is ignored).
    pub rows: Vec<Option<(usize, f64)>>,
    pub eps: f64,
    pub class_weights: Option<&'a [f32]>,
    /// `W = Σ_c w_c`.
    pub weight_sum: f64,
    pub classes: usize,
}

impl<'a> HardPlan<'a> {
    pub(crate) fn new(
        cfg: &'a CrossEntropyConfig,
        labels: &[i64],
        sw: Option<&[f32]>,
        batch: usize,
        classes: usize,
    ) -> Result<Self> {
        let eps = cfg.label_smoothing;
        if !(0.0..=1.0).contains(&eps) {
            return Err(Error::InvalidArgument(format!(
                "label_smoothing {eps} is not in [0, 1]"
            )));
        }
        let cw = cfg.class_weights.as_deref();
        if let Some(w) = cw {
            check_len("class_weights", w.len(), classes)?;
            check_finite(w, "class_weights")?;
            if let Some(c) = w.iter().position(|&x| x < 0.0) {
                return Err(Error::InvalidArgument(format!(
                    "class weight {} of class {c} is negative",
                    w[c]
                )));
            }
        }
        check_len("labels", labels.len(), batch)?;
        let mut rows = Vec::with_capacity(batch);
        let mut denom = 0.0f64;
        for (i, &y) in labels.iter().enumerate() {
            if y == cfg.ignore_index {
                rows.push(None);
                continue;
            }
            let c =
                usize::try_from(y)
                    .ok()
                    .filter(|&c| c < classes)
                    .ok_or(Error::LabelOutOfRange {
                        sample: i,
                        label: y,
                        classes,
                    })?;
            let s = weight_of(sw, i);
            denom += s * cw.map_or(1.0, |w| f64::from(w[c]));
            rows.push(Some((c, s)));
        }
        for r in rows.iter_mut() {
            // every kept sample has weight 0: PyTorch returns NaN (0/0); we return 0
            *r = r.filter(|_| denom > 0.0).map(|(c, s)| (c, s / denom));
        }
        let weight_sum = cw.map_or(classes as f64, |w| w.iter().map(|&x| f64::from(x)).sum());
        Ok(HardPlan {
            rows,
            eps: f64::from(eps),
            class_weights: cw,
            weight_sum,
            classes,
        })
    }

    /// `w_c`.
    #[inline]
    pub(crate) fn w(&self, c: usize) -> f64 {
        self.class_weights.map_or(1.0, |w| f64::from(w[c]))
    }

    /// The row's loss from `log p_y` and `Σ_c w_c·log p_c`.
    pub(crate) fn row_loss(&self, y: usize, a: f64, lp_y: f64, sum_w_lp: f64) -> f64 {
        let c = self.classes as f64;
        -a * ((1.0 - self.eps) * self.w(y) * lp_y + self.eps / c * sum_w_lp)
    }

    /// The coefficient of `p_c` in the row's gradient.
    pub(crate) fn p_coef(&self, y: usize, a: f64) -> f64 {
        a * ((1.0 - self.eps) * self.w(y) + self.eps / self.classes as f64 * self.weight_sum)
    }
}

/// Hard-label cross-entropy, `F.cross_entropy(z, y, weight, ignore_index,
/// label_smoothing, reduction='mean')`, with optional per-sample weights (or a 0/1
/// mask) from [`Targets::sample_weights`] that multiply each sample's weight in the
/// numerator and in the normalizer.
///
/// Reads `labels` and `sample_weights` from [`Targets`]. When every sample is ignored
/// (PyTorch returns NaN) the loss is 0 and the gradient 0. Computed in f64.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CrossEntropy {
    /// The options.
    pub config: CrossEntropyConfig,
}

impl CrossEntropy {
    /// A cross-entropy with the given options.
    pub fn new(config: CrossEntropyConfig) -> Self {
        CrossEntropy { config }
    }

    /// The loss of the batch; writes its gradient with respect to `logits` into `grad`.
    ///
    /// # Errors
    /// Length mismatches, non-finite logits, a missing or out-of-range label, a negative
    /// or non-finite weight, `label_smoothing` outside `[0, 1]`.
    pub fn loss_and_grad(
        &self,
        logits: &[f32],
        batch: usize,
        classes: usize,
        targets: &Targets<'_>,
        grad: &mut [f32],
    ) -> Result<f64> {
        check_shape(logits, batch, classes, grad)?;
        check_finite(logits, "student logits")?;
        let labels = targets.labels.ok_or(Error::Missing("labels"))?;
        let sw = sample_weights(targets.sample_weights, batch)?;
        let plan = HardPlan::new(&self.config, labels, sw, batch, classes)?;
        let mut lp = vec![0.0f64; classes];
        let mut total = 0.0;
        for ((z, g), row) in logits
            .chunks_exact(classes)
            .zip(grad.chunks_exact_mut(classes))
            .zip(&plan.rows)
        {
            let Some((y, a)) = *row else {
                g.fill(0.0);
                continue;
            };
            log_softmax_f64(z, 1.0, &mut lp);
            let sum_w_lp: f64 = lp.iter().enumerate().map(|(c, &l)| plan.w(c) * l).sum();
            total += plan.row_loss(y, a, lp[y], sum_w_lp);
            let pc = plan.p_coef(y, a);
            let s = a * plan.eps / classes as f64;
            for (c, (gc, &l)) in g.iter_mut().zip(&lp).enumerate() {
                *gc = (pc * l.exp() - s * plan.w(c)) as f32;
            }
            g[y] -= (a * (1.0 - plan.eps) * plan.w(y)) as f32;
        }
        Ok(total)
    }
}

impl DistillLoss for CrossEntropy {
    fn loss_and_grad(
        &self,
        student: &[f32],
        batch: usize,
        width: usize,
        targets: &Targets<'_>,
        grad: &mut [f32],
    ) -> edgeml_core::Result<f64> {
        Ok(CrossEntropy::loss_and_grad(
            self, student, batch, width, targets, grad,
        )?)
    }
}

/// `out = log_softmax(z / t)` in f64 (entries of `z` may be `-inf`, not all of them).
pub(crate) fn log_softmax_f64(z: &[f32], t: f64, out: &mut [f64]) {
    let m = z.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let m = f64::from(m);
    let mut s = 0.0;
    for (o, &x) in out.iter_mut().zip(z) {
        *o = (f64::from(x) - m) / t;
        s += o.exp();
    }
    let lse = s.ln();
    for o in out.iter_mut() {
        *o -= lse;
    }
}

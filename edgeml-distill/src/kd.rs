//! Hinton's knowledge-distillation loss, fused into one fast kernel.

use edgeml_core::{DistillLoss, Targets};
use rayon::prelude::*;

use crate::ce::{CrossEntropyConfig, HardPlan};
use crate::error::{
    Error, Result, check_finite, check_shape, check_teacher, sample_weights, weight_of,
};
use crate::math::{IsaBody, exp_neg, fused, on_best_isa};
use crate::teacher::{TeacherOutput, teacher_logits};

/// Options of [`Kd`]. `Default` follows PyTorch's knowledge-distillation tutorial
/// (`T = 2`, `soft_target_loss_weight = 0.25`, `ce_loss_weight = 0.75`, the soft term
/// multiplied by `T²`) and `F.cross_entropy`'s defaults for the hard term.
#[derive(Debug, Clone, PartialEq)]
pub struct KdConfig {
    /// Temperature `T > 0` of both softmaxes of the soft term (the hard term uses 1).
    pub temperature: f32,
    /// `w_hard ≥ 0`, the weight of the cross-entropy with the hard labels. With 0, no
    /// labels are needed.
    pub hard_weight: f32,
    /// `w_soft ≥ 0`, the weight of the KL term.
    pub soft_weight: f32,
    /// Multiply the KL term by `T²` (Hinton et al.), which keeps its gradient's scale
    /// independent of `T`.
    pub scale_by_t_squared: bool,
    /// What the teacher's rows hold.
    pub teacher: TeacherOutput,
    /// The hard term's options (class weights, ignore index, label smoothing).
    pub hard: CrossEntropyConfig,
}

impl Default for KdConfig {
    fn default() -> Self {
        KdConfig {
            temperature: 2.0,
            hard_weight: 0.75,
            soft_weight: 0.25,
            scale_by_t_squared: true,
            teacher: TeacherOutput::Logits,
            hard: CrossEntropyConfig::default(),
        }
    }
}

/// The value of a [`Kd`] loss and its two parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KdValue {
    /// `w_hard·hard + w_soft·T²·soft` (`T²` only with `scale_by_t_squared`).
    pub total: f64,
    /// The hard-label cross-entropy (mean reduction, as [`crate::CrossEntropy`]).
    pub hard: f64,
    /// The batch-mean `KL(softmax(z_t/T) ‖ softmax(z_s/T))`, unscaled.
    pub soft: f64,
}

/// Hinton's distillation loss
/// `L = w_hard·CE(z_s, y) + w_soft·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))`.
///
/// The KL term is `F.kl_div(log_softmax(z_s/T), softmax(z_t/T), reduction='batchmean')`;
/// with per-sample weights `s_i` it is `Σ s_i·KL_i / Σ s_i` (the batch mean when all
/// are 1; masked samples drop out). The hard term is [`crate::CrossEntropy`], where the
/// same weights act as described there; `ignore_index` applies to the hard term only
/// (use a 0 weight to drop a sample from both terms). Reads `teacher` (required), `labels` (required
/// when `hard_weight > 0`) and `sample_weights` from [`Targets`].
///
/// Computed in log space: one pass finds the row maxima, one pass exponentiates
/// `z − max` (a vectorized `exp`, f32) and accumulates the row sums in f64, one pass
/// writes the gradient. Each row runs compiled for the CPU's best ISA (AVX-512F,
/// AVX2+FMA or NEON, chosen at run time by `edgeml_onnx::kernels::on_best_isa`; the
/// build target's default without the `onnx` feature), with the same arithmetic and
/// so the same result on every ISA. Large batches run rows in parallel on rayon's pool;
/// results do not depend on the number of threads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Kd {
    /// The options.
    pub config: KdConfig,
}

/// Rows × classes below which the kernel stays on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;

struct RowCtx<'a> {
    plan: Option<HardPlan<'a>>,
    inv_t: f32,
    wh: f64,
    /// `w_soft·(T² or 1)/T`, times `s_i / Σ s` per row.
    soft_coef: f64,
    soft_denom: f64,
    sw: Option<&'a [f32]>,
    ones: Vec<f32>,
}

impl Kd {
    /// A KD loss with the given options.
    pub fn new(config: KdConfig) -> Self {
        Kd { config }
    }

    /// The loss of the batch and its parts; writes the gradient of `total` with respect
    /// to the student's logits into `grad`.
    ///
    /// # Errors
    /// Length or class-count mismatches, non-finite logits, a teacher that is not what
    /// [`KdConfig::teacher`] says, missing or out-of-range labels, a temperature that is
    /// not finite and positive, negative or non-finite weights.
    pub fn loss_and_grad(
        &self,
        student: &[f32],
        batch: usize,
        classes: usize,
        targets: &Targets<'_>,
        grad: &mut [f32],
    ) -> Result<KdValue> {
        let cfg = &self.config;
        check_shape(student, batch, classes, grad)?;
        let t = cfg.temperature;
        if !(t.is_finite() && t > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "temperature {t} is not finite and positive"
            )));
        }
        for (name, w) in [
            ("hard_weight", cfg.hard_weight),
            ("soft_weight", cfg.soft_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(Error::InvalidArgument(format!(
                    "{name} {w} is not finite and non-negative"
                )));
            }
        }
        check_finite(student, "student logits")?;
        let teacher = targets.teacher.ok_or(Error::Missing("teacher"))?;
        check_teacher(teacher, batch, classes)?;
        let zt = teacher_logits(cfg.teacher, teacher, classes)?;
        let sw = sample_weights(targets.sample_weights, batch)?;
        let plan = if cfg.hard_weight > 0.0 {
            let labels = targets.labels.ok_or(Error::Missing("labels"))?;
            Some(HardPlan::new(&cfg.hard, labels, sw, batch, classes)?)
        } else {
            None
        };
        let soft_denom: f64 = sw.map_or(batch as f64, |w| w.iter().map(|&x| f64::from(x)).sum());
        let t64 = f64::from(t);
        let tscale = if cfg.scale_by_t_squared {
            t64 * t64
        } else {
            1.0
        };
        let smooth = plan.as_ref().is_some_and(|p| p.eps > 0.0);
        let ctx = RowCtx {
            inv_t: 1.0 / t,
            wh: f64::from(cfg.hard_weight),
            soft_coef: f64::from(cfg.soft_weight) * tscale / t64,
            soft_denom,
            sw,
            ones: if smooth && cfg.hard.class_weights.is_none() {
                vec![1.0; classes]
            } else {
                Vec::new()
            },
            plan,
        };
        let e1 = ctx.plan.is_some() && t != 1.0;
        let fused = fused();
        // each row runs compiled for the CPU's best ISA (AVX-512F, AVX2+FMA, NEON),
        // chosen at run time; the arithmetic, and so the result, is the same on all
        let row = |i: usize, zs: &[f32], zt: &[f32], g: &mut [f32], buf: &mut [f32]| {
            on_best_isa(Row {
                ctx: &ctx,
                e1,
                smooth,
                fused,
                i,
                zs,
                zt,
                g,
                buf,
            })
        };
        let mut parts = vec![(0.0f64, 0.0f64); batch];
        let par = batch * classes >= PARALLEL_MIN && batch > 1;
        if par {
            student
                .par_chunks_exact(classes)
                .zip(zt.par_chunks_exact(classes))
                .zip(grad.par_chunks_exact_mut(classes))
                .zip(parts.par_iter_mut())
                .enumerate()
                .for_each_init(
                    || vec![0.0f32; 2 * classes],
                    |buf, (i, (((zs, zt), g), out))| *out = row(i, zs, zt, g, buf),
                );
        } else {
            let mut buf = vec![0.0f32; 2 * classes];
            let rows = student
                .chunks_exact(classes)
                .zip(zt.chunks_exact(classes))
                .zip(grad.chunks_exact_mut(classes))
                .zip(parts.iter_mut());
            for (i, (((zs, zt), g), out)) in rows.enumerate() {
                *out = row(i, zs, zt, g, &mut buf);
            }
        }
        // summed in row order: the same result on any number of threads
        let (hard, soft) = parts
            .iter()
            .fold((0.0, 0.0), |(h, s), &(a, b)| (h + a, s + b));
        let soft = if soft_denom > 0.0 {
            soft / soft_denom
        } else {
            0.0
        };
        Ok(KdValue {
            total: ctx.wh * hard + f64::from(cfg.soft_weight) * tscale * soft,
            hard,
            soft,
        })
    }
}

impl DistillLoss for Kd {
    fn loss_and_grad(
        &self,
        student: &[f32],
        batch: usize,
        width: usize,
        targets: &Targets<'_>,
        grad: &mut [f32],
    ) -> edgeml_core::Result<f64> {
        Ok(Kd::loss_and_grad(self, student, batch, width, targets, grad)?.total)
    }
}

/// The arguments of one [`kd_row`] call, for [`on_best_isa`].
struct Row<'a, 'c> {
    ctx: &'a RowCtx<'c>,
    e1: bool,
    smooth: bool,
    fused: bool,
    i: usize,
    zs: &'a [f32],
    zt: &'a [f32],
    g: &'a mut [f32],
    buf: &'a mut [f32],
}

impl IsaBody for Row<'_, '_> {
    type Output = (f64, f64);

    #[inline(always)]
    fn run(self) -> (f64, f64) {
        let Row {
            ctx,
            e1,
            smooth,
            fused,
            i,
            zs,
            zt,
            g,
            buf,
        } = self;
        let args = (ctx, i, zs, zt, g, buf);
        match (e1, smooth, fused) {
            (false, false, true) => kd_row::<false, false, true>(args),
            (true, false, true) => kd_row::<true, false, true>(args),
            (false, true, true) => kd_row::<false, true, true>(args),
            (true, true, true) => kd_row::<true, true, true>(args),
            (false, false, false) => kd_row::<false, false, false>(args),
            (true, false, false) => kd_row::<true, false, false>(args),
            (false, true, false) => kd_row::<false, true, false>(args),
            (true, true, false) => kd_row::<true, true, false>(args),
        }
    }
}

/// [`kd_row`]'s arguments: the context, the row index, its student and teacher logits,
/// its gradient and `2·classes` floats of scratch.
type RowArgs<'a, 'c> = (
    &'a RowCtx<'c>,
    usize,
    &'a [f32],
    &'a [f32],
    &'a mut [f32],
    &'a mut [f32],
);

/// One row: returns (hard-term loss of the row, `s_i·KL_i`) and writes the row's
/// gradient. `buf` holds `2·classes` floats of scratch.
///
/// Each step is a separate simple loop over the row (which stays in L1) so that the
/// compiler vectorizes it: the exponentials are maps, the sums blocked reductions.
/// Inlined, like its helpers, into the ISA-specific function of `on_best_isa`.
#[inline(always)]
fn kd_row<const E1: bool, const SMOOTH: bool, const FUSED: bool>(
    (ctx, i, zs, zt, g, buf): RowArgs<'_, '_>,
) -> (f64, f64) {
    let c = zs.len();
    let (q, p) = buf.split_at_mut(c);
    let ms = row_max(zs);
    let mt = row_max(zt);
    let inv_t = ctx.inv_t;
    // unnormalized softmaxes: q of z_s/T, p of z_t/T, and (E1) of z_s in g
    exp_map::<FUSED>(zs, ms, inv_t, q);
    exp_map::<FUSED>(zt, mt, inv_t, p);
    let s2 = sum_f64(q);
    let s3 = sum_f64(p);
    // T = 2 (the default): exp(z − m) = exp((z − m)/2)², one exp saved
    let square = E1 && inv_t == 0.5;
    let s1 = if square {
        reduce3(q, q, q, |x, _, _| x * x)
    } else if E1 {
        exp_map::<FUSED>(zs, ms, 1.0, g);
        sum_f64(g)
    } else {
        s2
    };
    let (ln1, ln2, ln3) = (s1.ln(), s2.ln(), s3.ln());
    let si = weight_of(ctx.sw, i);
    // KL = Σ p·(log p − log q) = Σ e_p·(a − b)/S_p + ln S_q − ln S_p
    let kl = cross(p, zt, mt, zs, ms, inv_t) / s3 + ln2 - ln3;
    let cs = if ctx.soft_denom > 0.0 {
        ctx.soft_coef * si / ctx.soft_denom
    } else {
        0.0
    };
    // hard term of this row, if any
    let hard = ctx
        .plan
        .as_ref()
        .and_then(|plan| plan.rows[i].map(|(y, a)| (plan, y, a)));
    let (hard_loss, ch) = match hard {
        Some((plan, y, a)) => {
            let lp_y = f64::from(zs[y] - ms) - ln1;
            let sum_w_lp = match plan.class_weights {
                _ if !SMOOTH => 0.0,
                Some(w) => weighted_sum(zs, ms, w) - plan.weight_sum * ln1,
                None => weighted_sum(zs, ms, &ctx.ones) - plan.weight_sum * ln1,
            };
            (
                plan.row_loss(y, a, lp_y, sum_w_lp),
                ctx.wh * plan.p_coef(y, a),
            )
        }
        None => (0.0, 0.0),
    };
    let (c1, c2, c3) = ((ch / s1) as f32, (cs / s2) as f32, (cs / s3) as f32);
    if square {
        for ((g, &q), &p) in g.iter_mut().zip(q.iter()).zip(p.iter()) {
            *g = (c1 * q + c2) * q - c3 * p;
        }
    } else if E1 {
        for ((g, &q), &p) in g.iter_mut().zip(q.iter()).zip(p.iter()) {
            *g = c1 * *g + c2 * q - c3 * p;
        }
    } else {
        let c12 = c1 + c2;
        for ((g, &q), &p) in g.iter_mut().zip(q.iter()).zip(p.iter()) {
            *g = c12 * q - c3 * p;
        }
    }
    if let Some((plan, y, a)) = hard {
        if SMOOTH {
            let sm = (ctx.wh * a * plan.eps / c as f64) as f32;
            match plan.class_weights {
                Some(w) => g.iter_mut().zip(w).for_each(|(g, &w)| *g -= sm * w),
                None => g.iter_mut().for_each(|g| *g -= sm),
            }
        }
        g[y] -= (ctx.wh * a * (1.0 - plan.eps) * plan.w(y)) as f32;
    }
    (hard_loss, si * kl)
}

/// `out_j = exp((z_j − m)·scale)` (`m` the row maximum, so the argument is ≤ 0).
#[inline(always)]
fn exp_map<const FUSED: bool>(z: &[f32], m: f32, scale: f32, out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(z) {
        *o = exp_neg::<FUSED>((x - m) * scale);
    }
}

/// Elements per block of the reductions: summed in [`LANES`] f32 lanes, the block's
/// lanes then added into [`WIDE`] f64 lanes.
const BLOCK: usize = 64;
/// f32 lanes of the reductions (dividing [`BLOCK`]): enough independent accumulators
/// to hide the add latency on any vector width.
const LANES: usize = 32;
/// f64 lanes the blocks are accumulated in (half of [`LANES`]), summed by a fixed tree
/// once per reduction, so a block costs no horizontal sum.
const WIDE: usize = LANES / 2;

/// A blocked reduction of `f(a_j, b_j, c_j)` over the common length: per block of 64,
/// mapped and summed in 32 f32 lanes ([`block_sum`]), the blocks accumulated in 16 f64
/// lanes, which are summed at the end ([`wide_sum`]).
#[inline(always)]
fn reduce3(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) -> f64 {
    let n = a.len().min(b.len()).min(c.len());
    let (a, b, c) = (&a[..n], &b[..n], &c[..n]);
    let (ba, ra) = a.as_chunks::<BLOCK>();
    let (bb, rb) = b.as_chunks::<BLOCK>();
    let (bc, rc) = c.as_chunks::<BLOCK>();
    let mut total = [0.0f64; WIDE];
    let mut add = |h: [f32; WIDE]| total = std::array::from_fn(|k| total[k] + f64::from(h[k]));
    for ((xa, xb), xc) in ba.iter().zip(bb).zip(bc) {
        add(block_sum::<false>(xa, xb, xc, BLOCK, &f));
    }
    // the tail as one more block, zero-padded and masked (not element by element)
    if !ra.is_empty() {
        let pad = |r: &[f32]| {
            let mut x = [0.0f32; BLOCK];
            x[..r.len()].copy_from_slice(r);
            x
        };
        let (xa, xb, xc) = (pad(ra), pad(rb), pad(rc));
        add(block_sum::<true>(&xa, &xb, &xc, ra.len(), &f));
    }
    wide_sum(&total)
}

/// `f(a_j, b_j, c_j)` over a block, summed into [`WIDE`] f32 lanes: a map into a small
/// buffer (which the compiler vectorizes: fixed-size arrays, no bounds checks) summed
/// in [`LANES`] lanes (two adds per lane), whose halves are then added.
#[inline(always)]
fn block_sum<const MASK: bool>(
    a: &[f32; BLOCK],
    b: &[f32; BLOCK],
    c: &[f32; BLOCK],
    len: usize,
    f: &impl Fn(f32, f32, f32) -> f32,
) -> [f32; WIDE] {
    let mut tmp = [0.0f32; BLOCK];
    for k in 0..BLOCK {
        tmp[k] = f(a[k], b[k], c[k]);
    }
    if MASK {
        tmp[len..].fill(0.0);
    }
    let (lanes, _) = tmp.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for l in lanes {
        acc = std::array::from_fn(|k| acc[k] + l[k]);
    }
    std::array::from_fn(|k| acc[k] + acc[k + WIDE])
}

/// The sum of the f64 lanes, by a fixed tree.
#[inline(always)]
fn wide_sum(x: &[f64; WIDE]) -> f64 {
    let h: [f64; 8] = std::array::from_fn(|k| x[k] + x[k + 8]);
    let h: [f64; 4] = std::array::from_fn(|k| h[k] + h[k + 4]);
    (h[0] + h[2]) + (h[1] + h[3])
}

#[inline(always)]
fn sum_f64(xs: &[f32]) -> f64 {
    reduce3(xs, xs, xs, |x, _, _| x)
}

/// `Σ_j e_j·(a_j − b_j)` with `a = (z_t − m_t)/T`, `b = (z_s − m_s)/T`, where a zero
/// `e_j` (a teacher probability of 0, `a_j = -inf`) contributes 0 (`0·log 0 = 0`).
#[inline(always)]
fn cross(e: &[f32], zt: &[f32], mt: f32, zs: &[f32], ms: f32, inv_t: f32) -> f64 {
    reduce3(e, zt, zs, |e, zt, zs| {
        let x = e * ((zt - mt) * inv_t - (zs - ms) * inv_t);
        if e > 0.0 { x } else { 0.0 }
    })
}

/// `Σ_j w_j·(z_j − m)`.
#[inline(always)]
fn weighted_sum(z: &[f32], m: f32, w: &[f32]) -> f64 {
    reduce3(z, w, z, |z, w, _| w * (z - m))
}

/// The maximum of a row (`-inf` entries allowed).
#[inline(always)]
fn row_max(z: &[f32]) -> f32 {
    let (chunks, rest) = z.as_chunks::<LANES>();
    let mut m = [f32::NEG_INFINITY; LANES];
    for c in chunks {
        m = std::array::from_fn(|k| if c[k] > m[k] { c[k] } else { m[k] });
    }
    let m = m.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    rest.iter().fold(m, |a, &b| a.max(b))
}

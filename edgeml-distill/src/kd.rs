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
/// Computed in log space, in five passes over each row (which stays in L1), each a
/// simple loop the compiler vectorizes: one finds the student's and the teacher's
/// maxima; two exponentiate `(z − max)/T`, the student's and the teacher's (a
/// vectorized `exp`, f32; one per loop, so that its constants stay in registers); one
/// accumulates every row sum at once (both softmax sums, the hard term's softmax sum —
/// at `T = 2` from the squares of the student's exponentials,
/// `exp(z − m) = exp((z − m)/2)²`; at other `T ≠ 1` from a third `exp` pass —, the KL
/// cross term and, with label smoothing, the class-weighted logit sum; f32 lanes per
/// block, f64 lanes across blocks); one writes the gradient. Each row runs compiled
/// for the CPU's best ISA (AVX-512F, AVX2+FMA or NEON, chosen at run time by
/// `edgeml_onnx::kernels::on_best_isa`; the build target's default without the `onnx`
/// feature), with the same arithmetic and so the same result on every ISA. Large
/// batches run rows in parallel on rayon's pool; results do not depend on the number
/// of threads.
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

/// How [`kd_row`] gets the hard term's softmax sum (of `z_s`, at temperature 1): it
/// needs none (no hard term, or `T = 1`: the soft term's student sum is that sum) …
const ONE_NONE: u8 = 0;
/// … from the squares of the student's exponentials (`T = 2`:
/// `exp(z − m) = exp((z − m)/2)²`) …
const ONE_SQUARE: u8 = 1;
/// … or from a third exponential `exp(z_s − m_s)`, written to the gradient row.
const ONE_EXP: u8 = 2;

/// One row: returns (hard-term loss of the row, `s_i·KL_i`) and writes the row's
/// gradient. `buf` holds `2·classes` floats of scratch.
///
/// Five passes over the row (which stays in L1), each a simple loop over the row or
/// over fixed-width chunks, which the compiler vectorizes: both maxima
/// ([`row_max2`]); the student's and the teacher's exponentials into `buf`
/// ([`exp_map`], one `exp` per loop: fused with more work, its constants no longer fit
/// in AVX2's 16 registers, which was slower); every row sum at once ([`row_sums`]);
/// the gradient ([`grad_pass`]). With a hard term at `T ≠ 1, 2`, one more `exp` pass
/// writes `exp(z_s − m_s)` into `g`. Inlined, like its helpers, into the ISA-specific
/// function of `on_best_isa`.
#[inline(always)]
fn kd_row<const E1: bool, const SMOOTH: bool, const FUSED: bool>(
    args: RowArgs<'_, '_>,
) -> (f64, f64) {
    // T = 2 (the default): exp(z − m) = exp((z − m)/2)², one exp saved
    if !E1 {
        kd_row_with::<ONE_NONE, SMOOTH, FUSED>(args)
    } else if args.0.inv_t == 0.5 {
        kd_row_with::<ONE_SQUARE, SMOOTH, FUSED>(args)
    } else {
        kd_row_with::<ONE_EXP, SMOOTH, FUSED>(args)
    }
}

/// [`kd_row`] for one way of getting the hard term's softmax sum (`ONE_*`).
#[inline(always)]
fn kd_row_with<const ONE: u8, const SMOOTH: bool, const FUSED: bool>(
    (ctx, i, zs, zt, g, buf): RowArgs<'_, '_>,
) -> (f64, f64) {
    let c = zs.len();
    let (q, p) = buf.split_at_mut(c);
    let (ms, mt) = row_max2(zs, zt);
    // the hard term's class weights (all 1 without class weights); read with SMOOTH only
    let w: &[f32] = match &ctx.plan {
        Some(plan) if SMOOTH => plan.class_weights.unwrap_or(&ctx.ones),
        _ => zs,
    };
    // unnormalized softmaxes: q of z_s/T, p of z_t/T, and (ONE_EXP) of z_s in g; one
    // exponential per loop, so that its constants stay in registers
    let inv_t = ctx.inv_t;
    exp_map::<FUSED>(zs, ms, inv_t, q);
    exp_map::<FUSED>(zt, mt, inv_t, p);
    if ONE == ONE_EXP {
        exp_map::<FUSED>(zs, ms, 1.0, g);
    }
    let sums = row_sums::<ONE, SMOOTH, FUSED>((q, p, g), (zs, zt, w), (ms, mt, inv_t));
    let (s2, s3) = (sums.q, sums.p);
    let s1 = if ONE == ONE_NONE { s2 } else { sums.one };
    let (ln1, ln2, ln3) = (s1.ln(), s2.ln(), s3.ln());
    let si = weight_of(ctx.sw, i);
    // KL = Σ p·(log p − log q) = Σ e_p·(a − b)/S_p + ln S_q − ln S_p
    let kl = sums.cross / s3 + ln2 - ln3;
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
    let (hard_loss, ch, sm) = match hard {
        Some((plan, y, a)) => {
            let lp_y = f64::from(zs[y] - ms) - ln1;
            let sum_w_lp = if SMOOTH {
                sums.weighted - plan.weight_sum * ln1
            } else {
                0.0
            };
            (
                plan.row_loss(y, a, lp_y, sum_w_lp),
                ctx.wh * plan.p_coef(y, a),
                // label smoothing's share of the gradient, times the class weight
                (ctx.wh * a * plan.eps / c as f64) as f32,
            )
        }
        None => (0.0, 0.0, 0.0),
    };
    let coef = ((ch / s1) as f32, (cs / s2) as f32, (cs / s3) as f32, sm);
    grad_pass::<ONE, SMOOTH, FUSED>(g, q, p, w, coef);
    if let Some((plan, y, a)) = hard {
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

/// f32 lanes the sums of [`row_sums`] are accumulated in: each lane sums
/// `BLOCK / WIDE` elements of a block, then is added into an f64 lane of its own.
const WIDE: usize = 16;
/// Elements per block of [`row_sums`] (a multiple of [`WIDE`]).
const BLOCK: usize = 128;
/// f32 lanes of the maxima: enough independent accumulators for any vector width.
const LANES: usize = 32;

/// What [`row_sums`] returns.
struct RowSums {
    /// `S_q = Σ q`.
    q: f64,
    /// `S_p = Σ p`.
    p: f64,
    /// The hard term's `Σ exp(z_s − m_s)`: `Σ q²` with `ONE_SQUARE`, `Σ e` with `ONE_EXP`.
    one: f64,
    /// `Σ p·(a − b)` with `a = (z_t − m_t)/T`, `b = (z_s − m_s)/T`, where a zero `p`
    /// (a teacher probability of 0, `a = -inf`) contributes 0 (`0·log 0 = 0`).
    cross: f64,
    /// `Σ w·(z_s − m_s)` (with `SMOOTH`).
    weighted: f64,
}

/// The number of sums of [`RowSums`] (its fields, in order).
const SUMS: usize = 5;

/// One pass that accumulates all of [`RowSums`] from the exponentials `q`, `p`, `e`
/// and the logits: per chunk of [`WIDE`] elements into f32 lanes, per block of
/// [`BLOCK`] from those into f64 lanes, which are summed by a fixed tree at the end.
/// `e` is read with `ONE_EXP` only, `w` (class weights) with `SMOOTH` only; all slices
/// have the row's length.
#[inline(always)]
fn row_sums<const ONE: u8, const SMOOTH: bool, const FUSED: bool>(
    (q, p, e): (&[f32], &[f32], &[f32]),
    (zs, zt, w): (&[f32], &[f32], &[f32]),
    m: (f32, f32, f32),
) -> RowSums {
    let n = q.len();
    let (q, p, e, zs, zt, w) = (&q[..n], &p[..n], &e[..n], &zs[..n], &zt[..n], &w[..n]);
    let mut total = [[0.0f64; WIDE]; SUMS];
    let mut acc = [[0.0f32; WIDE]; SUMS];
    let (cq, rq) = q.as_chunks::<WIDE>();
    let (cp, rp) = p.as_chunks::<WIDE>();
    let (ce, re) = e.as_chunks::<WIDE>();
    let (czs, rzs) = zs.as_chunks::<WIDE>();
    let (czt, rzt) = zt.as_chunks::<WIDE>();
    let (cw, rw) = w.as_chunks::<WIDE>();
    let chunks = cq.iter().zip(cp).zip(ce).zip(czs).zip(czt).zip(cw);
    for (j, (((((q, p), e), zs), zt), w)) in chunks.enumerate() {
        sum_chunk::<ONE, SMOOTH, FUSED>((q, p, e), (zs, zt, w), m, &mut acc);
        if j % (BLOCK / WIDE) == BLOCK / WIDE - 1 {
            flush::<ONE, SMOOTH>(&mut total, &mut acc);
        }
    }
    // the tail as one more chunk, padded so that the padding adds 0 to every sum
    // (exponentials 0, logits at their maxima, weights 0)
    if !rq.is_empty() {
        let pad = |r: &[f32], v: f32| {
            let mut x = [v; WIDE];
            x[..r.len()].copy_from_slice(r);
            x
        };
        let (xq, xp, xe) = (pad(rq, 0.0), pad(rp, 0.0), pad(re, 0.0));
        let (xs, xt, xw) = (pad(rzs, m.0), pad(rzt, m.1), pad(rw, 0.0));
        sum_chunk::<ONE, SMOOTH, FUSED>((&xq, &xp, &xe), (&xs, &xt, &xw), m, &mut acc);
    }
    flush::<ONE, SMOOTH>(&mut total, &mut acc);
    RowSums {
        q: wide_sum(&total[0]),
        p: wide_sum(&total[1]),
        one: wide_sum(&total[2]),
        cross: wide_sum(&total[3]),
        weighted: wide_sum(&total[4]),
    }
}

/// One chunk of [`row_sums`], added into the f32 lanes.
#[inline(always)]
fn sum_chunk<const ONE: u8, const SMOOTH: bool, const FUSED: bool>(
    (q, p, e): (&[f32; WIDE], &[f32; WIDE], &[f32; WIDE]),
    (zs, zt, w): (&[f32; WIDE], &[f32; WIDE], &[f32; WIDE]),
    (ms, mt, inv_t): (f32, f32, f32),
    acc: &mut [[f32; WIDE]; SUMS],
) {
    let fma = |a: f32, b: f32, c: f32| if FUSED { a.mul_add(b, c) } else { a * b + c };
    for k in 0..WIDE {
        acc[0][k] += q[k];
        acc[1][k] += p[k];
        if ONE == ONE_SQUARE {
            acc[2][k] = fma(q[k], q[k], acc[2][k]);
        } else if ONE == ONE_EXP {
            acc[2][k] += e[k];
        }
        let d = (zt[k] - mt) * inv_t - (zs[k] - ms) * inv_t;
        let d = if p[k] > 0.0 { d } else { 0.0 };
        acc[3][k] = fma(p[k], d, acc[3][k]);
        if SMOOTH {
            acc[4][k] = fma(w[k], zs[k] - ms, acc[4][k]);
        }
    }
}

/// Adds the f32 lanes of the sums in use into their f64 lanes and clears them.
#[inline(always)]
fn flush<const ONE: u8, const SMOOTH: bool>(
    total: &mut [[f64; WIDE]; SUMS],
    acc: &mut [[f32; WIDE]; SUMS],
) {
    for (s, (t, a)) in total.iter_mut().zip(acc.iter_mut()).enumerate() {
        if (s != 2 || ONE != ONE_NONE) && (s != 4 || SMOOTH) {
            for k in 0..WIDE {
                t[k] += f64::from(a[k]);
            }
            *a = [0.0; WIDE];
        }
    }
}

/// The sum of the f64 lanes, by a fixed tree.
#[inline(always)]
fn wide_sum(x: &[f64; WIDE]) -> f64 {
    let h: [f64; 8] = std::array::from_fn(|k| x[k] + x[k + 8]);
    let h: [f64; 4] = std::array::from_fn(|k| h[k] + h[k + 4]);
    (h[0] + h[2]) + (h[1] + h[3])
}

/// The gradient pass: `g = c1·e + c2·q − c3·p` (with `e = q²` for `ONE_SQUARE`, `e`
/// read from `g` for `ONE_EXP`, `e = q` for `ONE_NONE`), minus `sm·w` with `SMOOTH`.
#[inline(always)]
fn grad_pass<const ONE: u8, const SMOOTH: bool, const FUSED: bool>(
    g: &mut [f32],
    q: &[f32],
    p: &[f32],
    w: &[f32],
    (c1, c2, c3, sm): (f32, f32, f32, f32),
) {
    let fma = |a: f32, b: f32, c: f32| if FUSED { a.mul_add(b, c) } else { a * b + c };
    let c12 = c1 + c2;
    for (((g, &q), &p), &w) in g.iter_mut().zip(q).zip(p).zip(w) {
        let x = match ONE {
            ONE_SQUARE => fma(fma(c1, q, c2), q, -c3 * p),
            ONE_EXP => fma(c1, *g, fma(c2, q, -c3 * p)),
            _ => fma(c12, q, -c3 * p),
        };
        *g = if SMOOTH { fma(-sm, w, x) } else { x };
    }
}

/// Both rows' maxima in one pass (`-inf` entries allowed).
#[inline(always)]
fn row_max2(a: &[f32], b: &[f32]) -> (f32, f32) {
    let (ca, ra) = a.as_chunks::<LANES>();
    let (cb, rb) = b.as_chunks::<LANES>();
    let mut ma = [f32::NEG_INFINITY; LANES];
    let mut mb = [f32::NEG_INFINITY; LANES];
    let max = |x: f32, m: f32| if x > m { x } else { m };
    for (x, y) in ca.iter().zip(cb) {
        for k in 0..LANES {
            ma[k] = max(x[k], ma[k]);
            mb[k] = max(y[k], mb[k]);
        }
    }
    let fold = |m: [f32; LANES], r: &[f32]| {
        let m = m.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        r.iter().fold(m, |a, &b| a.max(b))
    };
    (fold(ma, ra), fold(mb, rb))
}

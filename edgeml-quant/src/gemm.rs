//! Quantized GEMM: `C = (A − zA)·(B − zB)` with B packed once.

use crate::error::{Error, Result};
use crate::kernels::Isa;
use crate::kernels::driver::{self, Job, OutPtr, Post};
use crate::kernels::pack::{self, Buf, QElem};
use ndarray::{ArrayView2, ArrayViewMut2};

/// Zero points of the weights: one for the tensor or one per output column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ZeroPoints<'a, T> {
    /// One zero point for the whole tensor.
    PerTensor(T),
    /// One zero point per column of B (per output channel).
    PerColumn(&'a [T]),
}

/// Weights (`B`, `K × N`) packed once for one kernel path, with their column sums and
/// zero points folded in.
#[derive(Debug, Clone)]
pub struct PackedB {
    isa: Isa,
    k: usize,
    n: usize,
    buf: Buf<'static>,
    colsum: Vec<i32>,
    zb: Vec<i32>,
    zb_zero: bool,
}

impl PackedB {
    /// Packs `b` for the kernel path chosen at run time ([`Isa::selected`]).
    ///
    /// # Errors
    /// [`Error::Shape`] when per-column zero points do not number `N`.
    pub fn new<T: QElem>(b: ArrayView2<'_, T>, zero_points: ZeroPoints<'_, T>) -> Result<Self> {
        Self::with_isa(b, zero_points, Isa::selected())
    }

    /// Packs `b` for a given kernel path (to test or benchmark one path).
    ///
    /// # Errors
    /// [`Error::IsaUnavailable`] if this CPU lacks `isa`; [`Error::Shape`] as
    /// [`PackedB::new`].
    pub fn with_isa<T: QElem>(
        b: ArrayView2<'_, T>,
        zero_points: ZeroPoints<'_, T>,
        isa: Isa,
    ) -> Result<Self> {
        if !isa.is_available() {
            return Err(Error::IsaUnavailable(isa.name()));
        }
        let (k, n) = b.dim();
        let zb: Vec<i32> = match zero_points {
            ZeroPoints::PerTensor(z) => vec![pack::b_zp(z); n],
            ZeroPoints::PerColumn(z) => {
                if z.len() != n {
                    return Err(Error::Shape(format!(
                        "{} weight zero points for {n} columns",
                        z.len()
                    )));
                }
                z.iter().map(|&z| pack::b_zp(z)).collect()
            }
        };
        let (buf, colsum) = pack::pack_b(isa.geom(), b);
        let zb_zero = zb.iter().all(|&z| z == 0);
        Ok(PackedB {
            isa,
            k,
            n,
            buf,
            colsum,
            zb,
            zb_zero,
        })
    }

    /// The kernel path these weights are packed for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Rows of B (the reduction length K).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of B (output channels N).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes of packed storage.
    pub fn packed_bytes(&self) -> usize {
        self.buf.len_bytes()
    }
}

/// The fused activation of a requantizing epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// No activation (only the saturation of the output type).
    #[default]
    None,
    /// `max(x, 0)` in real terms: outputs below the output zero point become it.
    Relu,
    /// Clip to `[min, max]`, given in the quantized output domain.
    Clip {
        /// Smallest quantized output.
        min: i32,
        /// Largest quantized output.
        max: i32,
    },
}

/// Requantization to u8/i8 as ONNX `QLinearMatMul`/`QLinearConv` (and ORT's MLAS) do:
/// `y = clamp(round_half_even(f32(acc + bias) · multiplier), lo − zp, hi − zp) + zp`,
/// computed in f32.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Requant<'a> {
    /// `a_scale · b_scale / y_scale`: one value or one per output column (see
    /// [`multipliers`]).
    pub multipliers: &'a [f32],
    /// Output zero point.
    pub zero_point: i32,
    /// Optional int32 bias per output column (scale `a_scale · b_scale`).
    pub bias: Option<&'a [i32]>,
    /// Fused activation.
    pub activation: Activation,
}

/// Dequantized f32 output: `y = f32(acc + bias) · multiplier`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dequant<'a> {
    /// `a_scale · b_scale`: one value or one per output column.
    pub multipliers: &'a [f32],
    /// Optional int32 bias per output column.
    pub bias: Option<&'a [i32]>,
}

/// The requantization multipliers of ONNX `QLinearMatMul`/`QLinearConv`,
/// `a_scale · b_scale[i] / y_scale` computed in f32 as onnxruntime does.
pub fn multipliers(a_scale: f32, b_scales: &[f32], y_scale: f32) -> Vec<f32> {
    b_scales.iter().map(|&b| a_scale * b / y_scale).collect()
}

/// Options of a GEMM call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmOptions {
    /// Worker threads (rayon global pool): 1 runs on the calling thread (the default,
    /// as onnxruntime with `intra_op_num_threads = 1`), 0 uses every rayon thread.
    ///
    /// With more than one, a call made from outside any rayon pool leaves the pool
    /// threads that helped it spinning for up to 200 µs, ready for the caller's next
    /// call (waking a sleeping thread costs tens of microseconds), as onnxruntime's
    /// intra-op threads spin between operators; then they go back to the pool. Calls
    /// made inside a pool (an `edgeml_onnx::Plan` run) leave that choice to the plan
    /// (`PlanOptions::spin`).
    pub threads: usize,
}

impl Default for GemmOptions {
    fn default() -> Self {
        GemmOptions { threads: 1 }
    }
}

impl GemmOptions {
    pub(crate) fn threads(&self) -> usize {
        if self.threads == 0 {
            rayon::current_num_threads()
        } else {
            self.threads
        }
    }
}

fn check_shapes(m: usize, k: usize, b: &PackedB, out: (usize, usize)) -> Result<()> {
    if k != b.k {
        return Err(Error::Shape(format!(
            "A is {m}×{k} but B is {}×{}",
            b.k, b.n
        )));
    }
    if out != (m, b.n) {
        return Err(Error::Shape(format!(
            "output is {}×{} but A·B is {m}×{}",
            out.0, out.1, b.n
        )));
    }
    Ok(())
}

/// Expands one-or-N values to N, checking finiteness.
pub(crate) fn per_col_f32(v: &[f32], n: usize, what: &str) -> Result<Vec<f32>> {
    if v.len() != 1 && v.len() != n {
        return Err(Error::Shape(format!("{} {what} for {n} columns", v.len())));
    }
    if let Some(x) = v.iter().find(|x| !x.is_finite()) {
        return Err(Error::NonFinite(format!("{what} contains {x}")));
    }
    Ok(if v.len() == n {
        v.to_vec()
    } else {
        vec![v[0]; n]
    })
}

pub(crate) fn bias_vec(bias: Option<&[i32]>, n: usize) -> Result<Vec<i32>> {
    match bias {
        None => Ok(vec![0; n]),
        Some(b) if b.len() == n => Ok(b.to_vec()),
        Some(b) => Err(Error::Shape(format!(
            "{} bias values for {n} columns",
            b.len()
        ))),
    }
}

/// The `[lo, hi]` clamp (relative to the zero point) of a requantization to `O`.
pub(crate) fn quant_bounds<O: QElem>(rq: &Requant<'_>) -> Result<(f32, f32)> {
    let (tmin, tmax) = O::RANGE;
    let zp = rq.zero_point;
    if zp < tmin || zp > tmax {
        return Err(Error::Invalid(format!(
            "output zero point {zp} outside the {} range",
            O::NAME
        )));
    }
    let (lo, hi) = match rq.activation {
        Activation::None => (tmin, tmax),
        Activation::Relu => (zp, tmax),
        Activation::Clip { min, max } => {
            if min > max {
                return Err(Error::Invalid(format!("clip min {min} > max {max}")));
            }
            (min.clamp(tmin, tmax), max.clamp(tmin, tmax))
        }
    };
    Ok(((lo - zp) as f32, (hi - zp) as f32))
}

/// The raw output pointer and strides of a view; the caller keeps the view borrowed
/// while the kernels write through the pointer.
pub(crate) fn raw_out<O: OutElem>(out: &mut ArrayViewMut2<'_, O>) -> (OutPtr, isize, isize) {
    let st = out.strides();
    let (r, c) = (st[0], st[1]);
    (O::ptr(out.as_mut_ptr()), r, c)
}

/// Output element types of the GEMM (`i32`, `u8`, `i8`, `f32`).
pub(crate) trait OutElem: Copy {
    fn ptr(p: *mut Self) -> OutPtr;
}
impl OutElem for i32 {
    fn ptr(p: *mut Self) -> OutPtr {
        OutPtr::I32(p)
    }
}
impl OutElem for f32 {
    fn ptr(p: *mut Self) -> OutPtr {
        OutPtr::F32(p)
    }
}

/// The shared driver: prepares A, folds the zero points, runs the kernels.
pub(crate) fn gemm_any<T: QElem>(
    a: ArrayView2<'_, T>,
    a_zp: T,
    b: &PackedB,
    post: Post<'_>,
    out: (OutPtr, isize, isize),
    opts: &GemmOptions,
) {
    let m = a.nrows();
    let n = b.n;
    if m == 0 || n == 0 {
        return;
    }
    thread_local! {
        // Copies of A (see `prep_a`), reused between calls on this thread.
        static A_COPY: core::cell::RefCell<pack::Aligned> =
            core::cell::RefCell::new(pack::Aligned::zeroed(0));
    }
    A_COPY.with(|c| match c.try_borrow_mut() {
        Ok(mut s) => gemm_prepared(a, a_zp, b, post, out, opts, &mut s),
        Err(_) => gemm_prepared(a, a_zp, b, post, out, opts, &mut pack::Aligned::zeroed(0)),
    })
}

/// [`gemm_any`] with `scratch` for a copy of A. `a` may also be `m × kpad(k)` with the
/// padding columns holding the element whose offset form is 0 (0 for `u8`, −128 for
/// `i8`): then a `u8` A in the kernel's format is used in place.
fn gemm_prepared<T: QElem>(
    a: ArrayView2<'_, T>,
    a_zp: T,
    b: &PackedB,
    post: Post<'_>,
    out: (OutPtr, isize, isize),
    opts: &GemmOptions,
    scratch: &mut pack::Aligned,
) {
    let m = a.nrows();
    let k = b.k;
    let n = b.n;
    let g = b.isa.geom();
    // `a` has `k` columns, or (im2col rows built at the kernel's row length, so that
    // they are used in place) `kpad(k)`, the padding holding the value whose offset
    // form is 0, so that it adds nothing to the row sums.
    debug_assert!(a.ncols() == k || a.ncols() == pack::kpad(g, k));
    let prep = pack::prep_a(g, a.view(), !b.zb_zero, scratch);
    let colterm = colterm(b, pack::a_zp(a_zp), k);
    let (ptr, rs, cs) = out;
    let job = Job {
        a: prep.buf.ptr(),
        b: b.buf.ptr(),
        kp: pack::kpad(g, k),
        lda: prep.lda,
        m,
        n,
        rowterm: &prep.rowterm,
        colterm: &colterm,
        zb: if b.zb_zero { &[] } else { &b.zb },
        post,
        out: ptr,
        rs,
        cs,
    };
    driver::run(b.isa, &job, opts.threads());
}

/// The per-column constant of the zero-point folding:
/// `−zA'·colsum(B') + K·zA'·zB'` (+ `128·colsum(B')` for kernels fed `A' − 128`).
fn colterm(b: &PackedB, za: i32, k: usize) -> Vec<i32> {
    let g = b.isa.geom();
    let kk = k as i32;
    (0..b.n)
        .map(|j| {
            let mut c = za
                .wrapping_neg()
                .wrapping_mul(b.colsum[j])
                .wrapping_add(kk.wrapping_mul(za).wrapping_mul(b.zb[j]));
            if g.a_xor {
                c = c.wrapping_add(b.colsum[j].wrapping_mul(128));
            }
            c
        })
        .collect()
}

/// Whether the weights need row sums of A (some weight zero point is non-zero).
pub(crate) fn needs_rowsums(b: &PackedB) -> bool {
    !b.zb_zero
}

/// An indirect convolution as a GEMM over implicit im2col rows (see
/// [`driver::Indirect`]); `rowterm` holds `−rowsum(A')` per output pixel when
/// [`needs_rowsums`]. Returns `false` if the weights' path has no indirect kernel.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_indirect(
    ind: &driver::Indirect,
    m: usize,
    a_zp_mapped: i32,
    b: &PackedB,
    rowterm: &[i32],
    post: Post<'_>,
    out: (OutPtr, isize, isize),
    opts: &GemmOptions,
) -> bool {
    let k = ind.kh * ind.kw * ind.cig;
    if k != b.k || m == 0 || b.n == 0 {
        return k == b.k;
    }
    let colterm = colterm(b, a_zp_mapped, k);
    let (ptr, rs, cs) = out;
    let job = Job {
        a: core::ptr::null(),
        b: b.buf.ptr(),
        kp: k,
        lda: 0,
        m,
        n: b.n,
        rowterm,
        colterm: &colterm,
        zb: if b.zb_zero { &[] } else { &b.zb },
        post,
        out: ptr,
        rs,
        cs,
    };
    driver::run_indirect(b.isa, &job, ind, opts.threads())
}

/// `out = (A − a_zp)·(B − zB)` in i32 (ONNX `MatMulInteger`), wrapping modulo 2³².
///
/// # Errors
/// [`Error::Shape`] if `A` is not `M × K` with `K = b.k()` or `out` is not `M × N`.
pub fn gemm_i32<T: QElem>(
    a: ArrayView2<'_, T>,
    a_zp: T,
    b: &PackedB,
    out: ArrayViewMut2<'_, i32>,
    opts: &GemmOptions,
) -> Result<()> {
    check_shapes(a.nrows(), a.ncols(), b, out.dim())?;
    let mut out = out;
    gemm_any(a, a_zp, b, Post::I32, raw_out(&mut out), opts);
    Ok(())
}

/// The u8 × i8 fast path of [`gemm_i32`] on one thread.
///
/// # Errors
/// As [`gemm_i32`].
pub fn gemm_u8i8(
    a: ArrayView2<'_, u8>,
    a_zp: u8,
    b: &PackedB,
    out: ArrayViewMut2<'_, i32>,
) -> Result<()> {
    gemm_i32(a, a_zp, b, out, &GemmOptions::default())
}

/// Requantized GEMM (ONNX `QLinearMatMul`, plus bias and fused activation), output
/// `u8` or `i8`.
///
/// # Errors
/// [`Error::Shape`] as [`gemm_i32`] or when multipliers/bias do not number 1 or N;
/// [`Error::NonFinite`] for a NaN/infinite multiplier; [`Error::Invalid`] for a zero
/// point outside the output type or an empty clip range.
pub fn gemm_requant<T: QElem, O: QElem>(
    a: ArrayView2<'_, T>,
    a_zp: T,
    b: &PackedB,
    rq: &Requant<'_>,
    out: ArrayViewMut2<'_, O>,
    opts: &GemmOptions,
) -> Result<()> {
    check_shapes(a.nrows(), a.ncols(), b, out.dim())?;
    let mult = per_col_f32(rq.multipliers, b.n, "multipliers")?;
    let bias = bias_vec(rq.bias, b.n)?;
    let (lo, hi) = quant_bounds::<O>(rq)?;
    let post = Post::Quant {
        mult: &mult,
        bias: &bias,
        zp: rq.zero_point,
        lo,
        hi,
    };
    let mut out = out;
    gemm_any(a, a_zp, b, post, raw_out_q(&mut out), opts);
    Ok(())
}

/// As [`raw_out`] for a u8/i8 view.
pub(crate) fn raw_out_q<O: QElem>(out: &mut ArrayViewMut2<'_, O>) -> (OutPtr, isize, isize) {
    let st = out.strides();
    let (r, c) = (st[0], st[1]);
    let p = out.as_mut_ptr();
    let p = if O::SIGNED {
        OutPtr::I8(p.cast())
    } else {
        OutPtr::U8(p.cast())
    };
    (p, r, c)
}

/// Dequantized GEMM: `out = f32((A − a_zp)·(B − zB) + bias) · multiplier`.
///
/// # Errors
/// As [`gemm_requant`].
pub fn gemm_f32<T: QElem>(
    a: ArrayView2<'_, T>,
    a_zp: T,
    b: &PackedB,
    dq: &Dequant<'_>,
    out: ArrayViewMut2<'_, f32>,
    opts: &GemmOptions,
) -> Result<()> {
    check_shapes(a.nrows(), a.ncols(), b, out.dim())?;
    let mult = per_col_f32(dq.multipliers, b.n, "multipliers")?;
    let bias = bias_vec(dq.bias, b.n)?;
    let post = Post::F32 {
        mult: &mult,
        bias: &bias,
    };
    let mut out = out;
    gemm_any(a, a_zp, b, post, raw_out(&mut out), opts);
    Ok(())
}

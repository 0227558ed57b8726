//! Quantized 2-D convolution with ONNX `QLinearConv` / `ConvInteger` semantics.
//!
//! Tensors are NCHW at the API. Internally the input is transposed once per call to
//! NHWC; a 1×1 convolution with unit strides and no padding is a plain GEMM on it,
//! other grouped convolutions build im2col rows in `(kh, kw, c)` order (each run of
//! channels is one copy; padding is filled with the input zero point, so it adds
//! nothing), and depthwise convolutions (`group = C_in = C_out`) use a direct kernel.

use crate::error::{Error, Result};
use crate::gemm::{
    GemmOptions, PackedB, Requant, ZeroPoints, bias_vec, gemm_any, per_col_f32, quant_bounds,
};
use crate::gemm::{gemm_indirect, needs_rowsums};
use crate::kernels::Isa;
use crate::kernels::depthwise::{self, DwGeom, DwOut, DwQuant, DwScratch};
use crate::kernels::driver::{Indirect, Post};
use crate::kernels::pack::{QElem, split_view};
use ndarray::{Array2, ArrayView4, ArrayViewMut2, ArrayViewMut4, Axis};
use rayon::prelude::*;

/// Attributes of a convolution, as in ONNX (defaults: one group, unit strides and
/// dilations, no padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvParams {
    /// Number of groups; `C_in` and `C_out` must be multiples of it.
    pub group: usize,
    /// Strides along H and W.
    pub strides: [usize; 2],
    /// Padding `[top, left, bottom, right]` (ONNX `pads` order).
    pub pads: [usize; 4],
    /// Dilations along H and W.
    pub dilations: [usize; 2],
}

impl Default for ConvParams {
    fn default() -> Self {
        ConvParams {
            group: 1,
            strides: [1, 1],
            pads: [0; 4],
            dilations: [1, 1],
        }
    }
}

#[derive(Debug, Clone)]
enum Kind {
    /// One packed GEMM per group: B = W_gᵀ with K in `(kh, kw, c)` order.
    Gemm(Vec<PackedB>),
    /// Depthwise: per channel the filter minus its zero point.
    Depthwise(Vec<i32>),
}

/// Convolution weights `[C_out, C_in/group, kH, kW]` packed for one kernel path.
#[derive(Debug, Clone)]
pub struct PackedConv {
    params: ConvParams,
    c_out: usize,
    c_in_g: usize,
    kh: usize,
    kw: usize,
    isa: Isa,
    kind: Kind,
}

impl PackedConv {
    /// Packs weights for the kernel path chosen at run time.
    ///
    /// # Errors
    /// As [`PackedConv::with_isa`].
    pub fn new<T: QElem>(
        w: ArrayView4<'_, T>,
        zero_points: ZeroPoints<'_, T>,
        params: ConvParams,
    ) -> Result<Self> {
        Self::with_isa(w, zero_points, params, Isa::selected())
    }

    /// Packs weights for a given kernel path.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a zero group, stride or dilation, or `C_out` not a
    /// multiple of `group`; [`Error::Shape`] for per-channel zero points not numbering
    /// `C_out`; [`Error::IsaUnavailable`] if the CPU lacks `isa`.
    pub fn with_isa<T: QElem>(
        w: ArrayView4<'_, T>,
        zero_points: ZeroPoints<'_, T>,
        params: ConvParams,
        isa: Isa,
    ) -> Result<Self> {
        if !isa.is_available() {
            return Err(Error::IsaUnavailable(isa.name()));
        }
        let (c_out, c_in_g, kh, kw) = w.dim();
        let g = params.group;
        if g == 0 || params.strides.contains(&0) || params.dilations.contains(&0) {
            return Err(Error::Invalid(format!(
                "group, strides and dilations must be positive: {params:?}"
            )));
        }
        if c_out % g != 0 {
            return Err(Error::Invalid(format!(
                "C_out {c_out} is not a multiple of group {g}"
            )));
        }
        let zp: Vec<T> = match zero_points {
            ZeroPoints::PerTensor(z) => vec![z; c_out],
            ZeroPoints::PerColumn(z) if z.len() == c_out => z.to_vec(),
            ZeroPoints::PerColumn(z) => {
                return Err(Error::Shape(format!(
                    "{} weight zero points for {c_out} output channels",
                    z.len()
                )));
            }
        };
        let kind = if c_in_g == 1 && g == c_out {
            let mut f = Vec::with_capacity(c_out * kh * kw);
            for (oc, filt) in w.outer_iter().enumerate() {
                let z = zp[oc].to_i32();
                f.extend(filt.iter().map(|&v| v.to_i32() - z));
            }
            Kind::Depthwise(f)
        } else {
            let cog = c_out / g;
            let k = kh * kw * c_in_g;
            let mut packs = Vec::with_capacity(g);
            for gi in 0..g {
                let b = Array2::from_shape_fn((k, cog), |(kk, j)| {
                    let (t, c) = (kk / c_in_g, kk % c_in_g);
                    w[[gi * cog + j, c, t / kw, t % kw]]
                });
                let z = &zp[gi * cog..(gi + 1) * cog];
                packs.push(PackedB::with_isa(b.view(), ZeroPoints::PerColumn(z), isa)?);
            }
            Kind::Gemm(packs)
        };
        Ok(PackedConv {
            params,
            c_out,
            c_in_g,
            kh,
            kw,
            isa,
            kind,
        })
    }

    /// Output height and width for an input of `h × w`.
    ///
    /// # Errors
    /// [`Error::Shape`] if the (dilated) kernel does not fit in the padded input.
    pub fn output_hw(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let p = &self.params;
        let dim = |n: usize, pb: usize, pe: usize, k: usize, s: usize, d: usize| {
            let padded = n + pb + pe;
            let span = d * (k.max(1) - 1) + 1;
            if k == 0 || padded < span {
                Err(Error::Shape(format!(
                    "kernel {k} (dilation {d}) larger than padded input {padded}"
                )))
            } else {
                Ok((padded - span) / s + 1)
            }
        };
        Ok((
            dim(
                h,
                p.pads[0],
                p.pads[2],
                self.kh,
                p.strides[0],
                p.dilations[0],
            )?,
            dim(
                w,
                p.pads[1],
                p.pads[3],
                self.kw,
                p.strides[1],
                p.dilations[1],
            )?,
        ))
    }

    /// The kernel path the weights are packed for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Whether the direct depthwise kernel is used.
    pub fn is_depthwise(&self) -> bool {
        matches!(self.kind, Kind::Depthwise(_))
    }
}

/// What the convolution writes.
enum YView<'a> {
    I32(ArrayViewMut4<'a, i32>),
    U8(ArrayViewMut4<'a, u8>, Quant<'a>),
    I8(ArrayViewMut4<'a, i8>, Quant<'a>),
}

/// A validated requantization.
struct Quant<'a> {
    zp: i32,
    bounds: (f32, f32),
    mult: Vec<f32>,
    bias: Vec<i32>,
    _rq: core::marker::PhantomData<&'a ()>,
}

/// ONNX `QLinearConv`: requantized u8/i8 output (bias, per-channel multipliers and a
/// fused activation in `rq`; see [`crate::multipliers`]).
///
/// # Errors
/// [`Error::Shape`] when `x` is not `[N, C_in, H, W]` with `C_in = group · C_in/group`
/// of the weights, `y` is not `[N, C_out, OH, OW]`, or multipliers/bias do not number
/// 1 or `C_out`; [`Error::Invalid`] for a `y` not in standard layout, and as
/// [`crate::gemm_requant`]; [`Error::NonFinite`] for a non-finite multiplier.
pub fn qlinear_conv<T: QElem, O: QElem>(
    x: ArrayView4<'_, T>,
    x_zp: T,
    w: &PackedConv,
    rq: &Requant<'_>,
    y: ArrayViewMut4<'_, O>,
    opts: &GemmOptions,
) -> Result<()> {
    let q = Quant {
        zp: rq.zero_point,
        bounds: quant_bounds::<O>(rq)?,
        mult: per_col_f32(rq.multipliers, w.c_out, "multipliers")?,
        bias: bias_vec(rq.bias, w.c_out)?,
        _rq: core::marker::PhantomData,
    };
    let y = match split_view(y) {
        Some(Ok(y)) => YView::U8(y, q),
        Some(Err(y)) => YView::I8(y, q),
        None => {
            return Err(Error::Invalid(
                "output view must be in standard (C) layout".into(),
            ));
        }
    };
    conv_any(x, x_zp, w, y, opts)
}

/// ONNX `ConvInteger`: `y = conv(x − x_zp, w − w_zp)` in i32.
///
/// # Errors
/// As [`qlinear_conv`].
pub fn conv_integer<T: QElem>(
    x: ArrayView4<'_, T>,
    x_zp: T,
    w: &PackedConv,
    y: ArrayViewMut4<'_, i32>,
    opts: &GemmOptions,
) -> Result<()> {
    conv_any(x, x_zp, w, YView::I32(y), opts)
}

fn conv_any<T: QElem>(
    x: ArrayView4<'_, T>,
    x_zp: T,
    w: &PackedConv,
    mut y: YView<'_>,
    opts: &GemmOptions,
) -> Result<()> {
    let (n, c_in, h, wd) = x.dim();
    let g = w.params.group;
    if c_in != g * w.c_in_g {
        return Err(Error::Shape(format!(
            "input has {c_in} channels, weights expect {} × {g} groups",
            w.c_in_g
        )));
    }
    let (oh, ow) = w.output_hw(h, wd)?;
    let (ydim, ystd) = match &y {
        YView::I32(v) => (v.dim(), v.is_standard_layout()),
        YView::U8(v, _) => (v.dim(), v.is_standard_layout()),
        YView::I8(v, _) => (v.dim(), v.is_standard_layout()),
    };
    if ydim != (n, w.c_out, oh, ow) {
        return Err(Error::Shape(format!(
            "output is {ydim:?}, convolution gives {:?}",
            (n, w.c_out, oh, ow)
        )));
    }
    if !ystd {
        return Err(Error::Invalid(
            "output view must be in standard (C) layout".into(),
        ));
    }
    if n == 0 || w.c_out == 0 || oh * ow == 0 {
        return Ok(());
    }
    match &w.kind {
        Kind::Depthwise(f) => depthwise_all(x, x_zp, w, f, (oh, ow), &mut y, opts),
        Kind::Gemm(packs) => gemm_all(x, x_zp, w, packs, (oh, ow), &mut y, opts),
    }
    Ok(())
}

fn depthwise_all<T: QElem>(
    x: ArrayView4<'_, T>,
    x_zp: T,
    w: &PackedConv,
    f: &[i32],
    (oh, ow): (usize, usize),
    y: &mut YView<'_>,
    opts: &GemmOptions,
) {
    let (_, c, h, wd) = x.dim();
    let p = &w.params;
    let geom = DwGeom {
        h,
        w: wd,
        kh: w.kh,
        kw: w.kw,
        strides: p.strides,
        dilations: p.dilations,
        pads: p.pads,
        oh,
        ow,
    };
    // The input mapped to u8 (borrowed for contiguous u8), NCHW.
    let xstd = x.as_standard_layout();
    let xs = crate::kernels::pack::a_bytes(xstd.as_slice().unwrap_or(&[]));
    let xsub = i16::from(x_zp.to_a());
    let plane_in = h * wd;
    let plane_out = oh * ow;
    let kk = w.kh * w.kw;
    let threads = opts.threads();
    let run = |ch: usize, out: &mut DwOut<'_>, s: &mut DwScratch| {
        let cc = ch % c;
        depthwise::channel(
            w.isa,
            &geom,
            &xs[ch * plane_in..(ch + 1) * plane_in],
            xsub,
            &f[cc * kk..(cc + 1) * kk],
            s,
            out,
        );
    };
    macro_rules! go {
        ($ys:expr, $mk:expr) => {{
            let ys = $ys;
            if threads <= 1 {
                let mut s = DwScratch::new(&geom);
                for (ch, yc) in ys.chunks_mut(plane_out).enumerate() {
                    run(ch, &mut $mk(yc, ch % c), &mut s);
                }
            } else {
                let per = ys.len().div_ceil(plane_out).div_ceil(threads).max(1);
                ys.par_chunks_mut(plane_out * per)
                    .enumerate()
                    .for_each(|(t, blk)| {
                        let mut s = DwScratch::new(&geom);
                        for (i, yc) in blk.chunks_mut(plane_out).enumerate() {
                            let ch = t * per + i;
                            run(ch, &mut $mk(yc, ch % c), &mut s);
                        }
                    });
            }
        }};
    }
    match y {
        YView::I32(v) => {
            if let Some(ys) = v.as_slice_mut() {
                go!(ys, |yc, _| DwOut::I32(yc));
            }
        }
        YView::U8(v, q) => {
            let dq = |cc: usize| dw_quant(q, cc);
            if let Some(ys) = v.as_slice_mut() {
                go!(ys, |yc, cc| DwOut::U8(yc, dq(cc)));
            }
        }
        YView::I8(v, q) => {
            let dq = |cc: usize| dw_quant(q, cc);
            if let Some(ys) = v.as_slice_mut() {
                go!(ys, |yc, cc| DwOut::I8(yc, dq(cc)));
            }
        }
    }
}

fn dw_quant(q: &Quant<'_>, c: usize) -> DwQuant {
    DwQuant {
        mult: q.mult[c],
        bias: q.bias[c],
        zp: q.zp,
        lo: q.bounds.0,
        hi: q.bounds.1,
    }
}

fn gemm_all<T: QElem>(
    x: ArrayView4<'_, T>,
    x_zp: T,
    w: &PackedConv,
    packs: &[PackedB],
    (oh, ow): (usize, usize),
    y: &mut YView<'_>,
    opts: &GemmOptions,
) {
    let (n, c_in, h, wd) = x.dim();
    let p = &w.params;
    let g = p.group;
    let cig = w.c_in_g;
    let cog = w.c_out / g;
    let plane = oh * ow;
    let k = w.kh * w.kw * cig;
    let pointwise = w.kh == 1 && w.kw == 1 && p.strides == [1, 1] && p.pads == [0; 4] && g == 1;
    // Indirect (im2col-free) kernel: the taps' channel runs are read in place.
    let indirect = !pointwise && crate::kernels::has_indirect(w.isa) && cig > 0 && cig % 4 == 0;
    let zpad = vec![x_zp.to_a(); cig];
    // Scratch reused over the batch: NHWC input and im2col rows.
    let mut nhwc = Array2::<T>::from_elem((h * wd, c_in), x_zp);
    let mut cols = if pointwise || indirect {
        Array2::<T>::from_elem((0, 0), x_zp)
    } else {
        Array2::<T>::from_elem((plane, k), x_zp)
    };
    for ni in 0..n {
        let xn = x.index_axis(Axis(0), ni);
        to_nhwc(xn, &mut nhwc);
        let xs = nhwc.as_slice().unwrap_or(&[]);
        if indirect {
            let xm = crate::kernels::pack::a_bytes(xs);
            for (gi, pb) in packs.iter().enumerate() {
                let ind = Indirect {
                    x: xm.as_ptr(),
                    zpad: zpad.as_ptr(),
                    h,
                    w: wd,
                    c_in,
                    c0: gi * cig,
                    cig,
                    kh: w.kh,
                    kw: w.kw,
                    strides: p.strides,
                    dilations: p.dilations,
                    pad_tl: [p.pads[0], p.pads[1]],
                    ow,
                };
                let rowterm = if needs_rowsums(pb) {
                    indirect_rowterm(&xm, &ind, plane, zpad[0])
                } else {
                    Vec::new()
                };
                let range = gi * cog..(gi + 1) * cog;
                let za = i32::from(x_zp.to_a());
                let done = match y {
                    YView::I32(v) => {
                        let mut yv = group_out(v, ni, range, plane);
                        let o = crate::gemm::raw_out(&mut yv);
                        gemm_indirect(&ind, plane, za, pb, &rowterm, Post::I32, o, opts)
                    }
                    YView::U8(v, q) => {
                        let mut yv = group_out(v, ni, range.clone(), plane);
                        let o = crate::gemm::raw_out_q(&mut yv);
                        gemm_indirect(&ind, plane, za, pb, &rowterm, quant_post(q, range), o, opts)
                    }
                    YView::I8(v, q) => {
                        let mut yv = group_out(v, ni, range.clone(), plane);
                        let o = crate::gemm::raw_out_q(&mut yv);
                        gemm_indirect(&ind, plane, za, pb, &rowterm, quant_post(q, range), o, opts)
                    }
                };
                debug_assert!(done, "indirect kernel chosen for a path without one");
            }
            continue;
        }
        for (gi, pb) in packs.iter().enumerate() {
            let a = if pointwise {
                nhwc.view()
            } else {
                im2col(
                    xs,
                    (h, wd, c_in),
                    gi * cig,
                    cig,
                    w,
                    (oh, ow),
                    x_zp,
                    &mut cols,
                );
                cols.view()
            };
            let range = gi * cog..(gi + 1) * cog;
            match y {
                YView::I32(v) => {
                    let mut yv = group_out(v, ni, range, plane);
                    gemm_any(a, x_zp, pb, Post::I32, crate::gemm::raw_out(&mut yv), opts);
                }
                YView::U8(v, q) => {
                    let mut yv = group_out(v, ni, range.clone(), plane);
                    let post = quant_post(q, range);
                    gemm_any(a, x_zp, pb, post, crate::gemm::raw_out_q(&mut yv), opts);
                }
                YView::I8(v, q) => {
                    let mut yv = group_out(v, ni, range.clone(), plane);
                    let post = quant_post(q, range);
                    gemm_any(a, x_zp, pb, post, crate::gemm::raw_out_q(&mut yv), opts);
                }
            }
        }
    }
}

fn quant_post<'q>(q: &'q Quant<'_>, range: core::ops::Range<usize>) -> Post<'q> {
    Post::Quant {
        mult: &q.mult[range.clone()],
        bias: &q.bias[range],
        zp: q.zp,
        lo: q.bounds.0,
        hi: q.bounds.1,
    }
}

/// The `[pixels, channels]` (transposed) view of one batch item's group of channels.
fn group_out<'v, E>(
    y: &'v mut ArrayViewMut4<'_, E>,
    ni: usize,
    range: core::ops::Range<usize>,
    plane: usize,
) -> ArrayViewMut2<'v, E> {
    let yn = y.index_axis_mut(Axis(0), ni);
    let yg = yn.slice_move(ndarray::s![range.clone(), .., ..]);
    let len = range.len();
    // A channel range of a standard-layout batch item is contiguous.
    match yg.into_shape_with_order((len, plane)) {
        Ok(v) => v.reversed_axes(),
        Err(_) => ArrayViewMut2::from_shape((0, 0), &mut []).unwrap_or_else(|_| unreachable!()),
    }
}

/// im2col rows `[pixel, (kh, kw, c)]` of one group from an NHWC image; out-of-image
/// taps are the input zero point.
#[allow(clippy::too_many_arguments)]
fn im2col<T: QElem>(
    xs: &[T],
    (h, wd, c_in): (usize, usize, usize),
    c0: usize,
    cig: usize,
    w: &PackedConv,
    (oh, ow): (usize, usize),
    zp: T,
    cols: &mut Array2<T>,
) {
    let p = &w.params;
    let [sh, sw] = p.strides;
    let [dh, dw] = p.dilations;
    let Some(dst) = cols.as_slice_mut() else {
        return;
    };
    let k = w.kh * w.kw * cig;
    for oy in 0..oh {
        for ox in 0..ow {
            let row = &mut dst[(oy * ow + ox) * k..][..k];
            for ky in 0..w.kh {
                let iy = (oy * sh + ky * dh) as isize - p.pads[0] as isize;
                for kx in 0..w.kw {
                    let ix = (ox * sw + kx * dw) as isize - p.pads[1] as isize;
                    let d = &mut row[(ky * w.kw + kx) * cig..][..cig];
                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                        d.fill(zp);
                    } else {
                        let src = (iy as usize * wd + ix as usize) * c_in + c0;
                        d.copy_from_slice(&xs[src..src + cig]);
                    }
                }
            }
        }
    }
}

/// Transposes one `[C, H, W]` image into `[H·W, C]`, in blocks of 64 pixels so both
/// sides stay in cache.
fn to_nhwc<T: QElem>(x: ndarray::ArrayView3<'_, T>, out: &mut Array2<T>) {
    let (c, h, w) = x.dim();
    let hw = h * w;
    let xstd = x.as_standard_layout();
    let (Some(src), Some(dst)) = (xstd.as_slice(), out.as_slice_mut()) else {
        return;
    };
    const B: usize = 64;
    let mut p0 = 0;
    while p0 < hw {
        let p1 = (p0 + B).min(hw);
        for ci in 0..c {
            let s = &src[ci * hw + p0..ci * hw + p1];
            for (i, &v) in s.iter().enumerate() {
                dst[(p0 + i) * c + ci] = v;
            }
        }
        p0 = p1;
    }
}

/// `−rowsum` of every implicit im2col row of an indirect convolution.
fn indirect_rowterm(xm: &[u8], ind: &Indirect, plane: usize, zpad: u8) -> Vec<i32> {
    let pad_sum = i32::from(zpad).wrapping_mul(ind.cig as i32);
    (0..plane)
        .map(|m| {
            let (oy, ox) = (m / ind.ow, m % ind.ow);
            let mut s = 0i32;
            for ky in 0..ind.kh {
                let iy =
                    (oy * ind.strides[0] + ky * ind.dilations[0]) as isize - ind.pad_tl[0] as isize;
                for kx in 0..ind.kw {
                    let ix = (ox * ind.strides[1] + kx * ind.dilations[1]) as isize
                        - ind.pad_tl[1] as isize;
                    if iy >= 0 && ix >= 0 && (iy as usize) < ind.h && (ix as usize) < ind.w {
                        let off = (iy as usize * ind.w + ix as usize) * ind.c_in + ind.c0;
                        s = xm[off..off + ind.cig]
                            .iter()
                            .fold(s, |s, &v| s.wrapping_add(i32::from(v)));
                    } else {
                        s = s.wrapping_add(pad_sum);
                    }
                }
            }
            s.wrapping_neg()
        })
        .collect()
}

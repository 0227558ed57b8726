//! Quantized 2-D convolution with ONNX `QLinearConv` / `ConvInteger` semantics.
//!
//! Tensors are NCHW at the API. Dense convolutions with a unit horizontal stride on
//! paths with a direct kernel (`kernels::direct`) compute output channels × pixels
//! straight into NCHW. Otherwise the input is transposed once per call to
//! NHWC; a 1×1 convolution with unit strides and no padding is a plain GEMM on it,
//! other grouped convolutions build im2col rows in `(kh, kw, c)` order (each run of
//! channels is one copy; padding is filled with the input zero point, so it adds
//! nothing), and depthwise convolutions (`group = C_in = C_out`) use a direct kernel.

use crate::error::{Error, Result};
use crate::gemm::{GemmOptions, PackedB, Requant, ZeroPoints, bias_vec, per_col_f32, quant_bounds};
use crate::kernels::Isa;
use crate::kernels::depthwise::{self, DwGeom, DwOut, DwQuant, DwScratch};
use crate::kernels::direct::{self, DirectW};
use crate::kernels::pack::{QElem, split_view};
use ndarray::{Array2, ArrayView4, ArrayViewMut4};

mod lowered;
use lowered::gemm_all;

/// Largest zero-padded plane (elements) the direct depthwise kernel allocates.
const MAX_DW_PLANE: usize = 1 << 28;

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
    /// The channel-major direct kernel's weights (paths that have it, W stride 1 or 2).
    direct: Option<DirectW>,
    /// `amx`'s implicit-GEMM weights (dense, unit W stride, `C_in/g` a multiple of 64,
    /// `K = kH·kW·C_in/g ≥ 256`, symmetric weights); preferred over `direct` when
    /// present.
    #[cfg(target_arch = "x86_64")]
    amx: Option<crate::kernels::amx::ConvW>,
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
    /// multiple of `group`; [`Error::Limit`] for pads, strides or dilations above 2³¹; [`Error::Shape`] for per-channel zero points not numbering
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
        let limit = 1usize << 31;
        if params
            .pads
            .iter()
            .chain(&params.strides)
            .chain(&params.dilations)
            .any(|&v| v > limit)
        {
            return Err(Error::Limit(format!(
                "pads, strides and dilations must be at most 2^31: {params:?}"
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
        let direct = (matches!(kind, Kind::Gemm(_))
            && direct::has_direct(isa)
            && matches!(params.strides[1], 1 | 2)
            && c_in_g > 0)
            .then(|| DirectW::new(isa, w, &zp, g));
        #[cfg(target_arch = "x86_64")]
        // Below K = 256 the epilogue outweighs the tile products and the direct kernel
        // is faster (measured: a 1×1 64→256 convolution on 56², 0.84× on amx).
        let amx = (isa == Isa::Amx
            && matches!(kind, Kind::Gemm(_))
            && params.strides[1] == 1
            && kh * kw * c_in_g >= 256)
            .then(|| crate::kernels::amx::ConvW::new(w, &zp, g))
            .flatten();
        Ok(PackedConv {
            params,
            c_out,
            c_in_g,
            kh,
            kw,
            isa,
            kind,
            direct,
            #[cfg(target_arch = "x86_64")]
            amx,
        })
    }

    /// Output height and width for an input of `h × w`.
    ///
    /// # Errors
    /// [`Error::Shape`] if the (dilated) kernel does not fit in the padded input.
    pub fn output_hw(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let p = &self.params;
        let dim = |n: usize, pb: usize, pe: usize, k: usize, s: usize, d: usize| {
            let (Some(padded), Some(span)) = (
                n.checked_add(pb).and_then(|v| v.checked_add(pe)),
                d.checked_mul(k.max(1) - 1).and_then(|v| v.checked_add(1)),
            ) else {
                return Err(Error::Limit(format!(
                    "padded size or dilated kernel overflows: n {n}, pads {pb}+{pe}, kernel {k}, dilation {d}"
                )));
            };
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
    if let Kind::Depthwise(_) = &w.kind {
        let p = &w.params;
        // The direct kernel keeps one zero-padded plane (i16) per worker.
        let plane = (h + p.pads[0] + p.pads[2]).checked_mul(wd + p.pads[1] + p.pads[3]);
        if plane.is_none_or(|v| v > MAX_DW_PLANE) {
            return Err(Error::Limit(format!(
                "padded depthwise plane of {h}×{wd} with pads {:?} exceeds {MAX_DW_PLANE} elements",
                p.pads
            )));
        }
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
            // One thread splits its channels too when a stop condition must be polled
            // and the call is long enough to matter.
            let work = (ys.len() * kk) as u64;
            let poll =
                work >= crate::kernels::driver::STOP_WORK && crate::kernels::driver::stop_active();
            if threads <= 1 && !poll {
                let mut s = DwScratch::new(&geom);
                for (ch, yc) in ys.chunks_mut(plane_out).enumerate() {
                    run(ch, &mut $mk(yc, ch % c), &mut s);
                }
            } else {
                // Channels claimed in chunks by the calling thread and pool tasks (see
                // `driver::par_chunks`); each channel's output behind its own
                // (uncontended) lock.
                let planes: Vec<_> = ys
                    .chunks_mut(plane_out.max(1))
                    .map(std::sync::Mutex::new)
                    .collect();
                crate::kernels::driver::par_chunks(planes.len(), threads, 0, work, |r| {
                    let mut s = DwScratch::new(&geom);
                    for ch in r {
                        let mut yc = planes[ch]
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        run(ch, &mut $mk(&mut yc[..], ch % c), &mut s);
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

//! The GEMM-based convolutions: 1×1 as a plain GEMM, the indirect (im2col-free)
//! kernel, and chunked im2col otherwise; plus the NCHW → NHWC input transpose.

use super::{PackedConv, Quant, YView};
use crate::gemm::{GemmOptions, PackedB, gemm_any, gemm_indirect, needs_rowsums};
use crate::kernels::direct::{self, DGeom, DOut};
use crate::kernels::driver::{Indirect, Post};
use crate::kernels::pack::{QElem, copy_small, fill_small};
use ndarray::{Array2, ArrayView2, ArrayView4, ArrayViewMut2, ArrayViewMut4, Axis};
use rayon::prelude::*;

pub(super) fn gemm_all<T: QElem>(
    x: ArrayView4<'_, T>,
    x_zp: T,
    w: &PackedConv,
    packs: &[PackedB],
    (oh, ow): (usize, usize),
    y: &mut YView<'_>,
    opts: &GemmOptions,
) {
    if direct_all(x, x_zp, w, (oh, ow), y, opts) {
        return;
    }
    let (n, c_in, h, wd) = x.dim();
    let p = &w.params;
    let g = p.group;
    let cig = w.c_in_g;
    let cog = w.c_out / g;
    let plane = oh * ow;
    let k = w.kh * w.kw * cig;
    let pointwise = w.kh == 1 && w.kw == 1 && p.strides == [1, 1] && p.pads == [0; 4] && g == 1;
    // Indirect (im2col-free) kernel: the taps' channel runs are read in place.
    let indirect =
        !pointwise && crate::kernels::has_indirect(w.isa) && cig > 0 && cig.is_multiple_of(4);
    let zpad = vec![x_zp.to_a(); cig];
    // Scratch reused over the batch: NHWC input and im2col rows.
    let mut nhwc = Array2::<T>::from_elem((h * wd, c_in), x_zp);
    // im2col rows are built for at most `chunk` pixels at a time (about 4 MiB), so the
    // scratch stays bounded whatever the kernel size. Each row is `kp` long, the
    // kernel's padded K, so that the GEMM uses the rows in place.
    let kp = crate::kernels::pack::kpad(w.isa.geom(), k);
    let chunk = ((1usize << 22) / kp.max(1)).clamp(1, plane.max(1));
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
        let threads = opts.threads();
        if !pointwise && threads > 1 && plane >= 2 * threads {
            // im2col is serial work as large as the GEMM's input: each task builds the
            // rows of its own pixel range and runs the GEMM on them on one thread.
            let one = GemmOptions { threads: 1 };
            let geo = ((h, wd, c_in), (oh, ow));
            // Parts of at most `chunk` pixels, so each task's rows stay bounded too.
            let parts = (threads * 2).max(plane.div_ceil(chunk)).min(plane);
            let rows_of =
                |gi: usize, r: core::ops::Range<usize>, run: &dyn Fn(ArrayView2<'_, T>)| {
                    with_cols::<T>(r.len() * kp, |cols| {
                        im2col(xs, geo, gi * cig, cig, w, r.clone(), x_zp, (&mut *cols, kp));
                        if let Ok(a) = ArrayView2::from_shape((r.len(), kp), &*cols) {
                            run(a);
                        }
                    });
                };
            for (gi, pb) in packs.iter().enumerate() {
                let range = gi * cog..(gi + 1) * cog;
                match y {
                    YView::I32(v) => split_rows(group_out(v, ni, range, plane), parts)
                        .into_par_iter()
                        .for_each(|(r, mut yv)| {
                            let o = crate::gemm::raw_out(&mut yv);
                            rows_of(gi, r, &|a| gemm_any(a, x_zp, pb, Post::I32, o, &one));
                        }),
                    YView::U8(v, q) => split_rows(group_out(v, ni, range.clone(), plane), parts)
                        .into_par_iter()
                        .for_each(|(r, mut yv)| {
                            let o = crate::gemm::raw_out_q(&mut yv);
                            let run = |a: ArrayView2<'_, T>| {
                                gemm_any(a, x_zp, pb, quant_post(q, range.clone()), o, &one)
                            };
                            rows_of(gi, r, &run);
                        }),
                    YView::I8(v, q) => split_rows(group_out(v, ni, range.clone(), plane), parts)
                        .into_par_iter()
                        .for_each(|(r, mut yv)| {
                            let o = crate::gemm::raw_out_q(&mut yv);
                            let run = |a: ArrayView2<'_, T>| {
                                gemm_any(a, x_zp, pb, quant_post(q, range.clone()), o, &one)
                            };
                            rows_of(gi, r, &run);
                        }),
                }
            }
            continue;
        }
        for (gi, pb) in packs.iter().enumerate() {
            let range = gi * cog..(gi + 1) * cog;
            // The GEMM of output pixels `p0..p1` with their rows `a`.
            let mut rows_gemm = |a: ArrayView2<'_, T>, p0: usize, p1: usize| {
                let rows = ndarray::s![p0..p1, ..];
                match &mut *y {
                    YView::I32(v) => {
                        let yv = group_out(v, ni, range.clone(), plane);
                        let mut yv = yv.slice_move(rows);
                        let o = crate::gemm::raw_out(&mut yv);
                        gemm_any(a, x_zp, pb, Post::I32, o, opts);
                    }
                    YView::U8(v, q) => {
                        let yv = group_out(v, ni, range.clone(), plane);
                        let mut yv = yv.slice_move(rows);
                        let o = crate::gemm::raw_out_q(&mut yv);
                        gemm_any(a, x_zp, pb, quant_post(q, range.clone()), o, opts);
                    }
                    YView::I8(v, q) => {
                        let yv = group_out(v, ni, range.clone(), plane);
                        let mut yv = yv.slice_move(rows);
                        let o = crate::gemm::raw_out_q(&mut yv);
                        gemm_any(a, x_zp, pb, quant_post(q, range.clone()), o, opts);
                    }
                }
            };
            if pointwise {
                rows_gemm(nhwc.view(), 0, plane);
                continue;
            }
            let geo = ((h, wd, c_in), (oh, ow));
            with_cols::<T>(chunk * kp, |cols| {
                let mut p0 = 0;
                while p0 < plane {
                    let p1 = (p0 + chunk).min(plane);
                    let d = &mut cols[..(p1 - p0) * kp];
                    im2col(xs, geo, gi * cig, cig, w, p0..p1, x_zp, (&mut *d, kp));
                    if let Ok(a) = ArrayView2::from_shape((p1 - p0, kp), &*d) {
                        rows_gemm(a, p0, p1);
                    }
                    p0 = p1;
                }
            });
        }
    }
}

/// Runs `f` on `len` elements of this thread's reused, cache-line-aligned im2col
/// buffer (a fresh one if that is in use); the contents on entry are unspecified.
fn with_cols<T: QElem>(len: usize, f: impl FnOnce(&mut [T])) {
    use crate::kernels::pack::{Aligned, from_raw_bytes_mut};
    thread_local! {
        static COLS: core::cell::RefCell<Aligned> = core::cell::RefCell::new(Aligned::zeroed(0));
    }
    COLS.with(|c| match c.try_borrow_mut() {
        Ok(mut b) => {
            if b.len() < len {
                *b = Aligned::zeroed(len);
            }
            f(from_raw_bytes_mut(&mut b.as_mut_slice()[..len]));
        }
        Err(_) => f(from_raw_bytes_mut(Aligned::zeroed(len).as_mut_slice())),
    });
}

/// The channel-major direct kernel (see `kernels::direct`), if the weights have it and
/// the padded input fits; returns `false` (writing nothing) otherwise.
fn direct_all<T: QElem>(
    x: ArrayView4<'_, T>,
    x_zp: T,
    w: &PackedConv,
    (oh, ow): (usize, usize),
    y: &mut YView<'_>,
    opts: &GemmOptions,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let Some(aw) = &w.amx
        && amx_all(x, x_zp, w, aw, (oh, ow), y, opts)
    {
        return true;
    }
    let Some(dw) = &w.direct else {
        return false;
    };
    let (_, _, h, wd) = x.dim();
    let p = &w.params;
    let geo = DGeom {
        h,
        w: wd,
        kh: w.kh,
        kw: w.kw,
        sh: p.strides[0],
        sw: p.strides[1],
        dil: p.dilations,
        pads: p.pads,
        oh,
        ow,
    };
    if !direct::usable(dw, &geo) {
        return false;
    }
    let xstd = x.as_standard_layout();
    let Some(xs) = xstd.as_slice() else {
        return false;
    };
    thread_local! {
        // The padded input, reused between calls on this thread.
        static SCRATCH: core::cell::RefCell<Vec<u8>> = const { core::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => direct_items(x, xs, x_zp, w, dw, &geo, y, opts, &mut s),
        Err(_) => direct_items(x, xs, x_zp, w, dw, &geo, y, opts, &mut Vec::new()),
    })
}

#[allow(clippy::too_many_arguments)]
fn direct_items<T: QElem>(
    x: ArrayView4<'_, T>,
    xs: &[T],
    x_zp: T,
    w: &PackedConv,
    dw: &crate::kernels::direct::DirectW,
    geo: &DGeom,
    y: &mut YView<'_>,
    opts: &GemmOptions,
    scratch: &mut Vec<u8>,
) -> bool {
    let n = x.dim().0;
    let item = xs.len() / n.max(1);
    let threads = opts.threads();
    for ni in 0..n {
        let xi = &xs[ni * item..(ni + 1) * item];
        let ok = match y {
            YView::I32(v) => {
                let mut yn = v.index_axis_mut(Axis(0), ni);
                let Some(o) = yn.as_slice_mut() else {
                    return false;
                };
                direct::conv(w.isa, dw, geo, xi, x_zp, DOut::I32(o), threads, scratch)
            }
            YView::U8(v, q) => {
                let mut yn = v.index_axis_mut(Axis(0), ni);
                let Some(o) = yn.as_slice_mut() else {
                    return false;
                };
                let o = DOut::Q(o, &q.mult, &q.bias, q.zp, q.bounds.0, q.bounds.1);
                direct::conv(w.isa, dw, geo, xi, x_zp, o, threads, scratch)
            }
            YView::I8(v, q) => {
                let mut yn = v.index_axis_mut(Axis(0), ni);
                let Some(o) = yn.as_slice_mut() else {
                    return false;
                };
                let o = crate::kernels::pack::raw_bytes_mut(o);
                let o = DOut::Q(o, &q.mult, &q.bias, q.zp, q.bounds.0, q.bounds.1);
                direct::conv(w.isa, dw, geo, xi, x_zp, o, threads, scratch)
            }
        };
        // The first item decides; all items have the same shape.
        if !ok {
            debug_assert_eq!(ni, 0, "direct kernel refused a later batch item");
            return false;
        }
    }
    true
}

/// The `amx` implicit-GEMM convolution (see `kernels::amx::conv_nhwc`) over the batch;
/// `false` (writing nothing) if it does not apply.
#[cfg(target_arch = "x86_64")]
fn amx_all<T: QElem>(
    x: ArrayView4<'_, T>,
    x_zp: T,
    w: &PackedConv,
    aw: &crate::kernels::amx::ConvW,
    (oh, ow): (usize, usize),
    y: &mut YView<'_>,
    opts: &GemmOptions,
) -> bool {
    use crate::kernels::amx::conv_slack;
    let (_, c_in, h, wd) = x.dim();
    let p = &w.params;
    let (cig, g) = (aw.cig(), p.group);
    let [pt, pl, pb, pr] = p.pads;
    let (Some(hp), Some(wp)) = (h.checked_add(pt + pb), wd.checked_add(pl + pr)) else {
        return false;
    };
    let per_group = hp.saturating_mul(wp).saturating_mul(cig);
    let slack = conv_slack(aw, w.kw, p.dilations[1]);
    let total = per_group.saturating_mul(g).saturating_add(slack);
    // The same bound as the direct path's padded input.
    if total > 1 << 26 || c_in != g * cig {
        return false;
    }
    let za = x_zp.to_a();
    let threads = opts.threads();
    let layout = PaddedNhwc {
        groups: g,
        cig,
        hp,
        wp,
        pads: p.pads,
        len: total,
    };
    thread_local! {
        // The padded image, reused between calls on this thread.
        static IMG: core::cell::RefCell<Vec<u8>> = const { core::cell::RefCell::new(Vec::new()) };
    }
    IMG.with(|cell| {
        let mut own = Vec::new();
        let mut guard = cell.try_borrow_mut().ok();
        let img = guard.as_deref_mut().unwrap_or(&mut own);
        amx_items(x, za, w, aw, &layout, (oh, ow), y, threads, img)
    })
}

/// [`amx_all`]'s loop over the batch, with `img` the reused padded-image buffer.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn amx_items<T: QElem>(
    x: ArrayView4<'_, T>,
    za: u8,
    w: &PackedConv,
    aw: &crate::kernels::amx::ConvW,
    layout: &PaddedNhwc,
    (oh, ow): (usize, usize),
    y: &mut YView<'_>,
    threads: usize,
    img: &mut Vec<u8>,
) -> bool {
    use crate::kernels::amx::{ConvOut, conv_nhwc};
    let p = &w.params;
    let (hp, wp) = (layout.hp, layout.wp);
    let xor = if T::SIGNED { 0x80 } else { 0 };
    for ni in 0..x.dim().0 {
        let xn = x.index_axis(Axis(0), ni);
        let xstd = xn.as_standard_layout();
        let Some(src) = xstd.as_slice() else {
            return false;
        };
        let img = layout.fill(crate::kernels::pack::raw_bytes(src), za, xor, img, threads);
        let (khw, dil, sh) = ((w.kh, w.kw), p.dilations, p.strides[0]);
        let ok = match y {
            YView::I32(v) => {
                let mut yn = v.index_axis_mut(Axis(0), ni);
                let Some(o) = yn.as_slice_mut() else {
                    return false;
                };
                conv_nhwc(
                    aw,
                    img,
                    za,
                    (hp, wp),
                    khw,
                    sh,
                    dil,
                    (oh, ow),
                    ConvOut::I32(o),
                    threads,
                )
            }
            YView::U8(v, q) => {
                let mut yn = v.index_axis_mut(Axis(0), ni);
                let Some(o) = yn.as_slice_mut() else {
                    return false;
                };
                let out = ConvOut::Q {
                    out: o,
                    signed: false,
                    mult: &q.mult,
                    bias: &q.bias,
                    zp: q.zp,
                    lo: q.bounds.0,
                    hi: q.bounds.1,
                };
                conv_nhwc(aw, img, za, (hp, wp), khw, sh, dil, (oh, ow), out, threads)
            }
            YView::I8(v, q) => {
                let mut yn = v.index_axis_mut(Axis(0), ni);
                let Some(o) = yn.as_slice_mut() else {
                    return false;
                };
                let out = ConvOut::Q {
                    out: crate::kernels::pack::raw_bytes_mut(o),
                    signed: true,
                    mult: &q.mult,
                    bias: &q.bias,
                    zp: q.zp,
                    lo: q.bounds.0,
                    hi: q.bounds.1,
                };
                conv_nhwc(aw, img, za, (hp, wp), khw, sh, dil, (oh, ow), out, threads)
            }
        };
        if !ok {
            debug_assert_eq!(ni, 0, "amx convolution refused a later batch item");
            return false;
        }
    }
    true
}

#[cfg(target_arch = "x86_64")]
/// The geometry of a zero-point-padded NHWC image split by group,
/// `[group][hp][wp][cig]` bytes, followed by readable slack up to `len` bytes.
struct PaddedNhwc {
    groups: usize,
    cig: usize,
    hp: usize,
    wp: usize,
    /// Top, left, bottom and right padding.
    pads: [usize; 4],
    len: usize,
}

#[cfg(target_arch = "x86_64")]
impl PaddedNhwc {
    /// Writes one batch item `src` (`[groups·cig, h, w]` bytes, `h = hp − pt − pb`,
    /// `w = wp − pl − pr`) into `img` in this layout, each byte `⊕ xor`; padding and
    /// slack hold `za`. `img` is a reused buffer, grown when too small; every byte of
    /// the image is written, so what it held before does not matter. Rows are split over
    /// `threads` tasks when the image is large. Returns the image: `len` bytes of `img`
    /// starting at a 64-byte boundary, so that no row of 64 channels straddles two
    /// cache lines (a split line costs the tile loads up to twice the time).
    fn fill<'i>(
        &self,
        src: &[u8],
        za: u8,
        xor: u8,
        img: &'i mut Vec<u8>,
        threads: usize,
    ) -> &'i [u8] {
        let [pt, pl, pb, pr] = self.pads;
        let (cig, wp) = (self.cig, self.wp);
        let (h, w) = (self.hp - pt - pb, wp - pl - pr);
        let row = wp * cig;
        let body = self.groups * self.hp * row;
        debug_assert!(src.len() == self.groups * cig * h * w && body <= self.len);
        // The buffer only grows: every byte of the image is written below.
        if img.len() < self.len + 64 {
            *img = vec![za; self.len + 64];
        }
        let at = img.as_ptr().align_offset(64).min(64);
        let (rows, slack) = img[at..at + self.len].split_at_mut(body);
        slack.fill(za);
        // Row `r` of the whole buffer is row `r % hp` of group `r / hp`.
        let one_row = |r: usize, d: &mut [u8]| {
            let (gi, yp) = (r / self.hp, r % self.hp);
            if yp < pt || yp >= pt + h {
                d.fill(za);
                return;
            }
            d[..pl * cig].fill(za);
            d[(pl + w) * cig..].fill(za);
            let yy = yp - pt;
            let chans = &src[gi * cig * h * w..][..cig * h * w];
            transpose_row(
                chans,
                h * w,
                yy * w,
                w,
                cig,
                xor,
                &mut d[pl * cig..(pl + w) * cig],
            );
        };
        let tasks = if body >= 1 << 16 { threads } else { 1 };
        crate::kernels::driver::par_rows(rows, row, tasks, one_row);
        &img[at..at + self.len]
    }
}

#[cfg(target_arch = "x86_64")]
/// `dst[x·c + ch] = src[ch·stride + at + x] ⊕ xor` for `x < w`, `ch < c`: one image row of
/// `c` channel planes (`stride` bytes apart) transposed to pixel-major order.
fn transpose_row(
    src: &[u8],
    stride: usize,
    at: usize,
    w: usize,
    c: usize,
    xor: u8,
    dst: &mut [u8],
) {
    let mask = u64::from_ne_bytes([xor; 8]);
    let (c8, w8) = (c / 8 * 8, w / 8 * 8);
    for x in (0..w8).step_by(8) {
        for ch in (0..c8).step_by(8) {
            let mut m = [0u64; 8];
            for (r, v) in m.iter_mut().enumerate() {
                let o = (ch + r) * stride + at + x;
                *v = u64::from_le_bytes(src[o..o + 8].try_into().unwrap_or([0; 8]));
            }
            for (j, v) in transpose8(m).iter().enumerate() {
                let o = (x + j) * c + ch;
                dst[o..o + 8].copy_from_slice(&(v ^ mask).to_le_bytes());
            }
        }
    }
    // Edges: channels beyond a multiple of 8, pixels beyond a multiple of 8.
    for ch in 0..c {
        let from = if ch < c8 { w8 } else { 0 };
        for x in from..w {
            dst[x * c + ch] = src[ch * stride + at + x] ^ xor;
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

/// `y` (`[pixels, channels]`) cut into `parts` runs of consecutive pixels, with their
/// pixel ranges.
fn split_rows<E>(
    mut y: ArrayViewMut2<'_, E>,
    parts: usize,
) -> Vec<(core::ops::Range<usize>, ArrayViewMut2<'_, E>)> {
    let n = y.nrows();
    let mut out = Vec::with_capacity(parts);
    let mut p0 = 0;
    for i in 1..=parts {
        let p1 = n * i / parts;
        let (head, tail) = y.split_at(Axis(0), p1 - p0);
        out.push((p0..p1, head));
        y = tail;
        p0 = p1;
    }
    out
}

/// im2col rows `[pixel, (kh, kw, c)]` of one group and a range of output pixels from an
/// NHWC image, row `i` at `dst[i·ld..]`; out-of-image taps are the input zero point.
#[allow(clippy::too_many_arguments)]
fn im2col<T: QElem>(
    xs: &[T],
    ((h, wd, c_in), (_oh, ow)): ((usize, usize, usize), (usize, usize)),
    c0: usize,
    cig: usize,
    w: &PackedConv,
    pixels: core::ops::Range<usize>,
    zp: T,
    (dst, ld): (&mut [T], usize),
) {
    let p = &w.params;
    let [sh, sw] = p.strides;
    let [dh, dw] = p.dilations;
    let k = w.kh * w.kw * cig;
    // Columns past `k` (rows padded to the kernel's length): the element whose offset
    // form is 0, which adds nothing to row sums.
    let pad = T::from_i32_clamped(if T::SIGNED { -128 } else { 0 });
    // One group and no horizontal dilation: a kernel row's taps are one contiguous run
    // of `kw · c_in` bytes of the NHWC image (a few bytes per tap otherwise, as in a
    // 3-channel stem convolution), copied at once with its out-of-image ends filled.
    let runs = dw == 1 && cig == c_in;
    for (i, px) in pixels.enumerate() {
        let (oy, ox) = (px / ow, px % ow);
        {
            let (row, tail) = dst[i * ld..][..ld].split_at_mut(k);
            fill_small(tail, pad);
            let iy0 = (oy * sh) as isize - p.pads[0] as isize;
            let ix0 = (ox * sw) as isize - p.pads[1] as isize;
            if runs
                && w.kw * cig > 0
                && iy0 >= 0
                && ix0 >= 0
                && iy0 as usize + w.kh.saturating_sub(1) * dh < h
                && ix0 as usize + w.kw <= wd
            {
                // The whole window inside the image: one run per kernel row.
                let run = w.kw * cig;
                for (ky, d) in row.chunks_exact_mut(run).enumerate() {
                    let src = ((iy0 as usize + ky * dh) * wd + ix0 as usize) * c_in;
                    copy_small(d, &xs[src..src + run]);
                }
                continue;
            }
            for ky in 0..w.kh {
                let iy = (oy * sh + ky * dh) as isize - p.pads[0] as isize;
                if runs {
                    let d = &mut row[ky * w.kw * cig..][..w.kw * cig];
                    if iy < 0 || iy >= h as isize {
                        fill_small(d, zp);
                        continue;
                    }
                    let ix0 = (ox * sw) as isize - p.pads[1] as isize;
                    // Taps [a, b) of the row fall inside the image.
                    let a = (-ix0).clamp(0, w.kw as isize) as usize;
                    let b = (wd as isize - ix0).clamp(a as isize, w.kw as isize) as usize;
                    fill_small(&mut d[..a * cig], zp);
                    fill_small(&mut d[b * cig..], zp);
                    if b > a {
                        let src = (iy as usize * wd + (ix0 + a as isize) as usize) * c_in;
                        copy_small(&mut d[a * cig..b * cig], &xs[src..src + (b - a) * cig]);
                    }
                    continue;
                }
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

/// Transposes one `[C, H, W]` image into `[H·W, C]`: 8×8 byte blocks with a
/// word-level transpose, scalar edges.
fn to_nhwc<T: QElem>(x: ndarray::ArrayView3<'_, T>, out: &mut Array2<T>) {
    let (c, h, w) = x.dim();
    let hw = h * w;
    let xstd = x.as_standard_layout();
    let (Some(src), Some(dst)) = (xstd.as_slice(), out.as_slice_mut()) else {
        return;
    };
    let src = crate::kernels::pack::raw_bytes(src);
    let dst = crate::kernels::pack::raw_bytes_mut(dst);
    if c == 3 && src.len() == 3 * hw && dst.len() == 3 * hw {
        // A 3-channel (image) input: gathered pixel by pixel, without index arithmetic.
        let (r, rest) = src.split_at(hw);
        let (g, b) = rest.split_at(hw);
        for (((d, &r), &g), &b) in dst.chunks_exact_mut(3).zip(r).zip(g).zip(b) {
            d.copy_from_slice(&[r, g, b]);
        }
        return;
    }
    let (c8, p8) = (c / 8 * 8, hw / 8 * 8);
    for p in (0..p8).step_by(8) {
        for ch in (0..c8).step_by(8) {
            let mut m = [0u64; 8];
            for (r, v) in m.iter_mut().enumerate() {
                let o = (ch + r) * hw + p;
                *v = u64::from_le_bytes(src[o..o + 8].try_into().unwrap_or([0; 8]));
            }
            let m = transpose8(m);
            for (j, v) in m.iter().enumerate() {
                let o = (p + j) * c + ch;
                dst[o..o + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    // Edges: channels beyond a multiple of 8, pixels beyond a multiple of 8.
    for ci in 0..c {
        let from = if ci < c8 { p8 } else { 0 };
        for px in from..hw {
            dst[px * c + ci] = src[ci * hw + px];
        }
    }
}

/// Transposes an 8×8 byte matrix held as 8 little-endian words (word r, byte b).
fn transpose8(mut x: [u64; 8]) -> [u64; 8] {
    let mut swap = |a: usize, b: usize, sh: u32, mask: u64| {
        let t = ((x[a] >> sh) ^ x[b]) & mask;
        x[a] ^= t << sh;
        x[b] ^= t;
    };
    for r in 0..4 {
        swap(r, r + 4, 32, 0x0000_0000_FFFF_FFFF);
    }
    for r in [0, 1, 4, 5] {
        swap(r, r + 2, 16, 0x0000_FFFF_0000_FFFF);
    }
    for r in [0, 2, 4, 6] {
        swap(r, r + 1, 8, 0x00FF_00FF_00FF_00FF);
    }
    x
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

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::PaddedNhwc;
    use proptest::prelude::*;

    proptest! {
        /// The padded grouped NHWC image against a direct index computation, written
        /// twice into one reused buffer (another geometry first, so stale bytes are
        /// there to be caught).
        #[test]
        fn padded_nhwc_matches_the_definition(
            groups in 1usize..3,
            cig in prop::sample::select(vec![1usize, 3, 8, 16, 64]),
            h in 1usize..12,
            w in 1usize..21,
            pads in prop::array::uniform4(0usize..3),
            slack in 0usize..100,
            za: u8,
            signed: bool,
            threads in 1usize..3,
            seed: u64,
        ) {
            let [pt, pl, pb, pr] = pads;
            let (hp, wp) = (h + pt + pb, w + pl + pr);
            let c = groups * cig;
            let src: Vec<u8> = (0..c * h * w)
                .map(|i| {
                    let v = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    (v.wrapping_mul(6_364_136_223_846_793_005) >> 56) as u8
                })
                .collect();
            let xor = if signed { 0x80 } else { 0 };
            let layout = PaddedNhwc { groups, cig, hp, wp, pads, len: groups * hp * wp * cig + slack };
            let mut img = Vec::new();
            // A different geometry first, with other bytes.
            let other = PaddedNhwc { groups: 1, cig: 2, hp: 3, wp: 3, pads: [1, 1, 1, 1], len: layout.len + 300 };
            other.fill(&[0x5a; 2], za.wrapping_add(1), 0, &mut img, 1);
            let got = layout.fill(&src, za, xor, &mut img, threads);
            prop_assert_eq!(got.as_ptr() as usize % 64, 0);
            prop_assert_eq!(got.len(), layout.len);
            for (i, &v) in got.iter().enumerate() {
                let want = if i >= groups * hp * wp * cig {
                    za
                } else {
                    let (g, r) = (i / (hp * wp * cig), i % (hp * wp * cig));
                    let (y, x, ch) = (r / (wp * cig), r / cig % wp, r % cig);
                    if y < pt || y >= pt + h || x < pl || x >= pl + w {
                        za
                    } else {
                        src[(g * cig + ch) * h * w + (y - pt) * w + x - pl] ^ xor
                    }
                };
                prop_assert_eq!(v, want, "byte {}", i);
            }
        }
    }
}

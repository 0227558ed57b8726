//! Direct 2-D depthwise convolution of one plane (one input channel, one filter).
//!
//! The padded input plane is split into `sh × sw` stride phases (phase `(a, b)` holds
//! padded rows `a, a+sh, …` and columns `b, b+sw, …`), after which every filter tap is a
//! constant shift of one phase plane: the whole output plane (computed `wq` columns
//! wide, the extra columns discarded) accumulates `w·phase[shift..]` in one long, flat,
//! vectorisable pass per tap, whatever the stride, dilation or padding. The portable
//! code is compiled once per ISA with the matching target features (AVX-512F, AVX2+FMA;
//! NEON is aarch64's baseline), so the loops are vectorised by the compiler.
//!
//! With AVX-512 or AVX2, dilation-1 planes with a column stride of 1 or 2 (every
//! depthwise layer of the MobileNet/EfficientNet/ShuffleNet family) skip the phase
//! planes and are read straight from the input, the padding read as zero through masked
//! loads; 3×3 and 5×5 kernels load each input row once for all the output rows that
//! read it (`depthwise/x86.rs`). Same operations, same order: the results are bit-identical to
//! the phase-plane path, NaN/±Inf included.
#![allow(unsafe_code)]

use super::Isa;

#[cfg(target_arch = "x86_64")]
mod x86;

/// The geometry of a 2-D depthwise convolution (a 1-D one has `h = oh = kh = 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepthwiseGeo {
    /// Input height and width.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride along the height (≥ 1).
    pub sh: usize,
    /// Stride along the width (≥ 1).
    pub sw: usize,
    /// Dilation along the height (≥ 1).
    pub dh: usize,
    /// Dilation along the width (≥ 1).
    pub dw: usize,
    /// Zero rows added above the input.
    pub pt: usize,
    /// Zero columns added left of the input.
    pub pl: usize,
}

impl DepthwiseGeo {
    /// `(wq, plane_len, flat_len)`: phase-plane row pitch, phase-plane length, and the
    /// flat accumulator length `oh·wq`.
    fn layout(&self) -> (usize, usize, usize) {
        let hp =
            (self.pt + self.h).max((self.oh.max(1) - 1) * self.sh + (self.kh - 1) * self.dh + 1);
        let wp =
            (self.pl + self.w).max((self.ow.max(1) - 1) * self.sw + (self.kw - 1) * self.dw + 1);
        let (hq, wq) = (hp.div_ceil(self.sh), wp.div_ceil(self.sw));
        let flat = self.oh * wq;
        let shift_max =
            ((self.kh - 1) * self.dh / self.sh) * wq + (self.kw - 1) * self.dw / self.sw;
        (wq, (hq * wq).max(flat + shift_max), flat)
    }

    /// Whether the geometry is usable (positive strides, dilations and kernel).
    fn valid(&self) -> bool {
        self.sh > 0 && self.sw > 0 && self.dh > 0 && self.dw > 0 && self.kh > 0 && self.kw > 0
    }
}

/// Reusable working memory of [`depthwise_plane`]: the zero-padded phase planes and the
/// accumulator. While the geometry stays the same, the zero padding is kept and only
/// the input positions are rewritten per plane.
#[derive(Debug, Default, Clone)]
pub struct DepthwiseScratch {
    buf: Vec<f32>,
    geo: Option<DepthwiseGeo>,
    /// `(wq, plen, flat)` of `geo`.
    lay: (usize, usize, usize),
    /// Start of each tap's shifted run in the phase planes, row-major tap order.
    offs: Vec<usize>,
    /// Per column phase `b` with input columns: `(b, jlo, jhi, c0)`, phase columns
    /// `jlo..jhi` reading input columns `c0, c0 + sw, …` (computed once: divisions per
    /// row dominated small planes).
    cols: Vec<(usize, usize, usize, usize)>,
}

/// `out = conv(x, w) + bias` for one plane: `x` is `h × w`, `w` is `kh × kw`, `out` is
/// `oh × ow` (all row-major). `scratch` is reused between calls.
///
/// Accumulates in `f32`, taps in row-major kernel order, the bias first.
///
/// # Panics
/// Never for consistent inputs; slices shorter than the geometry says panic (they are
/// sized by the caller from the same geometry).
pub fn depthwise_plane(
    isa: Isa,
    x: &[f32],
    w: &[f32],
    bias: f32,
    g: &DepthwiseGeo,
    scratch: &mut DepthwiseScratch,
    out: &mut [f32],
) {
    assert!(
        g.valid(),
        "depthwise geometry with a zero stride, dilation or kernel"
    );
    assert!(x.len() >= g.h * g.w && w.len() >= g.kh * g.kw && out.len() >= g.oh * g.ow);
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if isa.is_available() => {
            // SAFETY: the CPU supports AVX-512F (checked just above); the slices hold the
            // geometry's sizes (asserted above).
            unsafe { plane_avx512(x, w, bias, g, scratch, out) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 if Isa::Avx2.is_available() => {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above); the slices hold
            // the geometry's sizes (asserted above).
            unsafe { plane_avx2(x, w, bias, g, scratch, out) }
        }
        _ => plane(x, w, bias, g, scratch, out, false),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn plane_avx512(
    x: &[f32],
    w: &[f32],
    bias: f32,
    g: &DepthwiseGeo,
    scratch: &mut DepthwiseScratch,
    out: &mut [f32],
) {
    if x86::suits(g) {
        // SAFETY: AVX-512F is enabled here; the slices were checked against `g` by
        // `depthwise_plane`.
        unsafe { x86::plane_avx512(x, w, bias, g, out) };
        return;
    }
    plane(x, w, bias, g, scratch, out, true)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_avx2(
    x: &[f32],
    w: &[f32],
    bias: f32,
    g: &DepthwiseGeo,
    scratch: &mut DepthwiseScratch,
    out: &mut [f32],
) {
    if x86::suits(g) {
        // SAFETY: AVX2 is enabled here; the slices were checked against `g` by
        // `depthwise_plane`.
        unsafe { x86::plane_avx2(x, w, bias, g, out) };
        return;
    }
    plane(x, w, bias, g, scratch, out, false)
}

/// Outputs accumulated in registers at a time.
#[cfg(target_arch = "x86_64")]
const CH: usize = 64;

/// `acc[p] = bias + Σ_taps w·ph[off + p]` for `p < done`, taps in order, as separate
/// multiply and add (the same rounding as the portable loop), [`CH`] outputs held in
/// four registers across all taps, then 16 at a time, then a masked remainder.
///
/// # Safety
/// The CPU must support AVX-512F; `ph[off + p]` must be in bounds for every tap and
/// `p < done`, and `acc` must hold `done` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn taps_avx512(ph: &[f32], taps: &[(usize, f32)], bias: f32, acc: &mut [f32], done: usize) {
    use std::arch::x86_64::*;
    let vb = _mm512_set1_ps(bias);
    let full = done / CH * CH;
    for c0 in (0..full).step_by(CH) {
        let mut r = [vb; 4];
        for &(off, wv) in taps {
            let w = _mm512_set1_ps(wv);
            // SAFETY: off + c0 + CH ≤ off + done is in bounds (caller).
            unsafe {
                let p = ph.as_ptr().add(off + c0);
                for (q, rq) in r.iter_mut().enumerate() {
                    *rq = _mm512_add_ps(*rq, _mm512_mul_ps(w, _mm512_loadu_ps(p.add(16 * q))));
                }
            }
        }
        for (q, rq) in r.iter().enumerate() {
            // SAFETY: c0 + CH ≤ done ≤ acc.len() (caller).
            unsafe { _mm512_storeu_ps(acc.as_mut_ptr().add(c0 + 16 * q), *rq) };
        }
    }
    for c0 in (full..done).step_by(16) {
        let len = (done - c0).min(16);
        let mask: __mmask16 = if len == 16 {
            0xffff
        } else {
            ((1u32 << len) - 1) as u16
        };
        let mut r = vb;
        for &(off, wv) in taps {
            // SAFETY: lanes < len read off + c0 + len - 1 < off + done (caller); masked-off
            // lanes are not accessed.
            let v = unsafe { _mm512_maskz_loadu_ps(mask, ph.as_ptr().add(off + c0)) };
            r = _mm512_add_ps(r, _mm512_mul_ps(_mm512_set1_ps(wv), v));
        }
        // SAFETY: lanes < len write below done ≤ acc.len() (caller).
        unsafe { _mm512_mask_storeu_ps(acc.as_mut_ptr().add(c0), mask, r) };
    }
}

/// Outputs per register block of the portable tap loop (four AVX2 or eight NEON
/// registers).
const BLOCK: usize = 32;

/// Kernels up to 7×7 take the register-blocked AVX-512 loop.
#[cfg(target_arch = "x86_64")]
const MAX_TAPS: usize = 49;

#[inline(always)]
fn plane(
    x: &[f32],
    wts: &[f32],
    bias: f32,
    g: &DepthwiseGeo,
    scratch: &mut DepthwiseScratch,
    out: &mut [f32],
    avx512: bool,
) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = avx512;
    if scratch.geo != Some(*g) {
        let (wq, plen, flat) = g.layout();
        scratch.buf.clear();
        scratch.buf.resize(g.sh * g.sw * plen + flat, 0.0);
        scratch.geo = Some(*g);
        scratch.lay = (wq, plen, flat);
        scratch.offs.clear();
        for kh in 0..g.kh {
            let (a, rs) = ((kh * g.dh) % g.sh, (kh * g.dh) / g.sh);
            for kw in 0..g.kw {
                let (b, cs) = ((kw * g.dw) % g.sw, (kw * g.dw) / g.sw);
                scratch.offs.push((a * g.sw + b) * plen + rs * wq + cs);
            }
        }
        scratch.cols.clear();
        for b in 0..g.sw {
            // Columns j of phase b read input column j·sw + b - pl: valid for j in jlo..jhi.
            let jlo = g.pl.saturating_sub(b).div_ceil(g.sw);
            let jhi = if g.pl + g.w > b {
                (g.pl + g.w - b).div_ceil(g.sw).min(wq)
            } else {
                0
            };
            if jlo < jhi {
                scratch.cols.push((b, jlo, jhi, jlo * g.sw + b - g.pl));
            }
        }
    }
    let (wq, plen, flat) = scratch.lay;
    let phases = g.sh * g.sw;
    let (ph, acc) = scratch.buf.split_at_mut(phases * plen);
    // Phase planes of the zero-padded input: only input positions are written (the
    // padding is zero since the buffer was laid out for this geometry).
    // Padded row r = ih + pt is row i = r / sh of phase a = r % sh, stepped along.
    let (mut a, mut i) = (g.pt % g.sh, g.pt / g.sh);
    for src in x[..g.h * g.w].chunks_exact(g.w) {
        for &(b, jlo, jhi, c0) in &scratch.cols {
            let row = &mut ph[(a * g.sw + b) * plen + i * wq..][..wq];
            if g.sw == 1 {
                copy_row(&mut row[jlo..jhi], &src[c0..c0 + jhi - jlo], avx512);
            } else {
                gather(&mut row[jlo..jhi], &src[c0..], g.sw);
            }
        }
        a += 1;
        if a == g.sh {
            a = 0;
            i += 1;
        }
    }
    let offs = &scratch.offs;
    let tap = |t: usize| (offs[t], wts[t]);
    let ntaps = g.kh * g.kw;
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if ntaps <= MAX_TAPS && avx512 && Isa::Avx512.is_available() {
        let mut taps = [(0usize, 0.0f32); MAX_TAPS];
        for (t, slot) in taps[..ntaps].iter_mut().enumerate() {
            *slot = tap(t);
        }
        let taps = &taps[..ntaps];
        done = flat;
        assert!(taps.iter().all(|&(off, _)| off + flat <= ph.len()) && acc.len() >= flat);
        // SAFETY: AVX-512F is available (checked above); every tap run
        // `off..off + flat` lies inside `ph` and `acc` holds `flat` (asserted above),
        // and only the first `done = flat` positions are touched.
        unsafe { taps_avx512(ph, taps, bias, acc, done) };
    }
    // Without AVX-512: blocks of `BLOCK` outputs accumulated over every tap in
    // registers (the compiler vectorises the fixed-size block for the ISA the function
    // is compiled for), then one pass per tap over the remainder; bias first either way.
    let blocked = done + (flat - done) / BLOCK * BLOCK;
    for c0 in (done..blocked).step_by(BLOCK) {
        let mut r = [bias; BLOCK];
        for t in 0..ntaps {
            let (off, wv) = tap(t);
            for (d, &s) in r.iter_mut().zip(&ph[off + c0..][..BLOCK]) {
                *d += wv * s;
            }
        }
        acc[c0..c0 + BLOCK].copy_from_slice(&r);
    }
    done = blocked;
    let rest = &mut acc[done..flat];
    rest.fill(bias);
    for t in 0..ntaps {
        let (off, wv) = tap(t);
        for (d, &s) in rest.iter_mut().zip(&ph[off + done..off + flat]) {
            *d += wv * s;
        }
    }
    if g.ow == 0 {
        return;
    }
    for (orow, arow) in out[..g.oh * g.ow]
        .chunks_exact_mut(g.ow)
        .zip(acc.chunks_exact(wq))
    {
        copy_row(orow, &arow[..g.ow], avx512);
    }
}

/// `dst.copy_from_slice(src)` for the short rows of small planes: with AVX-512, 16
/// floats per masked move instead of a `memcpy` call per row.
#[inline(always)]
fn copy_row(dst: &mut [f32], src: &[f32], avx512: bool) {
    assert_eq!(dst.len(), src.len());
    #[cfg(target_arch = "x86_64")]
    if avx512 && Isa::Avx512.is_available() {
        // SAFETY: AVX-512F is available (checked); both slices hold dst.len() floats.
        unsafe { copy_avx512(dst, src) };
        return;
    }
    let _ = avx512;
    dst.copy_from_slice(src);
}

/// # Safety
/// The CPU must support AVX-512F; `src.len() >= dst.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn copy_avx512(dst: &mut [f32], src: &[f32]) {
    use std::arch::x86_64::*;
    let n = dst.len();
    let mut i = 0;
    while i < n {
        let len = (n - i).min(16);
        let mask: __mmask16 = if len == 16 {
            0xffff
        } else {
            ((1u32 << len) - 1) as u16
        };
        // SAFETY: lanes < len stay below n in both slices; masked-off lanes are not
        // accessed.
        unsafe {
            let v = _mm512_maskz_loadu_ps(mask, src.as_ptr().add(i));
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(i), mask, v);
        }
        i += 16;
    }
}

/// `dst[j] = src[j·step]` for every `j` (`src` must be long enough), with the common
/// steps 1 and 2 in forms the compiler vectorises.
#[inline(always)]
pub fn gather(dst: &mut [f32], src: &[f32], step: usize) {
    let n = dst.len();
    if n == 0 {
        return;
    }
    match step {
        1 => dst.copy_from_slice(&src[..n]),
        2 => {
            // Pairs (src[2j], src[2j+1]) for j < n-1, then the last element alone (its
            // odd partner may lie past the end of `src`).
            let (body, last) = dst.split_at_mut(n - 1);
            for (d, pair) in body.iter_mut().zip(src[..2 * (n - 1)].chunks_exact(2)) {
                *d = pair[0];
            }
            last[0] = src[2 * (n - 1)];
        }
        _ => {
            for (d, &s) in dst.iter_mut().zip(src.iter().step_by(step)) {
                *d = s;
            }
        }
    }
}

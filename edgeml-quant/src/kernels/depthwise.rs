//! Direct depthwise convolution (one filter per channel), vectorized along the output
//! row; no im2col. The same Rust code is compiled per ISA with its target features, so
//! every path computes bit-identical integers.
#![allow(unsafe_code)]

use super::Isa;
use super::driver::quant_row;

/// Geometry of one depthwise plane.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DwGeom {
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) strides: [usize; 2],
    pub(crate) dilations: [usize; 2],
    /// Top, left, bottom, right.
    pub(crate) pads: [usize; 4],
    pub(crate) oh: usize,
    pub(crate) ow: usize,
}

/// Where one channel's output goes, with its epilogue.
pub(crate) enum DwOut<'a> {
    I32(&'a mut [i32]),
    U8(&'a mut [u8], DwQuant),
    I8(&'a mut [i8], DwQuant),
}

/// Requantization of one channel (see [`quant_row`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DwQuant {
    pub(crate) mult: f32,
    pub(crate) bias: i32,
    pub(crate) zp: i32,
    pub(crate) lo: f32,
    pub(crate) hi: f32,
}

/// Scratch reused across channels (allocated once per call).
pub(crate) struct DwScratch {
    plane: Vec<i16>,
    /// The padded plane split into even and odd columns (stride-2 rows read them
    /// contiguously): row `r`, phase `p` starts at `(2r + p) · ⌈wp/2⌉`.
    phase: Vec<i16>,
    acc: Vec<i32>,
    /// The padded plane as bytes (padding = the input zero point), with room for
    /// 64-byte loads past its end: the AVX-512 VNNI path reads it ([`vnni512`]).
    #[cfg(target_arch = "x86_64")]
    bytes: Vec<u8>,
    /// The padding value `bytes` was filled with.
    #[cfg(target_arch = "x86_64")]
    bytes_pad: u8,
    /// The padded plane as i16 (`x − zx`, padding 0) with room for 32-byte loads past
    /// its end: the AVX2 path reads it ([`madd256`]).
    #[cfg(target_arch = "x86_64")]
    wide: Vec<i16>,
}

impl DwScratch {
    pub(crate) fn new(g: &DwGeom) -> Self {
        let hp = g.h + g.pads[0] + g.pads[2];
        let wp = g.w + g.pads[1] + g.pads[3];
        let phased = g.strides[1] == 2 && g.dilations[1] == 1;
        DwScratch {
            plane: vec![0; if phased { 0 } else { hp * wp }],
            phase: vec![0; if phased { hp * 2 * wp.div_ceil(2) } else { 0 }],
            acc: vec![0; g.ow],
            #[cfg(target_arch = "x86_64")]
            bytes: Vec::new(),
            #[cfg(target_arch = "x86_64")]
            bytes_pad: 0,
            #[cfg(target_arch = "x86_64")]
            wide: Vec::new(),
        }
    }
}

/// Copies the `h×w` channel `x` into the interior of a padded plane whose rows are `wp`
/// entries long, mapping each value by `map`. The borders are left as they are: every
/// channel of a call has the same geometry and padding value, so they are filled once,
/// when the plane is allocated.
#[inline(always)]
fn copy_interior<T>(plane: &mut [T], x: &[u8], g: &DwGeom, wp: usize, map: impl Fn(u8) -> T) {
    for (i, row) in x.chunks_exact(g.w.max(1)).enumerate().take(g.h) {
        let dst = &mut plane[(i + g.pads[0]) * wp + g.pads[1]..][..g.w];
        for (d, &v) in dst.iter_mut().zip(row) {
            *d = map(v);
        }
    }
}

/// Outputs per register block of the stride-1 loop.
const CH: usize = 16;

/// One channel: `x` (`h·w` values already mapped to `x − zx` by `map`), `wt` the
/// `kh·kw` filter minus its zero point.
#[inline(always)]
fn channel_impl(
    g: &DwGeom,
    x: &[u8],
    xsub: i16,
    wt: &[i32],
    s: &mut DwScratch,
    out: &mut DwOut<'_>,
) {
    if g.kh == 3 && g.kw == 3 {
        channel_k::<3>(g, x, xsub, wt, s, out);
    } else {
        channel_k::<0>(g, x, xsub, wt, s, out);
    }
}

/// [`channel_impl`] with the kernel size `K×K` known at compile time (0: read from `g`),
/// so the 3×3 taps unroll with their weights in registers.
#[inline(always)]
fn channel_k<const K: usize>(
    g: &DwGeom,
    x: &[u8],
    xsub: i16,
    wt: &[i32],
    s: &mut DwScratch,
    out: &mut DwOut<'_>,
) {
    let wp = g.w + g.pads[1] + g.pads[3];
    let [sh, sw] = g.strides;
    let [dh, dw] = g.dilations;
    let (kh, kw) = if K > 0 { (K, K) } else { (g.kh, g.kw) };
    let wh = wp.div_ceil(2);
    let phased = sw == 2 && dw == 1 && !s.phase.is_empty();
    if phased {
        // Padded column pj = j + left pad goes to entry pj/2 of phase pj mod 2.
        s.phase.fill(0);
        let p0 = g.pads[1];
        for (i, row) in x.chunks_exact(g.w.max(1)).enumerate().take(g.h) {
            let r = i + g.pads[0];
            let (even, odd) = s.phase[2 * r * wh..(2 * r + 2) * wh].split_at_mut(wh);
            // Pairs (padded even, padded odd) de-interleave in one pass.
            let j0 = p0 & 1; // first input column whose padded column is even
            if j0 == 1 {
                odd[p0 / 2] = i16::from(row[0]) - xsub;
            }
            // j0 + p0 is even, so a pair's even and odd entries share one index.
            let e0 = (j0 + p0) / 2;
            let pairs = row[j0.min(row.len())..].chunks_exact(2);
            let rest = pairs.remainder();
            let n = pairs.len();
            for ((e, o), p) in even[e0..e0 + n]
                .iter_mut()
                .zip(&mut odd[e0..e0 + n])
                .zip(pairs)
            {
                *e = i16::from(p[0]) - xsub;
                *o = i16::from(p[1]) - xsub;
            }
            if let [v] = rest {
                even[e0 + n] = i16::from(*v) - xsub;
            }
        }
    } else {
        // The plane was zeroed when allocated (padding is 0 after subtracting `xsub`).
        copy_interior(&mut s.plane, x, g, wp, |v| i16::from(v) - xsub);
    }
    // Register-blocked loops: N outputs stay in one vector over all taps; `$off` gives
    // where the N inputs of tap (ky, kx) for outputs ox.. start in `$buf`.
    macro_rules! blocked {
        ($n:expr, $buf:expr, $acc:expr, $ox:expr, $off:expr) => {
            while $ox + $n <= g.ow {
                let mut a = [0i32; $n];
                for ky in 0..kh {
                    for kx in 0..kw {
                        let wv = wt[ky * kw + kx];
                        let src = &$buf[$off(ky, kx, $ox)..][..$n];
                        for (a, &v) in a.iter_mut().zip(src) {
                            *a = a.wrapping_add(i32::from(v) * wv);
                        }
                    }
                }
                $acc[$ox..$ox + $n].copy_from_slice(&a);
                $ox += $n;
            }
        };
    }
    for oy in 0..g.oh {
        let acc = &mut s.acc[..g.ow];
        let mut ox = 0;
        if phased {
            // Stride 2: tap kx of output ox reads column 2·ox + kx, i.e. entry
            // ox + kx/2 of phase kx mod 2, so N outputs are N consecutive entries.
            let off = |ky: usize, kx: usize, ox: usize| {
                (2 * (oy * sh + ky * dh) + (kx & 1)) * wh + (kx >> 1) + ox
            };
            blocked!(CH, s.phase, acc, ox, off);
            blocked!(CH / 2, s.phase, acc, ox, off);
        } else if sw == 1 {
            while ox + CH <= g.ow {
                let mut a = [0i32; CH];
                for ky in 0..kh {
                    let prow = &s.plane[(oy * sh + ky * dh) * wp..][..wp];
                    for kx in 0..kw {
                        let wv = wt[ky * kw + kx];
                        let src = &prow[kx * dw + ox..][..CH];
                        for (a, &v) in a.iter_mut().zip(src) {
                            *a = a.wrapping_add(i32::from(v) * wv);
                        }
                    }
                }
                acc[ox..ox + CH].copy_from_slice(&a);
                ox += CH;
            }
            let off = |ky: usize, kx: usize, ox: usize| (oy * sh + ky * dh) * wp + kx * dw + ox;
            blocked!(CH / 2, s.plane, acc, ox, off);
        }
        for (o, a) in acc.iter_mut().enumerate().skip(ox) {
            let mut t = 0i32;
            for ky in 0..kh {
                let r = oy * sh + ky * dh;
                for kx in 0..kw {
                    let v = if phased {
                        s.phase[(2 * r + (kx & 1)) * wh + (kx >> 1) + o]
                    } else {
                        s.plane[r * wp + kx * dw + o * sw]
                    };
                    t = t.wrapping_add(i32::from(v) * wt[ky * kw + kx]);
                }
            }
            *a = t;
        }
        finish_row(acc, out, oy * g.ow);
    }
}

/// Writes one output row's sums `acc` at `o0`, requantized when the output is 8-bit.
#[inline(always)]
fn finish_row(acc: &mut [i32], out: &mut DwOut<'_>, o0: usize) {
    let n = acc.len();
    match out {
        DwOut::I32(y) => y[o0..o0 + n].copy_from_slice(acc),
        DwOut::U8(y, q) => {
            quant_row(acc, &[q.mult], &[q.bias], q.zp, q.lo, q.hi, usize::MAX);
            for (d, &v) in y[o0..o0 + n].iter_mut().zip(acc.iter()) {
                *d = v as u8;
            }
        }
        DwOut::I8(y, q) => {
            quant_row(acc, &[q.mult], &[q.bias], q.zp, q.lo, q.hi, usize::MAX);
            for (d, &v) in y[o0..o0 + n].iter_mut().zip(acc.iter()) {
                *d = v as i8;
            }
        }
    }
}

/// Depthwise rows on `vpdpbusd` (AVX-512 VNNI): for 16 outputs of one row and one
/// kernel row, the input bytes are shuffled into 16 windows of 4 consecutive taps (one
/// dword per output; stride 1 or 2) and multiplied by the kernel row's ≤ 4 weights in
/// one instruction, so a 3×3 filter takes three `vpdpbusd` per 16 outputs instead of
/// nine 32-bit multiplies. Works on the raw u8 codes with the plane padded by the
/// input zero point `zx`, then subtracts `zx·Σw`: the same integers as
/// [`channel_impl`], so the paths stay bit-identical.
#[cfg(target_arch = "x86_64")]
mod vnni512 {
    use super::super::x86::requant16;
    use super::{DwGeom, DwOut, DwScratch};
    use core::arch::x86_64::*;

    /// Whether this channel can take the path: a kernel at most 8 high and 4 wide,
    /// unit horizontal dilation, horizontal stride 1 or 2, weights (minus their zero
    /// point) that fit in i8.
    pub(super) fn fits(g: &DwGeom, wt: &[i32]) -> bool {
        g.kh <= 8
            && g.kw <= 4
            && g.dilations[1] == 1
            && matches!(g.strides[1], 1 | 2)
            && wt.iter().all(|&w| (-128..=127).contains(&w))
    }

    /// One channel (see the module docs); `fits` must hold.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW and VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn channel(
        g: &DwGeom,
        x: &[u8],
        xsub: i16,
        wt: &[i32],
        s: &mut DwScratch,
        out: &mut DwOut<'_>,
    ) {
        let hp = g.h + g.pads[0] + g.pads[2];
        let wp = g.w + g.pads[1] + g.pads[3];
        let zx = xsub as u8;
        // Padded plane, rows of `wp` bytes, plus 64 bytes of slack for the last loads.
        let len = hp * wp + 64;
        if s.bytes.len() != len || s.bytes_pad != zx {
            s.bytes.clear();
            s.bytes.resize(len, zx);
            s.bytes_pad = zx;
        }
        if g.w <= 64 {
            // Rows of at most 64 bytes: one masked load and store each (a `memcpy`
            // call per row costs more than the row's products on small planes).
            let m = u64::MAX.checked_shr((64 - g.w) as u32).unwrap_or(0);
            for (i, row) in x.chunks_exact(g.w.max(1)).enumerate().take(g.h) {
                let dst = &mut s.bytes[(i + g.pads[0]) * wp + g.pads[1]..][..g.w];
                // SAFETY: the mask covers the first g.w bytes, which `row` and `dst`
                // both hold; masked-off bytes are not accessed.
                unsafe {
                    let v = _mm512_maskz_loadu_epi8(m, row.as_ptr().cast());
                    _mm512_mask_storeu_epi8(dst.as_mut_ptr().cast(), m, v);
                }
            }
        } else {
            super::copy_interior(&mut s.bytes, x, g, wp, |v| v);
        }
        let (kh, kw) = (g.kh, g.kw);
        let [sh, sw] = g.strides;
        let dh = g.dilations[0];
        // Per kernel row: its weights as 4 signed bytes (taps past kw are 0).
        let wrow = |ky: usize| {
            let mut b = [0u8; 4];
            for (kx, b) in b.iter_mut().enumerate().take(kw) {
                *b = wt[ky * kw + kx] as i8 as u8;
            }
            _mm512_set1_epi32(i32::from_le_bytes(b))
        };
        let mut ws = [_mm512_setzero_si512(); 8];
        for (ky, w) in ws.iter_mut().enumerate().take(kh) {
            *w = wrow(ky);
        }
        let corr = i32::from(xsub) * wt.iter().sum::<i32>();
        // Lane i (outputs 4i..4i+3) starts at input byte 4i·sw: dword i·sw.
        let idx = if sw == 1 {
            _mm512_setr_epi32(0, 1, 2, 3, 1, 2, 3, 4, 2, 3, 4, 5, 3, 4, 5, 6)
        } else {
            _mm512_setr_epi32(0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7, 8, 9)
        };
        // Within a lane, output j's window is bytes j·sw .. j·sw + 3.
        let shuf = if sw == 1 {
            _mm512_broadcast_i32x4(_mm_setr_epi8(
                0, 1, 2, 3, 1, 2, 3, 4, 2, 3, 4, 5, 3, 4, 5, 6,
            ))
        } else {
            _mm512_broadcast_i32x4(_mm_setr_epi8(
                0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7, 8, 9,
            ))
        };
        let vcorr = _mm512_set1_epi32(corr);
        let bytes = s.bytes.as_ptr();
        // The epilogue's constants, once per channel.
        let quant = match out {
            DwOut::I32(_) => None,
            DwOut::U8(_, q) | DwOut::I8(_, q) => Some((
                _mm512_set1_epi32(q.bias.wrapping_sub(corr)),
                _mm512_set1_ps(q.mult),
                _mm512_set1_ps(q.lo),
                _mm512_set1_ps(q.hi),
                q.zp,
            )),
        };
        // The 16-lane windows of padded row `r` for outputs `ox..ox + 16`.
        let win = |r: usize, ox: usize| {
            let off = r * wp + ox * sw;
            // SAFETY: off + 64 ≤ hp·wp + 64 = len: every row the loops below pass is
            // < hp and ox·sw < wp for every output they reach (the geometry was
            // checked when the convolution was built).
            let v = unsafe { _mm512_loadu_si512(bytes.add(off).cast()) };
            _mm512_shuffle_epi8(_mm512_permutexvar_epi32(idx, v), shuf)
        };
        // Requantizes (or corrects) one block of `n ≤ 16` sums and stores it at output
        // `at`.
        let mut store = |a: __m512i, at: usize, n: usize| {
            let mask: __mmask16 = if n == 16 { u16::MAX } else { (1u16 << n) - 1 };
            // The n outputs of this block: i32 sums, or 8-bit codes (u8 and i8 are
            // stored alike, as bytes).
            let codes: *mut u8 = match &mut *out {
                DwOut::I32(y) => {
                    let y = &mut y[at..at + n];
                    // SAFETY: the mask keeps the store within the n outputs of `y`.
                    unsafe {
                        _mm512_mask_storeu_epi32(y.as_mut_ptr(), mask, _mm512_sub_epi32(a, vcorr))
                    };
                    return;
                }
                DwOut::U8(y, _) => y[at..at + n].as_mut_ptr(),
                DwOut::I8(y, _) => y[at..at + n].as_mut_ptr().cast(),
            };
            // 8-bit outputs always carry their requantization (`quant` above).
            debug_assert!(quant.is_some());
            if let Some((b, m, lo, hi, zp)) = quant {
                let q = requant16(_mm512_add_epi32(a, b), m, lo, hi, zp);
                // SAFETY: `codes` starts n writable bytes of the output (sliced just
                // above) and the mask keeps the store within them; a 512-bit masked
                // store needs AVX-512 BW only, no VL.
                unsafe {
                    _mm512_mask_storeu_epi8(
                        codes.cast(),
                        u64::from(mask),
                        _mm512_castsi128_si512(q),
                    )
                };
            }
        };
        if kh == 3 && dh == 1 && matches!(sh, 1 | 2) {
            // 3 kernel rows, unit vertical dilation: each padded row's windows are
            // built once and feed every output row that reads them (three with a unit
            // stride, one or two with stride 2), down one column block at a time.
            let [w0, w1, w2] = [ws[0], ws[1], ws[2]];
            let z = _mm512_setzero_si512();
            let mut ox = 0;
            while ox < g.ow {
                let n = (g.ow - ox).min(16);
                let (mut wa, mut wb) = (win(0, ox), if sh == 1 { win(1, ox) } else { z });
                for oy in 0..g.oh {
                    let a = if sh == 1 {
                        let wc = win(oy + 2, ox);
                        let a = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(z, wa, w0), wb, w1);
                        (wa, wb) = (wb, wc);
                        _mm512_dpbusd_epi32(a, wc, w2)
                    } else {
                        let (w1r, w2r) = (win(2 * oy + 1, ox), win(2 * oy + 2, ox));
                        let a = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(z, wa, w0), w1r, w1);
                        wa = w2r;
                        _mm512_dpbusd_epi32(a, w2r, w2)
                    };
                    store(a, oy * g.ow + ox, n);
                }
                ox += n;
            }
            return;
        }
        for oy in 0..g.oh {
            let mut ox = 0;
            while ox < g.ow {
                // The last block may be partial: its extra lanes read bytes inside the
                // padded plane (or its slack) and are not stored.
                let n = (g.ow - ox).min(16);
                let mut a = _mm512_setzero_si512();
                for (ky, &w) in ws[..kh].iter().enumerate() {
                    a = _mm512_dpbusd_epi32(a, win(oy * sh + ky * dh, ox), w);
                }
                store(a, oy * g.ow + ox, n);
                ox += n;
            }
        }
    }
}

/// Depthwise rows on `vpmaddwd` (AVX2): the padded plane is widened once per channel to
/// i16 (`x − zx`, so the padding is 0), and each 32-bit lane of a load holds two
/// horizontally adjacent inputs, which one `vpmaddwd` multiplies by two taps of a
/// kernel row and adds. At stride 2, lane `j` of a load at column `2·ox + 2p` holds the
/// inputs of taps `2p, 2p + 1` of output `ox + j`; at stride 1, loads at `ox + 2p` and
/// `ox + 2p + 1` feed the even and the odd outputs of a 16-output block, interleaved at
/// the end. A tap pair's products are below 2·255² in magnitude, so nothing saturates,
/// and the i32 sums are [`channel_impl`]'s integers: the paths stay bit-identical.
#[cfg(target_arch = "x86_64")]
mod madd256 {
    use super::super::x86::{copy_run, narrow16, requant8};
    use super::{DwGeom, DwOut, DwScratch};
    use core::arch::x86_64::*;

    /// Tap pairs per kernel row, at most (kernels up to 8 wide).
    const PAIRS: usize = 4;
    /// Kernel rows, at most.
    const ROWS: usize = 8;
    /// i16 entries read past the plane's end by the last loads.
    const SLACK: usize = 48;

    /// Whether this channel can take the path: a kernel at most 8 × 8, unit horizontal
    /// dilation, horizontal stride 1 or 2, weights (minus their zero point) in i16.
    pub(super) fn fits(g: &DwGeom, wt: &[i32]) -> bool {
        g.kh <= ROWS
            && g.kw <= 2 * PAIRS
            && g.dilations[1] == 1
            && matches!(g.strides[1], 1 | 2)
            && wt.iter().all(|&w| i16::try_from(w).is_ok())
    }

    /// One channel (see the module docs); `fits` must hold.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn channel(
        g: &DwGeom,
        x: &[u8],
        xsub: i16,
        wt: &[i32],
        s: &mut DwScratch,
        out: &mut DwOut<'_>,
    ) {
        let (kh, kw) = (g.kh, g.kw);
        if kh == 3 && kw == 3 {
            // SAFETY: forwarded contract.
            unsafe { rows(g, 3, 2, x, xsub, wt, s, out) }
        } else {
            // SAFETY: forwarded contract.
            unsafe { rows(g, kh, kw.div_ceil(2), x, xsub, wt, s, out) }
        }
    }

    /// [`channel`] for `kh` kernel rows of `np` tap pairs (constants when inlined).
    #[target_feature(enable = "avx2")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows(
        g: &DwGeom,
        kh: usize,
        np: usize,
        x: &[u8],
        xsub: i16,
        wt: &[i32],
        s: &mut DwScratch,
        out: &mut DwOut<'_>,
    ) {
        let hp = g.h + g.pads[0] + g.pads[2];
        let wp = g.w + g.pads[1] + g.pads[3];
        let len = hp * wp + SLACK;
        if s.wide.len() != len {
            s.wide.clear();
            s.wide.resize(len, 0);
        }
        // The interior, widened; the borders stay 0 (every channel of a call has the
        // same geometry).
        let zx = _mm256_set1_epi16(xsub);
        for (i, row) in x.chunks_exact(g.w.max(1)).enumerate().take(g.h) {
            let dst = &mut s.wide[(i + g.pads[0]) * wp + g.pads[1]..][..g.w];
            let mut j = 0;
            while j + 16 <= g.w {
                // SAFETY: 16 bytes of `row` and 16 i16 of `dst` at j are in bounds.
                unsafe {
                    let v = _mm256_cvtepu8_epi16(_mm_loadu_si128(row.as_ptr().add(j).cast()));
                    _mm256_storeu_si256(dst.as_mut_ptr().add(j).cast(), _mm256_sub_epi16(v, zx));
                }
                j += 16;
            }
            for (d, &v) in dst[j..].iter_mut().zip(&row[j..]) {
                *d = i16::from(v) - xsub;
            }
        }
        // Per kernel row and tap pair: the two weights as one i32 (0 past kw).
        let kw = g.kw;
        let mut wpair = [[_mm256_setzero_si256(); PAIRS]; ROWS];
        for (ky, wr) in wpair.iter_mut().enumerate().take(kh) {
            for (p, w) in wr.iter_mut().enumerate().take(np) {
                let tap = |kx: usize| {
                    if kx < kw {
                        wt[ky * kw + kx] as i16 as u16
                    } else {
                        0
                    }
                };
                let pair = u32::from(tap(2 * p)) | (u32::from(tap(2 * p + 1)) << 16);
                *w = _mm256_set1_epi32(pair as i32);
            }
        }
        let quant = match out {
            DwOut::I32(_) => None,
            DwOut::U8(_, q) | DwOut::I8(_, q) => Some((
                _mm256_set1_epi32(q.bias),
                _mm256_set1_ps(q.mult),
                _mm256_set1_ps(q.lo),
                _mm256_set1_ps(q.hi),
                _mm256_set1_epi32(q.zp.wrapping_sub(0x4B40_0000)),
            )),
        };
        // Stores runs of the block's sums (`a`: lanes 0–7, `b`: lanes 8–15): each
        // `(lane, at, n)` puts lanes `lane..lane + n` at outputs `at..at + n`.
        // The channel's output: its start (i32 or bytes), element size and length.
        let (dst, esz, len): (*mut u8, usize, usize) = match &mut *out {
            DwOut::I32(y) => (y.as_mut_ptr().cast(), 4, y.len()),
            DwOut::U8(y, _) => (y.as_mut_ptr(), 1, y.len()),
            DwOut::I8(y, _) => (y.as_mut_ptr().cast(), 1, y.len()),
        };
        // Stores runs of a block's sums (`$a`: lanes 0–7, `$b`: lanes 8–15): each
        // `(lane, at, n)` puts lanes `lane..lane + n` at outputs `at..at + n`. (A macro:
        // a closure here was not inlined.)
        macro_rules! put {
            ($a:expr, $b:expr, $runs:expr) => {{
                let (a, b): (__m256i, __m256i) = ($a, $b);
                let runs: &[(usize, usize, usize)] = $runs;
                // A whole block in place, or runs through `t`.
                let whole = match *runs {
                    [(0, at, 16)] => {
                        assert!(at + 16 <= len, "depthwise store out of range");
                        Some(at)
                    }
                    _ => None,
                };
                let mut t = [0i32; 16];
                match (quant, whole) {
                    // SAFETY: outputs at..at + 16 lie inside the channel (checked).
                    (None, Some(at)) => unsafe {
                        let y = dst.cast::<i32>().add(at);
                        _mm256_storeu_si256(y.cast(), a);
                        _mm256_storeu_si256(y.add(8).cast(), b);
                    },
                    // SAFETY: `t` holds 16 i32.
                    (None, None) => unsafe {
                        _mm256_storeu_si256(t.as_mut_ptr().cast(), a);
                        _mm256_storeu_si256(t.as_mut_ptr().add(8).cast(), b);
                    },
                    (Some((bias, m, lo, hi, off)), _) => {
                        let qa = requant8(_mm256_add_epi32(a, bias), m, lo, hi, off);
                        let qb = requant8(_mm256_add_epi32(b, bias), m, lo, hi, off);
                        let p = whole.map_or(t.as_mut_ptr().cast(), |at| dst.wrapping_add(at));
                        // SAFETY: `p` starts 16 writable bytes: outputs at..at + 16 of
                        // the channel (checked), or `t`.
                        unsafe { _mm_storeu_si128(p.cast(), narrow16(qa, qb)) };
                    }
                }
                if whole.is_none() {
                    for &(lane, at, n) in runs {
                        assert!(
                            lane + n <= 16 && at + n <= len,
                            "depthwise store out of range"
                        );
                        // SAFETY: lanes lane..lane + n of `t` (as i32 or as codes) are
                        // initialized, and outputs at..at + n lie inside the channel
                        // (checked).
                        unsafe {
                            copy_run(
                                t.as_ptr().cast::<u8>().add(lane * esz),
                                dst.add(at * esz),
                                n * esz,
                            )
                        };
                    }
                }
            }};
        }
        let [sh, sw] = g.strides;
        let dh = g.dilations[0];
        let plane = s.wide.as_ptr();
        // 16 i16 of padded row `r` from column `c`.
        let ld = |r: usize, c: usize| {
            // SAFETY: the load ends at r·wp + c + 16 with r ≤ hp − 1, and every column
            // the loops below pass is at most wp + 15: at stride 1 the last block
            // starts at ox ≤ ow − 1 = wp − kw and reads from ox + 2·np − 1 ≤ wp; at
            // stride 2 from 2·ox + 16 + 2·np − 2 ≤ wp − kw + 16 + kw − 1. So every
            // load ends within hp·wp + 32 ≤ len.
            unsafe { _mm256_loadu_si256(plane.add(r * wp + c).cast()) }
        };
        // 8 i16 of row r0 (low half) and of row r1 (high half) from column c.
        let ld2 = |r0: usize, r1: usize, c: usize| {
            // SAFETY: as `ld`, for 8 entries each (c ≤ 2·np − 1 here).
            unsafe {
                _mm256_loadu2_m128i(plane.add(r1 * wp + c).cast(), plane.add(r0 * wp + c).cast())
            }
        };
        // [e0 o0 e1 o1 | e4 o4 e5 o5] and [e2 o2 e3 o3 | e6 o6 e7 o7] back in order.
        let interleave = |a: __m256i, b: __m256i| {
            let (l, h) = (_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
            (
                _mm256_permute2x128_si256::<0x20>(l, h),
                _mm256_permute2x128_si256::<0x31>(l, h),
            )
        };
        let z = _mm256_setzero_si256();
        if sw == 1 && g.ow <= 8 {
            // Narrow planes: two output rows per block, one in each 128-bit half (each
            // half's four even and four odd outputs cover the row's ≤ 8).
            let ow = g.ow;
            for oy in (0..g.oh).step_by(2) {
                let two = oy + 1 < g.oh;
                let (mut a, mut b) = (z, z);
                for (ky, wr) in wpair.iter().enumerate().take(kh) {
                    let r0 = oy * sh + ky * dh;
                    let r1 = if two { r0 + sh } else { r0 };
                    for (p, &w) in wr.iter().enumerate().take(np) {
                        a = _mm256_add_epi32(a, _mm256_madd_epi16(ld2(r0, r1, 2 * p), w));
                        b = _mm256_add_epi32(b, _mm256_madd_epi16(ld2(r0, r1, 2 * p + 1), w));
                    }
                }
                let (l, h) = interleave(a, b);
                if two {
                    put!(l, h, &[(0, oy * ow, ow), (8, (oy + 1) * ow, ow)]);
                } else {
                    put!(l, h, &[(0, oy * ow, ow)]);
                }
            }
            return;
        }
        for oy in 0..g.oh {
            let mut ox = 0;
            while ox < g.ow {
                let n = (g.ow - ox).min(16);
                let (mut a, mut b) = (z, z);
                for (ky, wr) in wpair.iter().enumerate().take(kh) {
                    let r = oy * sh + ky * dh;
                    for (p, &w) in wr.iter().enumerate().take(np) {
                        if sw == 2 {
                            a = _mm256_add_epi32(a, _mm256_madd_epi16(ld(r, 2 * ox + 2 * p), w));
                            if n > 8 {
                                let c = 2 * ox + 16 + 2 * p;
                                b = _mm256_add_epi32(b, _mm256_madd_epi16(ld(r, c), w));
                            }
                        } else {
                            // a: even outputs, b: odd outputs.
                            a = _mm256_add_epi32(a, _mm256_madd_epi16(ld(r, ox + 2 * p), w));
                            b = _mm256_add_epi32(b, _mm256_madd_epi16(ld(r, ox + 2 * p + 1), w));
                        }
                    }
                }
                if sw == 1 {
                    (a, b) = interleave(a, b);
                }
                put!(a, b, &[(0, oy * g.ow + ox, n)]);
                ox += n;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn channel_avx512(
    g: &DwGeom,
    x: &[u8],
    xsub: i16,
    wt: &[i32],
    s: &mut DwScratch,
    out: &mut DwOut<'_>,
) {
    channel_impl(g, x, xsub, wt, s, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn channel_avx2(
    g: &DwGeom,
    x: &[u8],
    xsub: i16,
    wt: &[i32],
    s: &mut DwScratch,
    out: &mut DwOut<'_>,
) {
    channel_impl(g, x, xsub, wt, s, out);
}

/// Convolves one channel with the code compiled for `isa` (which must be available).
/// `x` holds the channel's values mapped to u8 ([`crate::QElem::to_a`]), `xsub` the
/// mapped input zero point.
pub(crate) fn channel(
    isa: Isa,
    g: &DwGeom,
    x: &[u8],
    xsub: i16,
    wt: &[i32],
    s: &mut DwScratch,
    out: &mut DwOut<'_>,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx512Vnni and Amx availability imply AVX-512 F, BW and VNNI.
        Isa::Avx512Vnni | Isa::Amx if vnni512::fits(g, wt) => unsafe {
            vnni512::channel(g, x, xsub, wt, s, out)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx512Vnni | Isa::Amx => unsafe { channel_avx512(g, x, xsub, wt, s, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: both paths imply AVX2 (checked when the weights were packed).
        Isa::AvxVnni | Isa::Avx2 if madd256::fits(g, wt) => unsafe {
            madd256::channel(g, x, xsub, wt, s, out)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::AvxVnni | Isa::Avx2 => unsafe { channel_avx2(g, x, xsub, wt, s, out) },
        _ => channel_impl(g, x, xsub, wt, s, out),
    }
}

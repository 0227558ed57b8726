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
        s.plane.fill(0);
        for (i, row) in x.chunks_exact(g.w.max(1)).enumerate().take(g.h) {
            let dst = &mut s.plane[(i + g.pads[0]) * wp + g.pads[1]..][..g.w];
            for (d, &v) in dst.iter_mut().zip(row) {
                *d = i16::from(v) - xsub;
            }
        }
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
        let o0 = oy * g.ow;
        match out {
            DwOut::I32(y) => y[o0..o0 + g.ow].copy_from_slice(acc),
            DwOut::U8(y, q) => {
                quant_row(acc, &[q.mult], &[q.bias], q.zp, q.lo, q.hi, usize::MAX);
                for (d, &v) in y[o0..o0 + g.ow].iter_mut().zip(acc.iter()) {
                    *d = v as u8;
                }
            }
            DwOut::I8(y, q) => {
                quant_row(acc, &[q.mult], &[q.bias], q.zp, q.lo, q.hi, usize::MAX);
                for (d, &v) in y[o0..o0 + g.ow].iter_mut().zip(acc.iter()) {
                    *d = v as i8;
                }
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
        // SAFETY: Avx512Vnni and Amx availability imply AVX-512 F and BW.
        Isa::Avx512Vnni | Isa::Amx => unsafe { channel_avx512(g, x, xsub, wt, s, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: both paths imply AVX2 (checked when the weights were packed).
        Isa::AvxVnni | Isa::Avx2 => unsafe { channel_avx2(g, x, xsub, wt, s, out) },
        _ => channel_impl(g, x, xsub, wt, s, out),
    }
}

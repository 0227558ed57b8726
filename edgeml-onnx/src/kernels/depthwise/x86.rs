//! AVX-512 depthwise planes read straight from the input (no phase-plane copy).
//!
//! Every output is accumulated as `bias`, then `w·x` per tap in row-major kernel order
//! (separate multiply and add), padded positions read as zero through masked loads: the
//! same operations in the same order as the portable phase-plane loop, so the results
//! are bit-identical to it (including `w·0 = NaN` for an infinite weight over the
//! padding).
//!
//! Square 3×3 and 5×5 kernels with row and column strides of 1 or 2 (every depthwise
//! layer of MobileNet, EfficientNet and ShuffleNet) take [`rolling`]: each padded input
//! row is loaded once per column block and multiplied into every output row that reads
//! it (three for 3×3 at stride 1), whose accumulators stay in registers while the rows
//! stream past. Other dilation-1 kernels take [`per_row`], which reloads the input rows
//! for each output row.
#![allow(unsafe_code)]

use super::DepthwiseGeo;
use std::arch::x86_64::*;

/// Widest kernel the direct path takes (its per-tap masks live in an array).
const MAX_KW: usize = 8;

/// Dilation-1 planes with a column stride of 1 or 2 skip the padded copy.
pub(super) fn suits(g: &DepthwiseGeo) -> bool {
    (g.sw == 1 || g.sw == 2) && g.dh == 1 && g.dw == 1 && g.kw <= MAX_KW
}

/// `out = conv(x, w) + bias` for one plane read straight from `x`.
///
/// # Safety
/// The CPU must support AVX-512F; `g` must be valid and [`suits`] it, `x.len() ≥ h·w`,
/// `wts.len() ≥ kh·kw`, `out.len() ≥ oh·ow`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn plane(x: &[f32], wts: &[f32], bias: f32, g: &DepthwiseGeo, out: &mut [f32]) {
    // SAFETY: forwarded from the caller; each arm's constants equal `g`'s kernel size
    // and strides (matched here).
    unsafe {
        match (g.kh, g.kw, g.sh, g.sw) {
            (3, 3, 1, 1) => rolling::<3, 1, 1>(x, wts, bias, g, out),
            (3, 3, 2, 2) => rolling::<3, 2, 2>(x, wts, bias, g, out),
            (3, 3, 1, 2) => rolling::<3, 1, 2>(x, wts, bias, g, out),
            (3, 3, 2, 1) => rolling::<3, 2, 1>(x, wts, bias, g, out),
            (5, 5, 1, 1) => rolling::<5, 1, 1>(x, wts, bias, g, out),
            (5, 5, 2, 2) => rolling::<5, 2, 2>(x, wts, bias, g, out),
            (5, 5, 1, 2) => rolling::<5, 1, 2>(x, wts, bias, g, out),
            (5, 5, 2, 1) => rolling::<5, 2, 1>(x, wts, bias, g, out),
            (_, _, _, 1) => per_row::<1>(x, wts, bias, g, out),
            _ => per_row::<2>(x, wts, bias, g, out),
        }
    }
}

/// Load masks of one 16-column output block: per kernel column `j`, position `q`
/// (lane `q`, or `q/2` with column stride 2) reads input column `starts[j] + q`, loaded
/// (mask bit set) when that column exists; stride 1 also stops at the `n` stored lanes.
fn block_masks<const SW: usize>(
    g: &DepthwiseGeo,
    c0: usize,
    n: usize,
    kw: usize,
) -> ([isize; MAX_KW], [u32; MAX_KW]) {
    let (w, pl) = (g.w as isize, g.pl as isize);
    let mut starts = [0isize; MAX_KW];
    let mut masks = [0u32; MAX_KW];
    for j in 0..kw {
        let start = (SW * c0) as isize + j as isize - pl;
        let span = if SW == 1 { n as isize } else { 32 };
        let lo = (-start).clamp(0, span);
        let hi = (w - start).clamp(0, span);
        starts[j] = start;
        masks[j] = if lo < hi {
            (((1u64 << hi) - 1) & !((1u64 << lo) - 1)) as u32
        } else {
            0
        };
    }
    (starts, masks)
}

/// The 16 outputs' inputs for one tap: lanes of mask `m` read `p[q]` (stride 1) or
/// `p[2q]` (stride 2, two masked loads of 16 and an even-lane permute).
///
/// # Safety
/// AVX-512F; every lane whose mask bit is set (bit `q`, or bits `2q` of the 32-bit mask
/// with stride 2) must be a readable float at `p + q` (`p + 2q`).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load_tap<const SW: usize>(p: *const f32, m: u32) -> __m512 {
    // SAFETY: forwarded from the caller; masked-off lanes are not accessed, so `p` may
    // point outside the slice for them.
    unsafe {
        if SW == 1 {
            _mm512_maskz_loadu_ps(m as u16, p)
        } else {
            let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let a = _mm512_maskz_loadu_ps(m as u16, p);
            let b = _mm512_maskz_loadu_ps((m >> 16) as u16, p.wrapping_add(16));
            _mm512_permutex2var_ps(a, even, b)
        }
    }
}

/// Square `K×K` kernel, row stride `SH`, column stride `SW`, unit dilation: `NB` blocks
/// of 16 output columns at a time walk down the padded rows `p`. Row `p` is loaded
/// once (`K` vectors per block, zeros for padding rows) and added into each output row
/// `r` with `0 ≤ p − r·SH < K`, as kernel row `p − r·SH`. Those rows are the slots of a
/// window of `(K−1)/SH + 1` accumulators per block that slides down one output row per
/// step, so every accumulator still receives bias, kernel row 0, row 1, … in order.
///
/// # Safety
/// As [`plane`], with `g.kh = g.kw = K`, `g.sh = SH`, `g.sw = SW`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn rolling<const K: usize, const SH: usize, const SW: usize>(
    x: &[f32],
    wts: &[f32],
    bias: f32,
    g: &DepthwiseGeo,
    out: &mut [f32],
) {
    assert!(g.kh == K && g.kw == K && g.sh == SH && g.sw == SW && K <= MAX_KW);
    let nblk = g.ow.div_ceil(16);
    let mut b = 0;
    while b < nblk {
        // SAFETY: forwarded from the caller; blocks `b, b + 1` (or `b`) exist.
        unsafe {
            if nblk - b >= 2 {
                rolling_blocks::<K, SH, SW, 2>(x, wts, bias, g, out, 16 * b);
                b += 2;
            } else {
                rolling_blocks::<K, SH, SW, 1>(x, wts, bias, g, out, 16 * b);
                b += 1;
            }
        }
    }
}

/// [`rolling`] over the `NB` column blocks starting at output column `c0`.
///
/// # Safety
/// As [`rolling`]; output columns `c0 .. c0 + 16·(NB − 1)` must exist.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn rolling_blocks<const K: usize, const SH: usize, const SW: usize, const NB: usize>(
    x: &[f32],
    wts: &[f32],
    bias: f32,
    g: &DepthwiseGeo,
    out: &mut [f32],
    c0: usize,
) {
    let (h, w, pt) = (g.h as isize, g.w as isize, g.pt as isize);
    let oh = g.oh as isize;
    let x = &x[..g.h * g.w];
    let wts = &wts[..K * K];
    let out = &mut out[..g.oh * g.ow];
    // Output rows fed by one padded row: the window's width.
    let ns = (K - 1) / SH + 1;
    let vb = _mm512_set1_ps(bias);
    let mut starts = [[0isize; MAX_KW]; NB];
    let mut masks = [[0u32; MAX_KW]; NB];
    let mut omask = [0u16; NB];
    for q in 0..NB {
        let cq = c0 + 16 * q;
        let n = (g.ow - cq).min(16);
        (starts[q], masks[q]) = block_masks::<SW>(g, cq, n, K);
        omask[q] = ((1u32 << n) - 1) as u16;
    }
    // acc[q][s]: block q of output row r + s.
    let mut acc = [[vb; K]; NB];
    // Step r brings in padded rows r·SH + K − SH .. r·SH + K (all of them from the
    // first, negative, r) and then completes output row r.
    let first = -((ns - 1) as isize);
    for r in first..oh {
        for k in K - SH..K {
            let ir = r * SH as isize + k as isize - pt;
            let mut v = [[_mm512_setzero_ps(); K]; NB];
            if ir >= 0 && ir < h {
                for q in 0..NB {
                    for j in 0..K {
                        let p = x.as_ptr().wrapping_offset(ir * w + starts[q][j]);
                        // SAFETY: a set mask bit selects input column starts + lane (or
                        // + 2·lane) inside row ir < h of `x` (`block_masks`).
                        v[q][j] = unsafe { load_tap::<SW>(p, masks[q][j]) };
                    }
                }
            }
            for s in 0..ns {
                // Padded row r·SH + k is kernel row k − s·SH of output row r + s.
                let row = r + s as isize;
                if k < s * SH || row < 0 || row >= oh {
                    continue;
                }
                let wr = &wts[(k - s * SH) * K..][..K];
                for q in 0..NB {
                    for j in 0..K {
                        let t = _mm512_mul_ps(_mm512_set1_ps(wr[j]), v[q][j]);
                        acc[q][s] = _mm512_add_ps(acc[q][s], t);
                    }
                }
            }
        }
        if r >= 0 {
            let o = r as usize * g.ow + c0;
            for q in 0..NB {
                assert!(o + 16 * q + omask[q].count_ones() as usize <= out.len());
                // SAFETY: lanes < n write out[r·ow + c0 + 16q ..][..n], in bounds
                // (asserted).
                unsafe {
                    _mm512_mask_storeu_ps(out.as_mut_ptr().add(o + 16 * q), omask[q], acc[q][0])
                };
            }
        }
        for a in acc.iter_mut() {
            for s in 1..ns {
                a[s - 1] = a[s];
            }
            a[ns - 1] = vb;
        }
    }
}

/// Any dilation-1 kernel up to [`MAX_KW`] wide with column stride `SW`: every output row
/// is cut into runs of 16 columns, each accumulated in one register over all taps,
/// reloading the kernel's input rows per output row.
///
/// # Safety
/// As [`plane`], with `g.sw = SW`.
#[target_feature(enable = "avx512f")]
unsafe fn per_row<const SW: usize>(
    x: &[f32],
    wts: &[f32],
    bias: f32,
    g: &DepthwiseGeo,
    out: &mut [f32],
) {
    let (kh, kw) = (g.kh, g.kw);
    assert!(kw <= MAX_KW && SW == g.sw && (SW == 1 || SW == 2));
    let (h, w, pt) = (g.h as isize, g.w as isize, g.pt as isize);
    let vb = _mm512_set1_ps(bias);
    let wts = &wts[..kh * kw];
    let out = &mut out[..g.oh * g.ow];
    let x = &x[..g.h * g.w];
    for c0 in (0..g.ow).step_by(16) {
        let n = (g.ow - c0).min(16);
        let omask = ((1u32 << n) - 1) as u16;
        let (starts, masks) = block_masks::<SW>(g, c0, n, kw);
        for r in 0..g.oh {
            let mut acc = vb;
            for i in 0..kh {
                let ir = (r * g.sh + i) as isize - pt;
                // Rows outside the input load nothing (all-zero masks): no branches.
                let rm = if ir >= 0 && ir < h { u32::MAX } else { 0 };
                for j in 0..kw {
                    let p = x.as_ptr().wrapping_offset(ir * w + starts[j]);
                    // SAFETY: a set mask bit selects input column starts[j] + lane (or
                    // + 2·lane) of row 0 ≤ ir < h, inside `x`; the pointer itself may lie
                    // outside `x` (wrapping arithmetic), never dereferenced there.
                    let v = unsafe { load_tap::<SW>(p, masks[j] & rm) };
                    let wv = _mm512_set1_ps(wts[i * kw + j]);
                    acc = _mm512_add_ps(acc, _mm512_mul_ps(wv, v));
                }
            }
            assert!(r * g.ow + c0 + n <= out.len());
            // SAFETY: lanes < n write out[r·ow + c0 ..][..n], in bounds (asserted).
            unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(r * g.ow + c0), omask, acc) };
        }
    }
}

//! AVX-512 and AVX2 depthwise planes read straight from the input (no phase-plane copy).
//!
//! Every output is accumulated as `bias`, then `w·x` per tap in row-major kernel order
//! (separate multiply and add), padded positions read as zero through masked loads: the
//! same operations in the same order as the portable phase-plane loop, so the results
//! are bit-identical to it (including `w·0 = NaN` for an infinite weight over the
//! padding).
//!
//! Square 3×3 and 5×5 kernels with row and column strides of 1 or 2 (every depthwise
//! layer of MobileNet, EfficientNet and ShuffleNet) take `rolling`: each padded input
//! row is loaded once per column block and multiplied into every output row that reads
//! it (three for 3×3 at stride 1), whose accumulators stay in registers while the rows
//! stream past. Other dilation-1 kernels take `per_row`, which reloads the input rows
//! for each output row.
//!
//! One body (`direct_kernels!`) is expanded for both instruction sets over their vector
//! operations (`dw_ops!`): 16 lanes and `__mmask16` masks with AVX-512F, 8 lanes and
//! vector masks (`vmaskmovps`) with AVX2.
#![allow(unsafe_code)]

use super::DepthwiseGeo;
use crate::kernels::avx2::lanes8;
use std::arch::x86_64::*;

/// Widest kernel the direct path takes (its per-tap masks live in an array).
const MAX_KW: usize = 8;

/// Dilation-1 planes with a column stride of 1 or 2 skip the padded copy.
pub(super) fn suits(g: &DepthwiseGeo) -> bool {
    (g.sw == 1 || g.sw == 2) && g.dh == 1 && g.dw == 1 && g.kw <= MAX_KW
}

/// `out = conv(x, w) + bias` for one plane read straight from `x`, with AVX-512F.
///
/// # Safety
/// The CPU must support AVX-512F; `g` must be valid and [`suits`] it, `x.len() ≥ h·w`,
/// `wts.len() ≥ kh·kw`, `out.len() ≥ oh·ow`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn plane_avx512(
    x: &[f32],
    wts: &[f32],
    bias: f32,
    g: &DepthwiseGeo,
    out: &mut [f32],
) {
    // SAFETY: forwarded from the caller.
    unsafe { k16::plane(x, wts, bias, g, out) }
}

/// `out = conv(x, w) + bias` for one plane read straight from `x`, with AVX2.
///
/// # Safety
/// The CPU must support AVX2; otherwise as [`plane_avx512`].
#[target_feature(enable = "avx2")]
pub(super) unsafe fn plane_avx2(
    x: &[f32],
    wts: &[f32],
    bias: f32,
    g: &DepthwiseGeo,
    out: &mut [f32],
) {
    // SAFETY: forwarded from the caller.
    unsafe { k8::plane(x, wts, bias, g, out) }
}

/// Lanes whose bit is set in the low 8 bits of `bits`, for AVX masked loads.
#[target_feature(enable = "avx2")]
#[inline]
fn bits8(bits: u32) -> __m256i {
    let sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(bits as i32), sel), sel)
}

/// Defines the vector ops module `$m` (`L` lanes of `$v`, load masks of type `H`, every
/// op `#[target_feature(enable = $feat)] #[inline]`) that `direct_kernels!` expands with.
macro_rules! dw_ops {
    (
        $m:ident, $feat:literal, $v:ty, $l:literal, $h:ty, regs: $regs:literal,
        set1: $set1:ident, zero: $zero:ident, mul: $mul:ident, add: $add:ident,
        half: |$hb:ident| $half:expr,
        load: |$lp:ident, $lm:ident| $load:expr,
        even: |$ea:ident, $eb:ident| $even:expr,
        store: |$sp:ident, $sn:ident, $sv:ident| $store:expr $(,)?
    ) => {
        mod $m {
            use super::*;

            /// The vector type.
            pub(super) type V = $v;
            /// A load mask of `L` lanes.
            pub(super) type H = $h;
            /// Lanes per vector.
            pub(super) const L: usize = $l;
            /// Vector registers of the instruction set.
            pub(super) const REGS: usize = $regs;

            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) fn set1(x: f32) -> V {
                $set1(x)
            }

            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) fn zero() -> V {
                $zero()
            }

            /// `a + w·v` as a separate multiply and add (the portable loop's rounding).
            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) fn madd(a: V, w: V, v: V) -> V {
                $add(a, $mul(w, v))
            }

            /// The load mask of lanes whose bit is set in the low `L` bits.
            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) fn half($hb: u32) -> H {
                $half
            }

            /// Lanes of mask `m` from `p`, the rest 0.
            ///
            /// # Safety
            /// Every lane `q` set in `m` must be a readable float at `p + q`.
            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) unsafe fn load($lp: *const f32, $lm: H) -> V {
                // SAFETY: forwarded contract; masked-off lanes are not accessed.
                unsafe { $load }
            }

            /// Even lanes of `a ++ b`.
            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) fn even($ea: V, $eb: V) -> V {
                $even
            }

            /// Stores lanes `< n` (`1 ≤ n ≤ L`).
            ///
            /// # Safety
            /// `n` floats writable at `p`.
            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) unsafe fn store($sp: *mut f32, $sn: usize, $sv: V) {
                // SAFETY: forwarded contract; only lanes below n are written.
                unsafe { $store }
            }

            direct_kernels!($feat);
        }
    };
}

/// `plane`, `rolling`, `rolling_blocks` and `per_row` over the enclosing module's
/// vector ops (one body for both instruction sets).
macro_rules! direct_kernels {
    ($feat:literal) => {
        /// See [`plane_avx512`](super::plane_avx512).
        ///
        /// # Safety
        /// The CPU must support the module's instruction set; otherwise as
        /// `plane_avx512`.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn plane(
            x: &[f32],
            wts: &[f32],
            bias: f32,
            g: &DepthwiseGeo,
            out: &mut [f32],
        ) {
            // SAFETY: forwarded from the caller; each arm's constants equal `g`'s kernel
            // size and strides (matched here).
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

        /// Load masks of one `L`-column output block: per kernel column `j`, position
        /// `q` (lane `q`, or `q/2` with column stride 2) reads input column
        /// `starts[j] + q`, loaded (mask bit set) when that column exists; stride 1 also
        /// stops at the `n` stored lanes. Stride 2 loads `2L` positions in two halves.
        #[target_feature(enable = $feat)]
        fn block_masks<const SW: usize>(
            g: &DepthwiseGeo,
            c0: usize,
            n: usize,
            kw: usize,
        ) -> ([isize; MAX_KW], [[H; 2]; MAX_KW]) {
            let (w, pl) = (g.w as isize, g.pl as isize);
            let mut starts = [0isize; MAX_KW];
            let mut masks = [[half(0); 2]; MAX_KW];
            for j in 0..kw {
                let start = (SW * c0) as isize + j as isize - pl;
                let span = if SW == 1 { n as isize } else { 2 * L as isize };
                let lo = (-start).clamp(0, span);
                let hi = (w - start).clamp(0, span);
                starts[j] = start;
                let bits: u64 = if lo < hi {
                    ((1u64 << hi) - 1) & !((1u64 << lo) - 1)
                } else {
                    0
                };
                let low = (1u64 << L) - 1;
                masks[j] = [half((bits & low) as u32), half((bits >> L) as u32)];
            }
            (starts, masks)
        }

        /// The `L` outputs' inputs for one tap: lanes of mask `m[0]` read `p[q]`
        /// (stride 1), or `p[2q]` (stride 2: two masked loads of `L`, `m[0]` and `m[1]`,
        /// and their even lanes).
        ///
        /// # Safety
        /// Every lane set in `m[0]` (and, with stride 2, `m[1]`, offset by `L`) must be a
        /// readable float at `p + lane`.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn load_tap<const SW: usize>(p: *const f32, m: [H; 2]) -> V {
            // SAFETY: forwarded from the caller; masked-off lanes are not accessed, so
            // `p` may point outside the slice for them.
            unsafe {
                if SW == 1 {
                    load(p, m[0])
                } else {
                    even(load(p, m[0]), load(p.wrapping_add(L), m[1]))
                }
            }
        }

        /// Square `K×K` kernel, row stride `SH`, column stride `SW`, unit dilation:
        /// `NB` blocks of `L` output columns at a time walk down the padded rows (two
        /// where both blocks' accumulators and inputs fit in the registers).
        ///
        /// # Safety
        /// As `plane`, with `g.kh = g.kw = K`, `g.sh = SH`, `g.sw = SW`.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn rolling<const K: usize, const SH: usize, const SW: usize>(
            x: &[f32],
            wts: &[f32],
            bias: f32,
            g: &DepthwiseGeo,
            out: &mut [f32],
        ) {
            assert!(g.kh == K && g.kw == K && g.sh == SH && g.sw == SW && K <= MAX_KW);
            // Two blocks hold 2·(window + K) vectors, plus the bias and a weight.
            let two = 2 * ((K - 1) / SH + 1 + K) + 2 <= REGS;
            let nblk = g.ow.div_ceil(L);
            let mut b = 0;
            while b < nblk {
                // SAFETY: forwarded from the caller; blocks `b, b + 1` (or `b`) exist.
                unsafe {
                    if two && nblk - b >= 2 {
                        rolling_blocks::<K, SH, SW, 2>(x, wts, bias, g, out, L * b);
                        b += 2;
                    } else {
                        rolling_blocks::<K, SH, SW, 1>(x, wts, bias, g, out, L * b);
                        b += 1;
                    }
                }
            }
        }

        /// `rolling` over the `NB` column blocks starting at output column `c0`. Row `p`
        /// is loaded once (`K` vectors per block, zeros for padding rows) and added into
        /// each output row `r` with `0 ≤ p − r·SH < K`, as kernel row `p − r·SH`. Those
        /// rows are the slots of a window of `(K−1)/SH + 1` accumulators per block that
        /// slides down one output row per step, so every accumulator still receives
        /// bias, kernel row 0, row 1, … in order.
        ///
        /// # Safety
        /// As `rolling`; output columns `c0 .. c0 + L·(NB − 1)` must exist.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn rolling_blocks<
            const K: usize,
            const SH: usize,
            const SW: usize,
            const NB: usize,
        >(
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
            let vb = set1(bias);
            let mut starts = [[0isize; MAX_KW]; NB];
            let mut masks = [[[half(0); 2]; MAX_KW]; NB];
            let mut n = [0usize; NB];
            for q in 0..NB {
                let cq = c0 + L * q;
                n[q] = (g.ow - cq).min(L);
                (starts[q], masks[q]) = block_masks::<SW>(g, cq, n[q], K);
            }
            // acc[q][s]: block q of output row r + s.
            let mut acc = [[vb; K]; NB];
            // Step r brings in padded rows r·SH + K − SH .. r·SH + K (all of them from
            // the first, negative, r) and then completes output row r.
            let first = -((ns - 1) as isize);
            for r in first..oh {
                for k in K - SH..K {
                    let ir = r * SH as isize + k as isize - pt;
                    let mut v = [[zero(); K]; NB];
                    if ir >= 0 && ir < h {
                        for q in 0..NB {
                            for j in 0..K {
                                let p = x.as_ptr().wrapping_offset(ir * w + starts[q][j]);
                                // SAFETY: a set mask bit selects input column starts +
                                // lane (or + 2·lane) inside row ir < h of `x`
                                // (`block_masks`).
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
                                acc[q][s] = madd(acc[q][s], set1(wr[j]), v[q][j]);
                            }
                        }
                    }
                }
                if r >= 0 {
                    let o = r as usize * g.ow + c0;
                    for q in 0..NB {
                        assert!(o + L * q + n[q] <= out.len());
                        // SAFETY: lanes < n[q] write out[r·ow + c0 + L·q ..][..n[q]], in
                        // bounds (asserted).
                        unsafe { store(out.as_mut_ptr().add(o + L * q), n[q], acc[q][0]) };
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

        /// Any dilation-1 kernel up to [`MAX_KW`] wide with column stride `SW`: every
        /// output row is cut into runs of `L` columns, each accumulated in one register
        /// over all taps, reloading the kernel's input rows per output row.
        ///
        /// # Safety
        /// As `plane`, with `g.sw = SW`.
        #[target_feature(enable = $feat)]
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
            let vb = set1(bias);
            let wts = &wts[..kh * kw];
            let out = &mut out[..g.oh * g.ow];
            let x = &x[..g.h * g.w];
            for c0 in (0..g.ow).step_by(L) {
                let n = (g.ow - c0).min(L);
                let (starts, masks) = block_masks::<SW>(g, c0, n, kw);
                for r in 0..g.oh {
                    let mut acc = vb;
                    for i in 0..kh {
                        let ir = (r * g.sh + i) as isize - pt;
                        let inside = ir >= 0 && ir < h;
                        for j in 0..kw {
                            let p = x.as_ptr().wrapping_offset(ir * w + starts[j]);
                            // Rows outside the input read as zero, as a masked load with
                            // no lane set would.
                            let v = if inside {
                                // SAFETY: a set mask bit selects input column starts[j] +
                                // lane (or + 2·lane) of row 0 ≤ ir < h, inside `x`; the
                                // pointer itself may lie outside `x` (wrapping
                                // arithmetic), never dereferenced there.
                                unsafe { load_tap::<SW>(p, masks[j]) }
                            } else {
                                zero()
                            };
                            acc = madd(acc, set1(wts[i * kw + j]), v);
                        }
                    }
                    assert!(r * g.ow + c0 + n <= out.len());
                    // SAFETY: lanes < n write out[r·ow + c0 ..][..n], in bounds (asserted).
                    unsafe { store(out.as_mut_ptr().add(r * g.ow + c0), n, acc) };
                }
            }
        }
    };
}

dw_ops! {
    k16, "avx512f", __m512, 16, __mmask16, regs: 32,
    set1: _mm512_set1_ps, zero: _mm512_setzero_ps, mul: _mm512_mul_ps, add: _mm512_add_ps,
    half: |bits| bits as u16,
    load: |p, m| _mm512_maskz_loadu_ps(m, p),
    even: |a, b| _mm512_permutex2var_ps(
        a,
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
        b,
    ),
    store: |p, n, v| _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as u16, v),
}

dw_ops! {
    k8, "avx2", __m256, 8, __m256i, regs: 16,
    set1: _mm256_set1_ps, zero: _mm256_setzero_ps, mul: _mm256_mul_ps, add: _mm256_add_ps,
    half: |bits| bits8(bits),
    load: |p, m| _mm256_maskload_ps(p, m),
    // [a0 a2 b0 b2 | a4 a6 b4 b6] -> a0 a2 a4 a6 b0 b2 b4 b6.
    even: |a, b| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(
        _mm256_shuffle_ps::<0b10_00_10_00>(a, b),
    ))),
    // vmaskmovps stores are slow on AMD cores: full blocks take a plain store.
    store: |p, n, v| if n == 8 {
        _mm256_storeu_ps(p, v)
    } else {
        _mm256_maskstore_ps(p, lanes8(n), v)
    },
}

//! AVX-512F and AVX2 pooling kernels (see the parent module).
#![allow(unsafe_code)]

use super::{Taps, init, rows_scalar};
use crate::kernels::avx2::lanes8;
use std::arch::x86_64::*;

#[inline(always)]
fn mask(n: usize) -> __mmask16 {
    if n >= 16 {
        0xFFFF
    } else {
        ((1u32 << n) - 1) as u16
    }
}

/// Geometry of [`plane_k3s2_avx512`] (see `pool_planes_k3s2`).
#[derive(Clone, Copy)]
pub(super) struct PlaneGeo {
    pub(super) w: usize,
    pub(super) step: usize,
    pub(super) start: usize,
    pub(super) out_w: usize,
    pub(super) f0: usize,
    pub(super) len: usize,
}

/// Defines the vector ops module `$m` (`L` lanes of `$v`, every op
/// `#[target_feature(enable = $feat)] #[inline]`) that the shared kernel bodies
/// (`k3s2_kernels!`, the parent's `rows_kernel!` / `taps_kernel!`) are expanded with.
macro_rules! vec_ops {
    (
        $m:ident, $feat:literal, $v:ty, $l:literal,
        set1: $set1:ident, zero: $zero:ident, loadu: $loadu:ident, storeu: $storeu:ident,
        max: $max:ident, add: $add:ident, div: $div:ident,
        load_tail: |$lp:ident, $lk:ident| $load_tail:expr,
        store_tail: |$sp:ident, $sk:ident, $sv:ident| $store_tail:expr,
        even: |$ea:ident, $eb:ident| $even:expr,
        odd: |$oa:ident, $ob:ident| $odd:expr,
        shift: |$se:ident, $sn:ident| $shift:expr $(,)?
    ) => {
        // Not every kernel width uses every op.
        #[allow(dead_code)]
        mod $m {
            use super::*;

            /// The vector type.
            pub(super) type V = $v;
            /// Lanes per vector.
            pub(super) const L: usize = $l;

            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) fn set1(x: f32) -> $v {
                $set1(x)
            }

            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) fn zero() -> $v {
                $zero()
            }

            /// # Safety
            /// `L` floats readable at `p`.
            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) unsafe fn loadu(p: *const f32) -> $v {
                // SAFETY: forwarded contract.
                unsafe { $loadu(p) }
            }

            /// Lanes `< k` from `p`, the rest 0.
            ///
            /// # Safety
            /// `0 < k < L`; `k` floats readable at `p`.
            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) unsafe fn load_tail($lp: *const f32, $lk: usize) -> $v {
                // SAFETY: forwarded contract; only lanes below k are read.
                unsafe { $load_tail }
            }

            /// Even lanes of the `2·L` floats at `p`.
            ///
            /// # Safety
            /// `2·L` floats readable at `p`.
            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) unsafe fn load_even(p: *const f32) -> $v {
                // SAFETY: forwarded contract.
                unsafe { even(loadu(p), loadu(p.add(L))) }
            }

            /// # Safety
            /// `L` floats writable at `p`.
            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) unsafe fn storeu(p: *mut f32, v: $v) {
                // SAFETY: forwarded contract.
                unsafe { $storeu(p, v) }
            }

            /// Stores lanes `< k`.
            ///
            /// # Safety
            /// `0 < k < L`; `k` floats writable at `p`.
            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) unsafe fn store_tail($sp: *mut f32, $sk: usize, $sv: $v) {
                // SAFETY: forwarded contract; only lanes below k are written.
                unsafe { $store_tail }
            }

            /// Max: `if v > a { v } else { a }` lane-wise (`maxps` semantics); sum: `a + v`.
            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) fn comb<const MAX: bool>(v: $v, a: $v) -> $v {
                if MAX { $max(v, a) } else { $add(a, v) }
            }

            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) fn div(a: $v, b: $v) -> $v {
                $div(a, b)
            }

            /// Even lanes of `a ++ b`.
            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) fn even($ea: $v, $eb: $v) -> $v {
                $even
            }

            /// Odd lanes of `a ++ b`.
            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) fn odd($oa: $v, $ob: $v) -> $v {
                $odd
            }

            /// Lanes `1..=L` of `e ++ n` (`e` shifted down by one, `n`'s first lane last).
            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) fn shift($se: $v, $sn: $v) -> $v {
                $shift
            }

            /// One 3-tap output vector: `max(e2, max(o1, e))` or `(init + e + o1 + e2) / dv`.
            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) fn out3<const MAX: bool>(init: $v, dv: $v, e: $v, o1: $v, e2: $v) -> $v {
                if MAX {
                    $max(e2, $max(o1, e))
                } else {
                    $div($add($add($add(init, e), o1), e2), dv)
                }
            }
        }
    };
}

vec_ops! {
    v16, "avx512f", __m512, 16,
    set1: _mm512_set1_ps, zero: _mm512_setzero_ps, loadu: _mm512_loadu_ps,
    storeu: _mm512_storeu_ps, max: _mm512_max_ps, add: _mm512_add_ps, div: _mm512_div_ps,
    load_tail: |p, k| _mm512_maskz_loadu_ps(mask(k), p),
    store_tail: |p, k, v| _mm512_mask_storeu_ps(p, mask(k), v),
    even: |a, b| _mm512_permutex2var_ps(
        a,
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
        b,
    ),
    odd: |a, b| _mm512_permutex2var_ps(
        a,
        _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31),
        b,
    ),
    shift: |e, n| _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(
        _mm512_castps_si512(n),
        _mm512_castps_si512(e),
    )),
}

vec_ops! {
    v8, "avx2", __m256, 8,
    set1: _mm256_set1_ps, zero: _mm256_setzero_ps, loadu: _mm256_loadu_ps,
    storeu: _mm256_storeu_ps, max: _mm256_max_ps, add: _mm256_add_ps, div: _mm256_div_ps,
    load_tail: |p, k| _mm256_maskload_ps(p, lanes8(k)),
    store_tail: |p, k, v| _mm256_maskstore_ps(p, lanes8(k), v),
    // [a0 a2 b0 b2 | a4 a6 b4 b6] -> a0 a2 a4 a6 b0 b2 b4 b6.
    even: |a, b| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(
        _mm256_shuffle_ps::<0b10_00_10_00>(a, b),
    ))),
    odd: |a, b| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(
        _mm256_shuffle_ps::<0b11_01_11_01>(a, b),
    ))),
    // alignr works within 128-bit halves: pair e's high half with n's low half first.
    shift: |e, n| {
        let t = _mm256_permute2f128_ps::<0x21>(e, n);
        _mm256_castsi256_ps(_mm256_alignr_epi8::<4>(
            _mm256_castps_si256(t),
            _mm256_castps_si256(e),
        ))
    },
}

/// The fused 3×3 / stride-2 plane kernel `$plane` with its row kernel `$row` and column
/// combiner `$vert`, over the `$ops` vectors (one body for AVX-512F and AVX2).
macro_rules! k3s2_kernels {
    ($(#[$m:meta])* $plane:ident, $row:ident, $vert:ident, $feat:literal, $ops:ident) => {
        /// `V(c..c+L)`: columns `c..` of the spec's rows combined (lanes past the row: 0).
        /// `N > 0` fixes the row count at compile time (`n` is then `N`).
        ///
        /// # Safety
        /// The ISA; `base + i·step + w` within the plane for `i < n`.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn $vert<const MAX: bool, const N: usize>(
            base: *const f32,
            n: usize,
            step: usize,
            w: usize,
            c: usize,
        ) -> $ops::V {
            const L: usize = $ops::L;
            if c >= w {
                return $ops::zero();
            }
            let rows = if N > 0 { N } else { n };
            let mut a = $ops::set1(init::<MAX>());
            let whole = c + L <= w;
            for i in 0..rows {
                // SAFETY: row i starts at base + i·step and holds w floats; c < w and
                // only lanes below w - c are read.
                let v = unsafe {
                    let p = base.add(i * step + c);
                    if whole { $ops::loadu(p) } else { $ops::load_tail(p, w - c) }
                };
                a = $ops::comb::<MAX>(v, a);
            }
            a
        }

        /// One output row of the plane kernel.
        ///
        /// # Safety
        /// The ISA; `n` rows from `base` (`g.step` apart, `g.w` wide) readable, `g.len`
        /// outputs from `orow` writable, every tap inside the row.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn $row<const MAX: bool, const N: usize>(
            base: *const f32,
            n: usize,
            div: f32,
            g: PlaneGeo,
            orow: *mut f32,
        ) {
            const L: usize = $ops::L;
            let init = $ops::set1(init::<MAX>());
            let (step, w) = (g.step, g.w);
            let dv = $ops::set1(div);
            // Max: `V` lanes are never NaN and never below `f32::MIN` (each `vert` starts
            // from it), so the scalar order's first step `max(e, f32::MIN)` is `e` itself.
            let mut c = g.start;
            // SAFETY: `vert` reads only inside the rows, as this function requires.
            let (mut v0, mut v1) = unsafe {
                (
                    $vert::<MAX, N>(base, n, step, w, c),
                    $vert::<MAX, N>(base, n, step, w, c + L),
                )
            };
            let mut e = $ops::even(v0, v1);
            let mut j = 0;
            // Whole blocks whose four `V` vectors lie inside the row: no masks, no branches.
            if N > 0 {
                while j + L <= g.len && c + 4 * L <= w {
                    let (mut v2, mut v3) = (init, init);
                    for i in 0..N {
                        // SAFETY: c + 4·L ≤ w, inside row i.
                        let (a, b) = unsafe {
                            let p = base.add(i * step + c + 2 * L);
                            ($ops::loadu(p), $ops::loadu(p.add(L)))
                        };
                        (v2, v3) = ($ops::comb::<MAX>(a, v2), $ops::comb::<MAX>(b, v3));
                    }
                    let e_next = $ops::even(v2, v3);
                    let o1 = $ops::odd(v0, v1);
                    let o = $ops::out3::<MAX>(init, dv, e, o1, $ops::shift(e, e_next));
                    // SAFETY: j + L ≤ len.
                    unsafe { $ops::storeu(orow.add(j), o) };
                    (v0, v1, e) = (v2, v3, e_next);
                    c += 2 * L;
                    j += L;
                }
            }
            while j < g.len {
                // SAFETY: as above.
                let (v2, v3) = unsafe {
                    (
                        $vert::<MAX, N>(base, n, step, w, c + 2 * L),
                        $vert::<MAX, N>(base, n, step, w, c + 3 * L),
                    )
                };
                let e_next = $ops::even(v2, v3);
                let o1 = $ops::odd(v0, v1);
                // Taps c + 2i + 2: the even lanes shifted by one, the last from the next
                // block.
                let o = $ops::out3::<MAX>(init, dv, e, o1, $ops::shift(e, e_next));
                // SAFETY: lanes below len - j are inside the output row.
                unsafe {
                    if j + L <= g.len {
                        $ops::storeu(orow.add(j), o)
                    } else {
                        $ops::store_tail(orow.add(j), g.len - j, o)
                    }
                };
                (v0, v1, e) = (v2, v3, e_next);
                c += 2 * L;
                j += L;
            }
        }

        $(#[$m])*
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $plane<const MAX: bool>(
            x: &[f32],
            g: PlaneGeo,
            specs: &[super::RowSpec],
            out: &mut [f32],
        ) {
            for (r, spec) in specs.iter().enumerate() {
                let base = if spec.n == 0 {
                    x.as_ptr()
                } else {
                    // SAFETY: spec.first + w ≤ x.len() (checked by the caller).
                    unsafe { x.as_ptr().add(spec.first) }
                };
                // SAFETY: the row pointer is inside `out` (checked by the caller).
                let orow = unsafe { out.as_mut_ptr().add(r * g.out_w + g.f0) };
                // SAFETY: rows and outputs as checked by the caller.
                unsafe {
                    match spec.n {
                        3 => $row::<MAX, 3>(base, spec.n, spec.div, g, orow),
                        2 => $row::<MAX, 2>(base, spec.n, spec.div, g, orow),
                        _ => $row::<MAX, 0>(base, spec.n, spec.div, g, orow),
                    }
                }
            }
        }
    };
}

k3s2_kernels! {
    /// # Safety
    /// AVX-512F must be available and the geometry checked as in `pool_planes_k3s2`.
    plane_k3s2_avx512, row_k3s2_avx512, vert16, "avx512f", v16
}

k3s2_kernels! {
    /// The AVX2 twin of [`plane_k3s2_avx512`] (8 outputs per step).
    ///
    /// # Safety
    /// AVX2 must be available and the geometry checked as in `pool_planes_k3s2`.
    plane_k3s2_avx2, row_k3s2_avx2, vert8, "avx2", v8
}

rows_kernel! {
    /// # Safety
    /// AVX2 must be available; every row must hold ≥ `acc.len()` floats.
    rows_avx2, "avx2", v8
}

taps_kernel! {
    /// Returns how many leading outputs were done (the rest is the scalar loop's).
    ///
    /// # Safety
    /// AVX2 must be available; `t.s ≤ 2`.
    taps_avx2, "avx2", v8
}

/// # Safety
/// AVX-512F must be available; every row must hold ≥ `acc.len()` floats.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn rows_avx512<const MAX: bool>(rows: &[&[f32]], acc: &mut [f32]) {
    let n = acc.len();
    let init = _mm512_set1_ps(init::<MAX>());
    let mut i = 0;
    while i < n {
        let m = mask(n - i);
        let mut a = init;
        for r in rows {
            // SAFETY: i < n ≤ r.len(); masked-off lanes are not read.
            let v = unsafe { _mm512_maskz_loadu_ps(m, r.as_ptr().add(i)) };
            a = if MAX {
                _mm512_max_ps(v, a)
            } else {
                _mm512_add_ps(a, v)
            };
        }
        // SAFETY: as above, for `acc`.
        unsafe { _mm512_mask_storeu_ps(acc.as_mut_ptr().add(i), m, a) };
        i += 16;
    }
}

/// Returns the outputs done (all of them).
///
/// # Safety
/// AVX-512F must be available; `t.s ≤ 2`; every tap index of every output must be
/// below `acc.len()`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn taps_avx512<const MAX: bool>(
    acc: &[f32],
    t: Taps,
    div: f32,
    out: &mut [f32],
) -> usize {
    let (n, len, p) = (out.len(), acc.len(), acc.as_ptr());
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let (init, dv) = (_mm512_set1_ps(init::<MAX>()), _mm512_set1_ps(div));
    let mut j = 0;
    while j < n {
        let m = mask(n - j);
        let mut o = init;
        for kw in 0..t.k {
            let base = t.start + t.s * j + kw;
            // base ≤ the last tap of output j, so base < len.
            let avail = len - base;
            let v = if t.s == 1 {
                // SAFETY: lanes l < n - j read base + l ≤ a valid tap index.
                unsafe { _mm512_maskz_loadu_ps(m, p.add(base)) }
            } else {
                // SAFETY: only lanes below `avail` are read, and `base + 16` is
                // formed only when it is inside `acc`.
                let lo = unsafe { _mm512_maskz_loadu_ps(mask(avail), p.add(base)) };
                let hi = if avail > 16 {
                    // SAFETY: as above.
                    unsafe { _mm512_maskz_loadu_ps(mask(avail - 16), p.add(base + 16)) }
                } else {
                    _mm512_setzero_ps()
                };
                _mm512_permutex2var_ps(lo, even, hi)
            };
            o = if MAX {
                _mm512_max_ps(v, o)
            } else {
                _mm512_add_ps(o, v)
            };
        }
        if !MAX {
            o = _mm512_div_ps(o, dv);
        }
        // SAFETY: lanes below n - j are inside `out`.
        unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(j), m, o) };
        j += 16;
    }
    n
}

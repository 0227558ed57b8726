//! Row kernels for MaxPool / AveragePool over `NCHW` planes.
//!
//! A pooled output row is computed in two passes (see `ops::nn::pool`):
//! [`pool_rows`] combines the kernel's input rows element-wise into one row, then
//! [`pool_taps`] combines, for each output, its `k` consecutive taps of that row taken
//! at stride `s`. Both are SIMD on AVX-512F, AVX2 and NEON; stride 2 deinterleaves in
//! registers (`vpermt2ps` / `shuffle`+`permute` / `ld2`) instead of a separate pass.
//!
//! Every ISA combines values in the same order as the scalar code, with the same
//! operation, so results are bit-identical across ISAs: max is `if v > a { v } else { a }`
//! starting from `f32::MIN` (NaN taps are skipped, `-inf` taps give `f32::MIN`), sums
//! start from `0.0` and add in row / tap order.
#![allow(unsafe_code)]

use super::Isa;

/// `acc[i] = combine(rows[0][i], rows[1][i], …)` for `i < n`, `n` the shortest of `acc`
/// and the rows: the largest (max, from `f32::MIN`) or the sum (from `0.0`), in row order.
pub(crate) fn pool_rows(isa: Isa, max: bool, rows: &[&[f32]], acc: &mut [f32]) {
    let n = rows.iter().map(|r| r.len()).fold(acc.len(), usize::min);
    let acc = &mut acc[..n];
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if isa.is_available() => {
            // SAFETY: AVX-512F is available; every row holds ≥ n floats, `acc` holds n.
            unsafe {
                if max {
                    x86::rows_avx512::<true>(rows, acc)
                } else {
                    x86::rows_avx512::<false>(rows, acc)
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if isa.is_available() => {
            // SAFETY: AVX2 is available; every row holds ≥ n floats, `acc` holds n.
            unsafe {
                if max {
                    x86::rows_avx2::<true>(rows, acc)
                } else {
                    x86::rows_avx2::<false>(rows, acc)
                }
            }
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if isa.is_available() => {
            // SAFETY: NEON is available; every row holds ≥ n floats, `acc` holds n.
            unsafe {
                if max {
                    arm::rows_neon::<true>(rows, acc)
                } else {
                    arm::rows_neon::<false>(rows, acc)
                }
            }
        }
        _ => {
            if max {
                rows_scalar::<true>(rows, acc, 0)
            } else {
                rows_scalar::<false>(rows, acc, 0)
            }
        }
    }
}

/// `out[j] = combine(acc[start + s·j + kw] for kw in 0..k)` (max from `f32::MIN`, or
/// the sum from `0.0` divided by `div`), for every `j < out.len()`.
///
/// # Panics
/// When a tap lies past the end of `acc` or `k == 0` or `s == 0` (caller bugs).
pub(crate) fn pool_taps(isa: Isa, max: bool, acc: &[f32], taps: Taps, div: f32, out: &mut [f32]) {
    let n = out.len();
    if n == 0 {
        return;
    }
    let Taps { start, k, s } = taps;
    assert!(k > 0 && s > 0, "pool_taps: k and s must be positive");
    let last = (n - 1)
        .checked_mul(s)
        .and_then(|x| x.checked_add(start + k - 1));
    assert!(
        last.is_some_and(|l| l < acc.len()),
        "pool_taps: taps past the row"
    );
    let done = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if isa.is_available() && s <= 2 => {
            // SAFETY: AVX-512F is available; every tap index is < acc.len() (checked).
            unsafe {
                if max {
                    x86::taps_avx512::<true>(acc, taps, div, out)
                } else {
                    x86::taps_avx512::<false>(acc, taps, div, out)
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if isa.is_available() && s <= 2 => {
            // SAFETY: AVX2 is available; the kernel checks each vector's reads against
            // acc.len() and leaves the rest to the scalar loop.
            unsafe {
                if max {
                    x86::taps_avx2::<true>(acc, taps, div, out)
                } else {
                    x86::taps_avx2::<false>(acc, taps, div, out)
                }
            }
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if isa.is_available() && s <= 2 => {
            // SAFETY: NEON is available; the kernel checks each vector's reads against
            // acc.len() and leaves the rest to the scalar loop.
            unsafe {
                if max {
                    arm::taps_neon::<true>(acc, taps, div, out)
                } else {
                    arm::taps_neon::<false>(acc, taps, div, out)
                }
            }
        }
        _ => 0,
    };
    if max {
        taps_scalar::<true>(acc, taps, div, out, done)
    } else {
        taps_scalar::<false>(acc, taps, div, out, done)
    }
}

/// One output row for [`pool_planes_k3s2`]: its input rows are `x[first + i·step ..]`
/// for `i < n` (in kernel order), and averages divide by `div`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RowSpec {
    /// Offset of the first input row.
    pub(crate) first: usize,
    /// Input rows (0 when the window is all padding).
    pub(crate) n: usize,
    /// Divisor of the average.
    pub(crate) div: f32,
}

/// Pools whole planes with a 3-wide, stride-2 window (unit dilation) along the rows, in
/// one call: `x` holds planes of `in_len` floats and `out` (whose length sets the number
/// of planes) planes of `out_len`. In every plane, for output row `r` (`specs[r]`) and
/// `j < len`, `out[r·out_w + f0 + j] = combine(V(start + 2j), V(start + 2j + 1),
/// V(start + 2j + 2))` where `V(c)` combines column `c` of the row's input rows (rows `w`
/// wide, `step` apart). Same order and results as [`pool_rows`] then [`pool_taps`], with
/// both passes fused in registers. Returns `false` (and does nothing) when `isa` has no
/// fused kernel or the geometry does not fit the slices.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pool_planes_k3s2(
    isa: Isa,
    max: bool,
    (x, in_len): (&[f32], usize),
    (w, step): (usize, usize),
    specs: &[RowSpec],
    start: usize,
    (out, out_len): (&mut [f32], usize),
    (out_w, f0, len): (usize, usize, usize),
) -> bool {
    if len == 0 || specs.is_empty() || out_len == 0 {
        return true;
    }
    let planes = out.len() / out_len;
    let fits_in = specs.iter().all(|s| {
        s.n == 0
            || (s.n - 1)
                .checked_mul(step)
                .and_then(|v| v.checked_add(s.first)?.checked_add(w))
                .is_some_and(|end| end <= in_len)
    }) && planes.checked_mul(in_len).is_some_and(|n| n <= x.len());
    let fits_out = (specs.len() - 1)
        .checked_mul(out_w)
        .and_then(|v| v.checked_add(f0 + len))
        .is_some_and(|end| end <= out_len && f0 + len <= out_w);
    let taps_in = (len - 1)
        .checked_mul(2)
        .and_then(|v| v.checked_add(start + 2))
        .is_some_and(|last| last < w);
    if !(fits_in && fits_out && taps_in) {
        return false;
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if isa.is_available() => {
            let geo = x86::PlaneGeo {
                w,
                step,
                start,
                out_w,
                f0,
                len,
            };
            for (p, o) in out.chunks_exact_mut(out_len).enumerate() {
                let xp = &x[p * in_len..][..in_len];
                // SAFETY: AVX-512F is available; the geometry was checked against the
                // planes just above (every row read, every tap and every output is inside).
                unsafe {
                    if max {
                        x86::plane_k3s2_avx512::<true>(xp, geo, specs, o)
                    } else {
                        x86::plane_k3s2_avx512::<false>(xp, geo, specs, o)
                    }
                }
            }
            true
        }
        _ => {
            let _ = max;
            false
        }
    }
}

/// Where the taps of output `j` are: `acc[start + s·j + kw]`, `kw < k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taps {
    /// Index of output 0's first tap.
    pub(crate) start: usize,
    /// Taps per output (kernel width).
    pub(crate) k: usize,
    /// Stride between outputs.
    pub(crate) s: usize,
}

#[inline(always)]
fn comb<const MAX: bool>(v: f32, a: f32) -> f32 {
    if MAX {
        if v > a { v } else { a }
    } else {
        a + v
    }
}

#[inline(always)]
fn init<const MAX: bool>() -> f32 {
    if MAX { f32::MIN } else { 0.0 }
}

/// Scalar [`pool_rows`] from element `from` on.
fn rows_scalar<const MAX: bool>(rows: &[&[f32]], acc: &mut [f32], from: usize) {
    acc[from..].fill(init::<MAX>());
    for r in rows {
        for (a, &v) in acc[from..].iter_mut().zip(&r[from..]) {
            *a = comb::<MAX>(v, *a);
        }
    }
}

/// Scalar [`pool_taps`] from output `from` on.
fn taps_scalar<const MAX: bool>(acc: &[f32], t: Taps, div: f32, out: &mut [f32], from: usize) {
    for (j, o) in out.iter_mut().enumerate().skip(from) {
        let row = &acc[t.start + t.s * j..][..t.k];
        let v = row.iter().fold(init::<MAX>(), |a, &v| comb::<MAX>(v, a));
        *o = if MAX { v } else { v / div };
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Taps, init, rows_scalar};
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

    /// `V(c..c+16)`: columns `c..` of the spec's rows combined (lanes past the row: 0).
    /// `N > 0` fixes the row count at compile time (`n` is then `N`).
    ///
    /// # Safety
    /// AVX-512F; `base + i·step + w` within the plane for `i < n`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn vert<const MAX: bool, const N: usize>(
        base: *const f32,
        n: usize,
        step: usize,
        w: usize,
        c: usize,
    ) -> __m512 {
        if c >= w {
            return _mm512_setzero_ps();
        }
        let rows = if N > 0 { N } else { n };
        let mut a = _mm512_set1_ps(init::<MAX>());
        let whole = c + 16 <= w;
        let m = mask(w - c);
        for i in 0..rows {
            // SAFETY: row i starts at base + i·step and holds w floats; c < w and only
            // lanes below w - c are read.
            let v = unsafe {
                let p = base.add(i * step + c);
                if whole {
                    _mm512_loadu_ps(p)
                } else {
                    _mm512_maskz_loadu_ps(m, p)
                }
            };
            a = if MAX {
                _mm512_max_ps(v, a)
            } else {
                _mm512_add_ps(a, v)
            };
        }
        a
    }

    /// # Safety
    /// AVX-512F must be available and the geometry checked as in `pool_planes_k3s2`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn plane_k3s2_avx512<const MAX: bool>(
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
                    3 => row_k3s2::<MAX, 3>(base, spec.n, spec.div, g, orow),
                    2 => row_k3s2::<MAX, 2>(base, spec.n, spec.div, g, orow),
                    _ => row_k3s2::<MAX, 0>(base, spec.n, spec.div, g, orow),
                }
            }
        }
    }

    /// One output row of [`plane_k3s2_avx512`].
    ///
    /// # Safety
    /// AVX-512F; `n` rows from `base` (`g.step` apart, `g.w` wide) readable, `g.len`
    /// outputs from `orow` writable, every tap inside the row.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn row_k3s2<const MAX: bool, const N: usize>(
        base: *const f32,
        n: usize,
        div: f32,
        g: PlaneGeo,
        orow: *mut f32,
    ) {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let init = _mm512_set1_ps(init::<MAX>());
        let (step, w) = (g.step, g.w);
        let dv = _mm512_set1_ps(div);
        // Max: `V` lanes are never NaN and never below `f32::MIN` (each `vert` starts
        // from it), so the scalar order's first step `max(e, f32::MIN)` is `e` itself.
        let mut c = g.start;
        // SAFETY: `vert` reads only inside the rows, as this function requires.
        let (mut v0, mut v1) = unsafe {
            (
                vert::<MAX, N>(base, n, step, w, c),
                vert::<MAX, N>(base, n, step, w, c + 16),
            )
        };
        let mut e = _mm512_permutex2var_ps(v0, even, v1);
        let mut j = 0;
        // Whole blocks whose four `V` vectors lie inside the row: no masks, no branches.
        if N > 0 {
            while j + 16 <= g.len && c + 64 <= w {
                let (mut v2, mut v3) = (init, init);
                for i in 0..N {
                    // SAFETY: c + 64 ≤ w, inside row i.
                    let (a, b) = unsafe {
                        let p = base.add(i * step + c + 32);
                        (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)))
                    };
                    (v2, v3) = if MAX {
                        (_mm512_max_ps(a, v2), _mm512_max_ps(b, v3))
                    } else {
                        (_mm512_add_ps(v2, a), _mm512_add_ps(v3, b))
                    };
                }
                let e_next = _mm512_permutex2var_ps(v2, even, v3);
                let o1 = _mm512_permutex2var_ps(v0, odd, v1);
                let e2 = _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(
                    _mm512_castps_si512(e_next),
                    _mm512_castps_si512(e),
                ));
                let o = if MAX {
                    _mm512_max_ps(e2, _mm512_max_ps(o1, e))
                } else {
                    let s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(init, e), o1), e2);
                    _mm512_div_ps(s, dv)
                };
                // SAFETY: j + 16 ≤ len.
                unsafe { _mm512_storeu_ps(orow.add(j), o) };
                (v0, v1, e) = (v2, v3, e_next);
                c += 32;
                j += 16;
            }
        }
        while j < g.len {
            // SAFETY: as above.
            let (v2, v3) = unsafe {
                (
                    vert::<MAX, N>(base, n, step, w, c + 32),
                    vert::<MAX, N>(base, n, step, w, c + 48),
                )
            };
            let e_next = _mm512_permutex2var_ps(v2, even, v3);
            let o1 = _mm512_permutex2var_ps(v0, odd, v1);
            // Taps c + 2i + 2: the even lanes shifted by one, the last from the next block.
            let e2 = _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(
                _mm512_castps_si512(e_next),
                _mm512_castps_si512(e),
            ));
            let o = if MAX {
                _mm512_max_ps(e2, _mm512_max_ps(o1, e))
            } else {
                let s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(init, e), o1), e2);
                _mm512_div_ps(s, dv)
            };
            // SAFETY: lanes below len - j are inside the output row.
            unsafe {
                if j + 16 <= g.len {
                    _mm512_storeu_ps(orow.add(j), o)
                } else {
                    _mm512_mask_storeu_ps(orow.add(j), mask(g.len - j), o)
                }
            };
            (v0, v1, e) = (v2, v3, e_next);
            c += 32;
            j += 16;
        }
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

    /// # Safety
    /// AVX2 must be available; every row must hold ≥ `acc.len()` floats.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn rows_avx2<const MAX: bool>(rows: &[&[f32]], acc: &mut [f32]) {
        let n = acc.len();
        let init = _mm256_set1_ps(init::<MAX>());
        let mut i = 0;
        while i + 8 <= n {
            let mut a = init;
            for r in rows {
                // SAFETY: i + 8 ≤ n ≤ r.len().
                let v = unsafe { _mm256_loadu_ps(r.as_ptr().add(i)) };
                a = if MAX {
                    _mm256_max_ps(v, a)
                } else {
                    _mm256_add_ps(a, v)
                };
            }
            // SAFETY: i + 8 ≤ acc.len().
            unsafe { _mm256_storeu_ps(acc.as_mut_ptr().add(i), a) };
            i += 8;
        }
        rows_scalar::<MAX>(rows, acc, i);
    }

    /// Returns how many leading outputs were done (the rest is the scalar loop's).
    ///
    /// # Safety
    /// AVX2 must be available; `t.s ≤ 2`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn taps_avx2<const MAX: bool>(
        acc: &[f32],
        t: Taps,
        div: f32,
        out: &mut [f32],
    ) -> usize {
        let (n, len, p) = (out.len(), acc.len(), acc.as_ptr());
        let (init, dv) = (_mm256_set1_ps(init::<MAX>()), _mm256_set1_ps(div));
        // Floats read per tap vector.
        let width = 8 * t.s;
        let mut j = 0;
        while j + 8 <= n && t.start + t.s * j + t.k - 1 + width <= len {
            let mut o = init;
            for kw in 0..t.k {
                let base = t.start + t.s * j + kw;
                let v = if t.s == 1 {
                    // SAFETY: base + 8 ≤ len (loop condition).
                    unsafe { _mm256_loadu_ps(p.add(base)) }
                } else {
                    // SAFETY: base + 16 ≤ len (loop condition).
                    let (lo, hi) = unsafe {
                        (
                            _mm256_loadu_ps(p.add(base)),
                            _mm256_loadu_ps(p.add(base + 8)),
                        )
                    };
                    // [lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6] -> lo0 lo2 lo4 lo6 hi0 hi2 hi4 hi6.
                    let e = _mm256_shuffle_ps::<0b10_00_10_00>(lo, hi);
                    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(e)))
                };
                o = if MAX {
                    _mm256_max_ps(v, o)
                } else {
                    _mm256_add_ps(o, v)
                };
            }
            if !MAX {
                o = _mm256_div_ps(o, dv);
            }
            // SAFETY: j + 8 ≤ n.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(j), o) };
            j += 8;
        }
        j
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::{Taps, init, rows_scalar};
    use std::arch::aarch64::*;

    /// `if v > a { v } else { a }` lane-wise (not `fmax`, which propagates NaN).
    #[target_feature(enable = "neon")]
    #[inline]
    fn comb_v<const MAX: bool>(v: float32x4_t, a: float32x4_t) -> float32x4_t {
        if MAX {
            vbslq_f32(vcgtq_f32(v, a), v, a)
        } else {
            vaddq_f32(a, v)
        }
    }

    /// # Safety
    /// NEON must be available; every row must hold ≥ `acc.len()` floats.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn rows_neon<const MAX: bool>(rows: &[&[f32]], acc: &mut [f32]) {
        let n = acc.len();
        let init = vdupq_n_f32(init::<MAX>());
        let mut i = 0;
        while i + 4 <= n {
            let mut a = init;
            for r in rows {
                // SAFETY: i + 4 ≤ n ≤ r.len().
                a = unsafe { comb_v::<MAX>(vld1q_f32(r.as_ptr().add(i)), a) };
            }
            // SAFETY: i + 4 ≤ acc.len().
            unsafe { vst1q_f32(acc.as_mut_ptr().add(i), a) };
            i += 4;
        }
        rows_scalar::<MAX>(rows, acc, i);
    }

    /// Returns how many leading outputs were done (the rest is the scalar loop's).
    ///
    /// # Safety
    /// NEON must be available; `t.s ≤ 2`.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn taps_neon<const MAX: bool>(
        acc: &[f32],
        t: Taps,
        div: f32,
        out: &mut [f32],
    ) -> usize {
        let (n, len, p) = (out.len(), acc.len(), acc.as_ptr());
        let (init, dv) = (vdupq_n_f32(init::<MAX>()), vdupq_n_f32(div));
        let width = 4 * t.s;
        let mut j = 0;
        while j + 4 <= n && t.start + t.s * j + t.k - 1 + width <= len {
            let mut o = init;
            for kw in 0..t.k {
                let base = t.start + t.s * j + kw;
                // SAFETY: base + width ≤ len (loop condition).
                let v = unsafe {
                    if t.s == 1 {
                        vld1q_f32(p.add(base))
                    } else {
                        vld2q_f32(p.add(base)).0
                    }
                };
                o = comb_v::<MAX>(v, o);
            }
            if !MAX {
                o = vdivq_f32(o, dv);
            }
            // SAFETY: j + 4 ≤ n.
            unsafe { vst1q_f32(out.as_mut_ptr().add(j), o) };
            j += 4;
        }
        j
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn isas() -> Vec<Isa> {
        super::super::available_isas()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// Every ISA gives the scalar path's bits (max and sum use the same order).
        #[test]
        fn simd_pool_matches_scalar(
            n in 1usize..80,
            nrows in 1usize..5,
            k in 1usize..5,
            s in 1usize..4,
            start in 0usize..3,
            max in any::<bool>(),
            seed in any::<u64>(),
            specials in any::<bool>(),
        ) {
            let mut state = seed | 1;
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let v = ((state >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0;
                match (specials, state % 11) {
                    (true, 0) => f32::NAN,
                    (true, 1) => -0.0,
                    (true, 2) => 0.0,
                    (true, 3) => f32::NEG_INFINITY,
                    _ => v,
                }
            };
            let data: Vec<Vec<f32>> = (0..nrows).map(|_| (0..n).map(|_| next()).collect()).collect();
            let rows: Vec<&[f32]> = data.iter().map(|r| &r[..]).collect();
            let mut want_acc = vec![0.0f32; n];
            if max {
                rows_scalar::<true>(&rows, &mut want_acc, 0);
            } else {
                rows_scalar::<false>(&rows, &mut want_acc, 0);
            }
            let outs = if n >= start + k { (n - start - k) / s + 1 } else { 0 };
            let taps = Taps { start, k, s };
            let mut want = vec![0.0f32; outs];
            if max {
                taps_scalar::<true>(&want_acc, taps, 3.0, &mut want, 0);
            } else {
                taps_scalar::<false>(&want_acc, taps, 3.0, &mut want, 0);
            }
            for isa in isas() {
                let mut acc = vec![7.0f32; n];
                pool_rows(isa, max, &rows, &mut acc);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                prop_assert_eq!(bits(&acc), bits(&want_acc), "rows on {:?}", isa);
                let mut got = vec![7.0f32; outs];
                pool_taps(isa, max, &acc, taps, 3.0, &mut got);
                prop_assert_eq!(bits(&got), bits(&want), "taps on {:?}", isa);
            }
        }
        /// The fused plane kernel gives the two-pass scalar bits on every row.
        #[test]
        fn fused_plane_matches_two_pass(
            h in 1usize..6,
            w in 3usize..150,
            start in 0usize..2,
            max in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let mut state = seed | 1;
            let x: Vec<f32> = (0..h * w).map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                match state % 13 {
                    0 => f32::NAN,
                    1 => -0.0,
                    2 => f32::NEG_INFINITY,
                    _ => ((state >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0,
                }
            }).collect();
            if start + 2 >= w {
                return Ok(());
            }
            let len = (w - start - 3) / 2 + 1;
            // Output row r reads rows r.. up to three, fewer at the bottom, none for the last.
            let specs: Vec<RowSpec> = (0..=h)
                .map(|r| RowSpec { first: r.min(h - 1) * w, n: 3.min(h - r.min(h)), div: 2.5 })
                .collect();
            let out_w = len + 3;
            let mut want = vec![1.5f32; specs.len() * out_w];
            for (r, sp) in specs.iter().enumerate() {
                let rows: Vec<&[f32]> = (0..sp.n).map(|i| &x[sp.first + i * w..][..w]).collect();
                let mut acc = vec![0.0; w];
                pool_rows(Isa::Scalar, max, &rows, &mut acc);
                let taps = Taps { start, k: 3, s: 2 };
                pool_taps(Isa::Scalar, max, &acc, taps, sp.div, &mut want[r * out_w + 1..][..len]);
            }
            for isa in isas() {
                let mut got = vec![1.5f32; specs.len() * out_w];
                let n_out = got.len();
                if pool_planes_k3s2(isa, max, (&x, x.len()), (w, w), &specs, start, (&mut got, n_out), (out_w, 1, len)) {
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    prop_assert_eq!(bits(&got), bits(&want), "{:?}", isa);
                }
            }
        }
    }
}

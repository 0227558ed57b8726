//! AVX-512F and AVX2 pooling kernels (see the parent module).
#![allow(unsafe_code)]

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

/// Lanes `i < k` set (`k ≤ 8`), for AVX masked loads and stores.
#[target_feature(enable = "avx2")]
#[inline]
fn lanes8(k: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(k as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// The AVX2 twin of [`vert`]: 8 columns.
///
/// # Safety
/// AVX2; `base + i·step + w` within the plane for `i < n`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn vert8<const MAX: bool, const N: usize>(
    base: *const f32,
    n: usize,
    step: usize,
    w: usize,
    c: usize,
) -> __m256 {
    if c >= w {
        return _mm256_setzero_ps();
    }
    let rows = if N > 0 { N } else { n };
    let mut a = _mm256_set1_ps(init::<MAX>());
    let whole = c + 8 <= w;
    let m = lanes8((w - c).min(8));
    for i in 0..rows {
        // SAFETY: row i starts at base + i·step and holds w floats; c < w and only
        // lanes below w - c are read.
        let v = unsafe {
            let p = base.add(i * step + c);
            if whole {
                _mm256_loadu_ps(p)
            } else {
                _mm256_maskload_ps(p, m)
            }
        };
        a = if MAX {
            _mm256_max_ps(v, a)
        } else {
            _mm256_add_ps(a, v)
        };
    }
    a
}

/// Even lanes of `lo ++ hi`.
#[target_feature(enable = "avx2")]
#[inline]
fn even8(lo: __m256, hi: __m256) -> __m256 {
    // [lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6] -> lo0 lo2 lo4 lo6 hi0 hi2 hi4 hi6.
    let t = _mm256_shuffle_ps::<0b10_00_10_00>(lo, hi);
    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(t)))
}

/// Odd lanes of `lo ++ hi`.
#[target_feature(enable = "avx2")]
#[inline]
fn odd8(lo: __m256, hi: __m256) -> __m256 {
    let t = _mm256_shuffle_ps::<0b11_01_11_01>(lo, hi);
    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(t)))
}

/// The AVX2 twin of [`plane_k3s2_avx512`] (8 outputs per step).
///
/// # Safety
/// AVX2 must be available and the geometry checked as in `pool_planes_k3s2`.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn plane_k3s2_avx2<const MAX: bool>(
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
                3 => row_k3s2_avx2::<MAX, 3>(base, spec.n, spec.div, g, orow),
                2 => row_k3s2_avx2::<MAX, 2>(base, spec.n, spec.div, g, orow),
                _ => row_k3s2_avx2::<MAX, 0>(base, spec.n, spec.div, g, orow),
            }
        }
    }
}

/// One output row of [`plane_k3s2_avx2`].
///
/// # Safety
/// AVX2; `n` rows from `base` (`g.step` apart, `g.w` wide) readable, `g.len` outputs
/// from `orow` writable, every tap inside the row.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn row_k3s2_avx2<const MAX: bool, const N: usize>(
    base: *const f32,
    n: usize,
    div: f32,
    g: PlaneGeo,
    orow: *mut f32,
) {
    let init = _mm256_set1_ps(init::<MAX>());
    let (step, w) = (g.step, g.w);
    let dv = _mm256_set1_ps(div);
    let mut c = g.start;
    // SAFETY: `vert8` reads only inside the rows, as this function requires.
    let (mut v0, mut v1) = unsafe {
        (
            vert8::<MAX, N>(base, n, step, w, c),
            vert8::<MAX, N>(base, n, step, w, c + 8),
        )
    };
    let mut e = even8(v0, v1);
    let mut j = 0;
    while j < g.len {
        // SAFETY: as above.
        let (v2, v3) = unsafe {
            (
                vert8::<MAX, N>(base, n, step, w, c + 16),
                vert8::<MAX, N>(base, n, step, w, c + 24),
            )
        };
        let e_next = even8(v2, v3);
        let o1 = odd8(v0, v1);
        // Taps c + 2i + 2: [e1 .. e7, e_next0] (alignr works within 128-bit halves).
        let t = _mm256_permute2f128_ps::<0x21>(e, e_next);
        let e2 = _mm256_castsi256_ps(_mm256_alignr_epi8::<4>(
            _mm256_castps_si256(t),
            _mm256_castps_si256(e),
        ));
        // Max: `V` lanes are never NaN nor below `f32::MIN`, so max(e, f32::MIN) = e.
        let o = if MAX {
            _mm256_max_ps(e2, _mm256_max_ps(o1, e))
        } else {
            let s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(init, e), o1), e2);
            _mm256_div_ps(s, dv)
        };
        // SAFETY: lanes below len - j are inside the output row.
        unsafe {
            if j + 8 <= g.len {
                _mm256_storeu_ps(orow.add(j), o)
            } else {
                _mm256_maskstore_ps(orow.add(j), lanes8(g.len - j), o)
            }
        };
        (v0, v1, e) = (v2, v3, e_next);
        c += 16;
        j += 8;
    }
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

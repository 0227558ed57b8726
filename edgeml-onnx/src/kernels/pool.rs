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
    #[inline(always)]
    unsafe fn comb_v<const MAX: bool>(v: float32x4_t, a: float32x4_t) -> float32x4_t {
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
                // SAFETY: NEON is available.
                o = unsafe { comb_v::<MAX>(v, o) };
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
    }
}

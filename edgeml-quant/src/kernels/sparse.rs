//! The inner loop of the sparse INT8 product ([`crate::sparse`]): for a block of `R`
//! rows of `A` stored transposed (`xt[kk]` holds `A[i..i+R, kk] − zA` as i32), each
//! output column `j` accumulates `w·xt[kk]` over the stored entries `(kk, w)` of `B`'s
//! column `j` (`w = B[kk, j] − zB[j]`), `R` lanes wide, in four interleaved i32
//! accumulators. Every operation wraps modulo 2³², as the dense kernels' accumulators
//! do, so the sums equal theirs bit for bit whatever the order.
//!
//! The body is safe Rust compiled once per ISA with the matching target features
//! (AVX-512F, AVX2; NEON is aarch64's baseline) so that the lane loops vectorise. With
//! AVX-512 VNNI, 16-row blocks use `vpdpwssd` instead (one instruction per stored
//! entry where the compiled body needs a multiply and an add): a lane holds `x`
//! sign-extended to i32, whose low i16 is `x` (`|x| ≤ 255`) and high i16 is its sign,
//! and the broadcast weight is `w` in the low i16 and 0 in the high one, so the pair
//! dot product is exactly `x·w`, added without saturation.
#![allow(unsafe_code)]

use super::Isa;

/// A compressed sparse column view of the weights, as [`crate::sparse::SparseB`]
/// stores them.
pub(crate) struct Csc<'a> {
    /// Column `j`'s entries are `row_idx[col_ptr[j]..col_ptr[j + 1]]` (and `vals`).
    pub(crate) col_ptr: &'a [usize],
    pub(crate) row_idx: &'a [u32],
    pub(crate) vals: &'a [i16],
}

/// Fills `out[jj]` with the `R` lane sums of column `j0 + jj` of `b` against `xt`, with
/// the body compiled for `isa` (an unavailable ISA runs the portable build).
pub(crate) fn columns<const R: usize>(
    isa: Isa,
    xt: &[[i32; R]],
    b: &Csc<'_>,
    j0: usize,
    out: &mut [[i32; R]],
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Amx | Isa::Avx512Vnni
            if R == 16
                && std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vnni") =>
        {
            let (xt16, _) = xt.as_flattened().as_chunks::<16>();
            let (out16, _) = out.as_flattened_mut().as_chunks_mut::<16>();
            // SAFETY: the CPU supports AVX-512F and AVX-512 VNNI (checked just above).
            unsafe { body_vnni16(xt16, b, j0, out16) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Amx | Isa::Avx512Vnni if std::arch::is_x86_feature_detected!("avx512f") => {
            // SAFETY: the CPU supports AVX-512F (checked just above); the body is safe
            // Rust with bounds-checked slices.
            unsafe { body_avx512::<R>(xt, b, j0, out) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Amx | Isa::Avx512Vnni | Isa::AvxVnni | Isa::Avx2
            if std::arch::is_x86_feature_detected!("avx2") =>
        {
            // SAFETY: the CPU supports AVX2 (checked just above); the body is safe Rust
            // with bounds-checked slices.
            unsafe { body_avx2::<R>(xt, b, j0, out) }
        }
        _ => body::<R>(xt, b, j0, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn body_avx512<const R: usize>(xt: &[[i32; R]], b: &Csc<'_>, j0: usize, out: &mut [[i32; R]]) {
    body::<R>(xt, b, j0, out)
}

/// [`body`] for 16 lanes with `vpdpwssd` (see the module notes for why it is exact).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
fn body_vnni16(xt: &[[i32; 16]], b: &Csc<'_>, j0: usize, out: &mut [[i32; 16]]) {
    use core::arch::x86_64::{
        __m512i, _mm512_add_epi32, _mm512_dpwssd_epi32, _mm512_loadu_si512, _mm512_set1_epi32,
        _mm512_setzero_si512, _mm512_storeu_si512,
    };
    // A closure inherits the function's target features.
    let step = |acc: __m512i, w: i16, x: &[i32; 16]| -> __m512i {
        // SAFETY: `x` is 64 readable bytes; the load has no alignment requirement.
        let xv = unsafe { _mm512_loadu_si512(x.as_ptr().cast()) };
        // `w` in the low i16 of each lane, 0 in the high one.
        let wv = _mm512_set1_epi32(i32::from(w as u16));
        _mm512_dpwssd_epi32(acc, xv, wv)
    };
    for (jj, o) in out.iter_mut().enumerate() {
        let j = j0 + jj;
        let (s, e) = (b.col_ptr[j], b.col_ptr[j + 1]);
        let (idx, val) = (&b.row_idx[s..e], &b.vals[s..e]);
        let mut acc = [_mm512_setzero_si512(); 4];
        let (i4, it) = idx.as_chunks::<4>();
        let (v4, vt) = val.as_chunks::<4>();
        for (ik, wk) in i4.iter().zip(v4) {
            for q in 0..4 {
                acc[q] = step(acc[q], wk[q], &xt[ik[q] as usize]);
            }
        }
        for (&kk, &w) in it.iter().zip(vt) {
            acc[0] = step(acc[0], w, &xt[kk as usize]);
        }
        let sum = _mm512_add_epi32(
            _mm512_add_epi32(acc[0], acc[1]),
            _mm512_add_epi32(acc[2], acc[3]),
        );
        // SAFETY: `o` is 64 writable bytes; the store has no alignment requirement.
        unsafe { _mm512_storeu_si512(o.as_mut_ptr().cast(), sum) };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn body_avx2<const R: usize>(xt: &[[i32; R]], b: &Csc<'_>, j0: usize, out: &mut [[i32; R]]) {
    body::<R>(xt, b, j0, out)
}

/// `out[jj] = Σ w·xt[kk]` over the entries `(kk, w)` of column `j0 + jj`, wrapping.
#[inline(always)]
fn body<const R: usize>(xt: &[[i32; R]], b: &Csc<'_>, j0: usize, out: &mut [[i32; R]]) {
    #[inline(always)]
    fn axpy<const R: usize>(acc: &mut [i32; R], w: i16, x: &[i32; R]) {
        let w = i32::from(w);
        for (a, &x) in acc.iter_mut().zip(x) {
            *a = a.wrapping_add(w.wrapping_mul(x));
        }
    }
    for (jj, o) in out.iter_mut().enumerate() {
        let j = j0 + jj;
        let (s, e) = (b.col_ptr[j], b.col_ptr[j + 1]);
        let (idx, val) = (&b.row_idx[s..e], &b.vals[s..e]);
        let mut acc = [[0i32; R]; 4];
        let (i4, it) = idx.as_chunks::<4>();
        let (v4, vt) = val.as_chunks::<4>();
        for (ik, wk) in i4.iter().zip(v4) {
            for q in 0..4 {
                axpy::<R>(&mut acc[q], wk[q], &xt[ik[q] as usize]);
            }
        }
        for (&kk, &w) in it.iter().zip(vt) {
            axpy::<R>(&mut acc[0], w, &xt[kk as usize]);
        }
        for (r, o) in o.iter_mut().enumerate() {
            *o = acc[0][r]
                .wrapping_add(acc[1][r])
                .wrapping_add(acc[2][r].wrapping_add(acc[3][r]));
        }
    }
}

//! The inner loop of the sparse INT8 product ([`crate::sparse`]): for a block of `R`
//! rows of `A` stored transposed (`xt[kk]` holds `A[i..i+R, kk] − zA` as i32), each
//! output column `j` accumulates `w·xt[kk]` over the stored entries `(kk, w)` of `B`'s
//! column `j` (`w = B[kk, j] − zB[j]`), `R` lanes wide, in four interleaved i32
//! accumulators. Every operation wraps modulo 2³², as the dense kernels' accumulators
//! do, so the sums equal theirs bit for bit whatever the order.
//!
//! The body is safe Rust compiled once per ISA with the matching target features
//! (AVX-512F, AVX2; NEON is aarch64's baseline) so that the lane loops vectorise.
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

//! Portable scalar micro-kernels: the reference twin of the SIMD kernels (4×8 tile).
#![allow(unsafe_code)]

use super::KernelSet;

const MR: usize = 4;
const NR: usize = 8;

pub(super) static KERNELS: KernelSet = KernelSet {
    mr: MR,
    nr: NR,
    kc: 256,
    mc: 64,
    nc: 512,
    ukernel,
    edge: None,
    rows: None,
    gemv,
};

/// `C[0..4, 0..8] = alpha·Σ_k a[k]⊗b[k] + beta·C`.
///
/// # Safety
/// `a` must point to `kc·4` floats, `b` to `kc·8` floats, and `c` to a 4×8 tile with row
/// stride `ldc` that is valid for writes (and reads when `beta != 0`).
unsafe fn ukernel(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
) {
    // SAFETY: the caller guarantees `a` and `b` point to `kc·MR` and `kc·NR` floats.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a, kc * MR),
            std::slice::from_raw_parts(b, kc * NR),
        )
    };
    let mut acc = [[0.0f32; NR]; MR];
    for (ak, bk) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for (row, &av) in acc.iter_mut().zip(ak) {
            for (x, &bv) in row.iter_mut().zip(bk) {
                *x += av * bv;
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: the caller guarantees the MR×NR tile at `c` with stride `ldc` is valid.
        let out = unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc), NR) };
        for (o, &v) in out.iter_mut().zip(row) {
            *o = if beta == 0.0 {
                alpha * v
            } else {
                alpha * v + beta * *o
            };
        }
    }
}

/// `acc[0..8] += Σ_k a[k]·b[k·ldb..k·ldb+8]`.
///
/// # Safety
/// `a` must point to `kc` floats, `b` to `(kc-1)·ldb + 8` floats (when `kc > 0`) and
/// `acc` to 8 writable floats.
unsafe fn gemv(kc: usize, a: *const f32, b: *const f32, ldb: usize, acc: *mut f32) {
    if kc == 0 {
        return;
    }
    // SAFETY: the caller guarantees the three extents.
    let (a, b, acc) = unsafe {
        (
            std::slice::from_raw_parts(a, kc),
            std::slice::from_raw_parts(b, (kc - 1) * ldb + NR),
            std::slice::from_raw_parts_mut(acc, NR),
        )
    };
    let mut s = [0.0f32; NR];
    for (kk, &av) in a.iter().enumerate() {
        let bk = &b[kk * ldb..kk * ldb + NR];
        for (x, &bv) in s.iter_mut().zip(bk) {
            *x += av * bv;
        }
    }
    for (o, v) in acc.iter_mut().zip(s) {
        *o += v;
    }
}

//! NEON micro-kernels (8×8 register tile: 16 accumulators, `fmla` by lane).
#![allow(unsafe_code)]

use super::KernelSet;
use std::arch::aarch64::*;

const MR: usize = 8;
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

/// `C[0..8, 0..8] = alpha·Σ_k a[k]⊗b[k] + beta·C`.
///
/// # Safety
/// The CPU must support NEON. `a` must point to `kc·8` floats, `b` to `kc·8` floats, and
/// `c` to an 8×8 tile with row stride `ldc` valid for writes (and reads when `beta != 0`).
#[target_feature(enable = "neon")]
unsafe fn ukernel(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
) {
    let z = vdupq_n_f32(0.0);
    let mut acc = [[z; 2]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        // SAFETY: each iteration reads 8 floats of `a` and 8 of `b`, within the kc·8
        // extents the caller guarantees.
        unsafe {
            let b0 = vld1q_f32(b);
            let b1 = vld1q_f32(b.add(4));
            let a0 = vld1q_f32(a);
            let a1 = vld1q_f32(a.add(4));
            acc[0][0] = vfmaq_laneq_f32::<0>(acc[0][0], b0, a0);
            acc[0][1] = vfmaq_laneq_f32::<0>(acc[0][1], b1, a0);
            acc[1][0] = vfmaq_laneq_f32::<1>(acc[1][0], b0, a0);
            acc[1][1] = vfmaq_laneq_f32::<1>(acc[1][1], b1, a0);
            acc[2][0] = vfmaq_laneq_f32::<2>(acc[2][0], b0, a0);
            acc[2][1] = vfmaq_laneq_f32::<2>(acc[2][1], b1, a0);
            acc[3][0] = vfmaq_laneq_f32::<3>(acc[3][0], b0, a0);
            acc[3][1] = vfmaq_laneq_f32::<3>(acc[3][1], b1, a0);
            acc[4][0] = vfmaq_laneq_f32::<0>(acc[4][0], b0, a1);
            acc[4][1] = vfmaq_laneq_f32::<0>(acc[4][1], b1, a1);
            acc[5][0] = vfmaq_laneq_f32::<1>(acc[5][0], b0, a1);
            acc[5][1] = vfmaq_laneq_f32::<1>(acc[5][1], b1, a1);
            acc[6][0] = vfmaq_laneq_f32::<2>(acc[6][0], b0, a1);
            acc[6][1] = vfmaq_laneq_f32::<2>(acc[6][1], b1, a1);
            acc[7][0] = vfmaq_laneq_f32::<3>(acc[7][0], b0, a1);
            acc[7][1] = vfmaq_laneq_f32::<3>(acc[7][1], b1, a1);
            a = a.add(MR);
            b = b.add(NR);
        }
    }
    let va = vdupq_n_f32(alpha);
    let vb = vdupq_n_f32(beta);
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: row r of the tile spans c[r·ldc .. r·ldc + 8], valid per the contract;
        // C is read only when beta != 0.
        unsafe {
            let p = c.add(r * ldc);
            let mut v0 = vmulq_f32(va, row[0]);
            let mut v1 = vmulq_f32(va, row[1]);
            if beta != 0.0 {
                v0 = vfmaq_f32(v0, vb, vld1q_f32(p));
                v1 = vfmaq_f32(v1, vb, vld1q_f32(p.add(4)));
            }
            vst1q_f32(p, v0);
            vst1q_f32(p.add(4), v1);
        }
    }
}

/// `acc[0..8] += Σ_k a[k]·b[k·ldb..k·ldb+8]`.
///
/// # Safety
/// The CPU must support NEON; `a` must point to `kc` floats, `b` to `(kc-1)·ldb + 8`
/// floats and `acc` to 8 writable floats.
#[target_feature(enable = "neon")]
unsafe fn gemv(kc: usize, a: *const f32, b: *const f32, ldb: usize, acc: *mut f32) {
    let z = vdupq_n_f32(0.0);
    let mut s = [z; 8];
    let mut k = 0;
    // SAFETY: reads stay below a[kc] and b[(kc-1)·ldb + 8] (k + 3 < kc in the unrolled loop, k < kc
    // in the tail); `acc` holds 8 floats.
    unsafe {
        while k + 4 <= kc {
            let av = vld1q_f32(a.add(k));
            let b0 = b.add(k * ldb);
            let b1 = b.add((k + 1) * ldb);
            let b2 = b.add((k + 2) * ldb);
            let b3 = b.add((k + 3) * ldb);
            s[0] = vfmaq_laneq_f32::<0>(s[0], vld1q_f32(b0), av);
            s[1] = vfmaq_laneq_f32::<0>(s[1], vld1q_f32(b0.add(4)), av);
            s[2] = vfmaq_laneq_f32::<1>(s[2], vld1q_f32(b1), av);
            s[3] = vfmaq_laneq_f32::<1>(s[3], vld1q_f32(b1.add(4)), av);
            s[4] = vfmaq_laneq_f32::<2>(s[4], vld1q_f32(b2), av);
            s[5] = vfmaq_laneq_f32::<2>(s[5], vld1q_f32(b2.add(4)), av);
            s[6] = vfmaq_laneq_f32::<3>(s[6], vld1q_f32(b3), av);
            s[7] = vfmaq_laneq_f32::<3>(s[7], vld1q_f32(b3.add(4)), av);
            k += 4;
        }
        while k < kc {
            let av = vdupq_n_f32(*a.add(k));
            let bp = b.add(k * ldb);
            s[0] = vfmaq_f32(s[0], av, vld1q_f32(bp));
            s[1] = vfmaq_f32(s[1], av, vld1q_f32(bp.add(4)));
            k += 1;
        }
        let lo = vaddq_f32(vaddq_f32(s[0], s[2]), vaddq_f32(s[4], s[6]));
        let hi = vaddq_f32(vaddq_f32(s[1], s[3]), vaddq_f32(s[5], s[7]));
        vst1q_f32(acc, vaddq_f32(vld1q_f32(acc), lo));
        vst1q_f32(acc.add(4), vaddq_f32(vld1q_f32(acc.add(4)), hi));
    }
}

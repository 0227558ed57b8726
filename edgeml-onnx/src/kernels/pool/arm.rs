//! NEON pooling kernels (see the parent module).
#![allow(unsafe_code)]

use super::{Taps, init, rows_scalar};

/// The NEON vector ops the parent's `rows_kernel!` / `taps_kernel!` bodies expand with.
mod v4 {
    #![allow(unsafe_code)]
    use std::arch::aarch64::*;

    /// Lanes per vector.
    pub(super) const L: usize = 4;

    #[target_feature(enable = "neon")]
    #[inline]
    pub(super) fn set1(x: f32) -> float32x4_t {
        vdupq_n_f32(x)
    }

    /// # Safety
    /// NEON; 4 floats readable at `p`.
    #[target_feature(enable = "neon")]
    #[inline]
    pub(super) unsafe fn loadu(p: *const f32) -> float32x4_t {
        // SAFETY: forwarded contract.
        unsafe { vld1q_f32(p) }
    }

    /// Even lanes of the 8 floats at `p`.
    ///
    /// # Safety
    /// NEON; 8 floats readable at `p`.
    #[target_feature(enable = "neon")]
    #[inline]
    pub(super) unsafe fn load_even(p: *const f32) -> float32x4_t {
        // SAFETY: forwarded contract.
        unsafe { vld2q_f32(p).0 }
    }

    /// # Safety
    /// NEON; 4 floats writable at `p`.
    #[target_feature(enable = "neon")]
    #[inline]
    pub(super) unsafe fn storeu(p: *mut f32, v: float32x4_t) {
        // SAFETY: forwarded contract.
        unsafe { vst1q_f32(p, v) }
    }

    /// `if v > a { v } else { a }` lane-wise (not `fmax`, which propagates NaN).
    #[target_feature(enable = "neon")]
    #[inline]
    pub(super) fn comb<const MAX: bool>(v: float32x4_t, a: float32x4_t) -> float32x4_t {
        if MAX {
            vbslq_f32(vcgtq_f32(v, a), v, a)
        } else {
            vaddq_f32(a, v)
        }
    }

    #[target_feature(enable = "neon")]
    #[inline]
    pub(super) fn div(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        vdivq_f32(a, b)
    }
}

rows_kernel! {
    /// # Safety
    /// NEON must be available; every row must hold ≥ `acc.len()` floats.
    rows_neon, "neon", v4
}

taps_kernel! {
    /// Returns how many leading outputs were done (the rest is the scalar loop's).
    ///
    /// # Safety
    /// NEON must be available; `t.s ≤ 2`.
    taps_neon, "neon", v4
}

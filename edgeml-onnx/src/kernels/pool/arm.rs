//! NEON pooling kernels (see the parent module).
#![allow(unsafe_code)]

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

//! The portable kernel, also the structure every SIMD kernel follows.
#![allow(unsafe_code)]

use super::driver::{Indirect, Job, MAX_TILE, Tile, block_loop, block_loop_ind};
use core::ops::Range;

pub(crate) struct Scalar;

impl Tile for Scalar {
    const MR: usize = 4;
    const NR: usize = 8;
    const KS: usize = 4;
    const ESZ: usize = 1;

    #[inline(always)]
    unsafe fn tile(
        rows: usize,
        segs: usize,
        seg: usize,
        ap: *const *const u8,
        b: *const u8,
        buf: &mut [i32; MAX_TILE],
    ) {
        // SAFETY: the caller guarantees a full panel of `segs·seg·NR` elements.
        let b = unsafe { core::slice::from_raw_parts(b.cast::<i8>(), segs * seg * Self::NR) };
        for r in 0..rows {
            let mut acc = [0i32; 8];
            for t in 0..segs {
                // SAFETY: each row pointer of each segment holds `seg` bytes.
                let ar = unsafe { core::slice::from_raw_parts(*ap.add(r * segs + t), seg) };
                let bt = &b[t * seg * 8..(t + 1) * seg * 8];
                for (aq, bq) in ar.chunks_exact(4).zip(bt.chunks_exact(32)) {
                    for (j, bj) in bq.chunks_exact(4).enumerate() {
                        let s = (0..4).fold(0i32, |s, t| {
                            s.wrapping_add(i32::from(aq[t]) * i32::from(bj[t]))
                        });
                        acc[j] = acc[j].wrapping_add(s);
                    }
                }
            }
            buf[r * 8..r * 8 + 8].copy_from_slice(&acc);
        }
    }
}

/// # Safety
/// As [`block_loop`].
pub(crate) unsafe fn block(job: &Job<'_>, mt: Range<usize>, np: Range<usize>) {
    // SAFETY: forwarded contract.
    unsafe { block_loop::<Scalar>(job, mt, np) }
}

/// # Safety
/// As [`block_loop_ind`].
pub(crate) unsafe fn block_ind(job: &Job<'_>, ind: &Indirect, mt: Range<usize>, np: Range<usize>) {
    // SAFETY: forwarded contract.
    unsafe { block_loop_ind::<Scalar>(job, ind, mt, np) }
}

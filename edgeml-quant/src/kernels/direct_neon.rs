//! aarch64 tiles of the direct convolution: `sdot` on `x' − 128` (dotprod) and `smlal`
//! by lane on i16 (plain NEON), both as 4-row × 16-lane sub-tiles, followed by the
//! portable epilogue.
#![allow(unsafe_code)]

use super::direct::{Epi, KArgs, MR, NR, epi_scalar};
use super::neon::sdot;
use core::arch::aarch64::*;

const _: () = assert!(NR.is_multiple_of(16) && MR == 8);

/// A tile driver `$name` for `rows ≤ MR` output channels: `$sub` sub-tiles of 4 rows × 16
/// lanes into an i32 accumulator, then the portable epilogue (one body for both NEON
/// flavours, expanded inside each `#[target_feature]` function).
macro_rules! tile_fn {
    ($(#[$m:meta])* $name:ident, $feat:literal, $sub:ident) => {
        $(#[$m])*
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn $name(rows: usize, k: &KArgs<'_>, e: &Epi<'_>) {
            let mut acc = [[0i32; NR]; MR];
            for l0 in (0..NR).step_by(16) {
                for r0 in [0, 4] {
                    if r0 >= rows {
                        break;
                    }
                    // SAFETY: forwarded contract; the sub-tile stays inside the tile.
                    unsafe {
                        match (rows - r0).min(4) {
                            1 => $sub::<1>(k, r0, l0, &mut acc),
                            2 => $sub::<2>(k, r0, l0, &mut acc),
                            3 => $sub::<3>(k, r0, l0, &mut acc),
                            _ => $sub::<4>(k, r0, l0, &mut acc),
                        }
                    }
                }
            }
            // SAFETY: forwarded contract.
            unsafe { epi_scalar(rows, &acc, e) }
        }
    };
}

tile_fn! {
    /// Runs the `sdot` tile for `rows ≤ MR` output channels. The input bytes are flipped
    /// to `x' − 128` in registers (i8 operand of `sdot`); the caller's per-channel
    /// constant adds back `128·Σw'`.
    ///
    /// # Safety
    /// As the portable tile (`direct::tile_scalar`); the CPU must support NEON and dotprod.
    tile_dot, "neon,dotprod", sub_dot
}

tile_fn! {
    /// Runs the plain NEON tile for `rows ≤ MR` output channels.
    ///
    /// # Safety
    /// As the portable tile (`direct::tile_scalar`), with `k.w16` the i16 weights; the
    /// CPU must support NEON.
    tile_neon, "neon", sub_mlal
}

/// Rows `r0..r0+RR` × lanes `l0..l0+16` with `sdot`: per k-quad four 16-byte input
/// loads (4 lanes × 4 channels each), one 4-byte weight broadcast per row.
#[target_feature(enable = "neon,dotprod")]
#[inline]
unsafe fn sub_dot<const RR: usize>(k: &KArgs<'_>, r0: usize, l0: usize, acc: &mut [[i32; NR]; MR]) {
    let mut c = [[vdupq_n_s32(0); 4]; RR];
    let flip = vdupq_n_u8(0x80);
    // SAFETY: row r0 of the block's first k-quad.
    let mut wq = unsafe { k.w.add(4 * r0) };
    for &to in k.toff {
        // SAFETY: tap offsets and the lane chunk stay inside the padded input.
        let mut xp = unsafe { k.x.add(to + 4 * l0) };
        for _ in 0..k.cq {
            // SAFETY: 16 lanes × 4 bytes are readable at `xp`, RR × 4 weights at `wq`.
            unsafe {
                let xv: [int8x16_t; 4] = core::array::from_fn(|v| {
                    vreinterpretq_s8_u8(veorq_u8(vld1q_u8(xp.add(16 * v)), flip))
                });
                for (r, cr) in c.iter_mut().enumerate() {
                    let wv = vreinterpretq_s8_s32(vld1q_dup_s32(wq.add(4 * r).cast::<i32>()));
                    for (cv, &xb) in cr.iter_mut().zip(&xv) {
                        *cv = sdot(*cv, xb, wv);
                    }
                }
                wq = wq.add(MR * 4);
                xp = xp.add(k.plane4);
            }
        }
    }
    for (r, cr) in c.iter().enumerate() {
        for (v, &cv) in cr.iter().enumerate() {
            // SAFETY: row r0 + r, lanes l0 + 4v.. lie inside `acc`.
            unsafe { vst1q_s32(acc[r0 + r].as_mut_ptr().add(l0 + 4 * v), cv) };
        }
    }
}

/// Rows `r0..r0+RR` × lanes `l0..l0+16` with `smlal` by lane: per k-quad one
/// de-interleaving `ld4` (channel j of 16 lanes in register j), widened to i16, and
/// per row 16 multiply-accumulates (u8 ≤ 255 times i8 in i16, products in i32: exact).
#[target_feature(enable = "neon")]
#[inline]
unsafe fn sub_mlal<const RR: usize>(
    k: &KArgs<'_>,
    r0: usize,
    l0: usize,
    acc: &mut [[i32; NR]; MR],
) {
    let mut c = [[vdupq_n_s32(0); 4]; RR];
    // SAFETY: row r0 of the block's first k-quad.
    let mut wq = unsafe { k.w16.add(4 * r0) };
    for &to in k.toff {
        // SAFETY: tap offsets and the lane chunk stay inside the padded input.
        let mut xp = unsafe { k.x.add(to + 4 * l0) };
        for _ in 0..k.cq {
            // SAFETY: 16 lanes × 4 bytes are readable at `xp`, RR × 4 i16 weights at `wq`.
            unsafe {
                let x = vld4q_u8(xp);
                let wide = |v: uint8x16_t| {
                    [
                        vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(v))),
                        vreinterpretq_s16_u16(vmovl_high_u8(v)),
                    ]
                };
                let xs = [wide(x.0), wide(x.1), wide(x.2), wide(x.3)];
                for (r, cr) in c.iter_mut().enumerate() {
                    let wv = vld1_s16(wq.add(4 * r));
                    macro_rules! ch {
                        ($j:literal) => {
                            cr[0] = vmlal_lane_s16::<$j>(cr[0], vget_low_s16(xs[$j][0]), wv);
                            cr[1] = vmlal_high_lane_s16::<$j>(cr[1], xs[$j][0], wv);
                            cr[2] = vmlal_lane_s16::<$j>(cr[2], vget_low_s16(xs[$j][1]), wv);
                            cr[3] = vmlal_high_lane_s16::<$j>(cr[3], xs[$j][1], wv);
                        };
                    }
                    ch!(0);
                    ch!(1);
                    ch!(2);
                    ch!(3);
                }
                wq = wq.add(MR * 4);
                xp = xp.add(k.plane4);
            }
        }
    }
    for (r, cr) in c.iter().enumerate() {
        for (v, &cv) in cr.iter().enumerate() {
            // SAFETY: row r0 + r, lanes l0 + 4v.. lie inside `acc`.
            unsafe { vst1q_s32(acc[r0 + r].as_mut_ptr().add(l0 + 4 * v), cv) };
        }
    }
}

//! aarch64 kernels: NEON `sdot` (dotprod) and plain NEON `smlal` on i16.
#![allow(unsafe_code)]

use super::driver::{Job, MAX_TILE, Tile, block_loop};
use core::arch::aarch64::*;
use core::arch::asm;
use core::ops::Range;

macro_rules! by_rows {
    ($rows:expr, $f:ident, $($arg:expr),*) => {
        match $rows {
            1 => $f::<1>($($arg),*),
            2 => $f::<2>($($arg),*),
            3 => $f::<3>($($arg),*),
            _ => $f::<4>($($arg),*),
        }
    };
}

/// `acc += Σ_{t<4} a[4i+t]·b[4i+t]` per i32 lane (i8×i8 products, no saturation).
/// Inline assembly because the `vdotq_s32` intrinsic is not stable yet.
#[target_feature(enable = "neon,dotprod")]
#[inline]
pub(super) unsafe fn sdot(acc: int32x4_t, b: int8x16_t, a: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: `sdot` only reads and writes the named vector registers; the caller's
    // target features include dotprod.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {b:v}.16b, {a:v}.16b",
            acc = inout(vreg) acc,
            b = in(vreg) b,
            a = in(vreg) a,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// 4×16 tile: per k-quad four 16-byte B loads, one 4-byte broadcast of `A' − 128` per
/// row, sixteen `sdot`.
#[target_feature(enable = "neon,dotprod")]
#[inline]
unsafe fn tile_dot<const R: usize>(
    segs: usize,
    seg: usize,
    ap: *const *const u8,
    b: *const u8,
    buf: *mut i32,
) {
    let b = b.cast::<i8>();

    let z = vdupq_n_s32(0);
    let mut c = [[z; 4]; R];
    for t in 0..segs {
        // SAFETY: segment t of the panel starts at t·seg·16 bytes.
        let b = unsafe { b.add(t * seg * 16) };
        let mut k = 0;
        while k < seg {
            // SAFETY: k < seg; the panel has 16 columns × 4 bytes at k·16 and
            // each row 4 bytes at k.
            unsafe {
                let bv = [
                    vld1q_s8(b.add(k * 16)),
                    vld1q_s8(b.add(k * 16 + 16)),
                    vld1q_s8(b.add(k * 16 + 32)),
                    vld1q_s8(b.add(k * 16 + 48)),
                ];
                for (r, cr) in c.iter_mut().enumerate() {
                    let a = *ap.add(r * segs + t);
                    let av = vreinterpretq_s8_s32(vld1q_dup_s32(a.add(k).cast::<i32>()));
                    for (ci, &bi) in cr.iter_mut().zip(&bv) {
                        *ci = sdot(*ci, bi, av);
                    }
                }
            }
            k += 4;
        }
    }
    for (r, cr) in c.iter().enumerate() {
        for (i, &ci) in cr.iter().enumerate() {
            // SAFETY: buf holds MAX_TILE ≥ 4·16 i32.
            unsafe { vst1q_s32(buf.add(r * 16 + i * 4), ci) };
        }
    }
}

struct NeonDot;

impl Tile for NeonDot {
    const MR: usize = 4;
    const NR: usize = 16;
    const KS: usize = 4;
    const ESZ: usize = 1;
    #[inline(always)]
    unsafe fn tile(
        r: usize,
        segs: usize,
        seg: usize,
        ap: *const *const u8,
        b: *const u8,
        buf: &mut [i32; MAX_TILE],
    ) {
        let p = buf.as_mut_ptr();
        // SAFETY: forwarded contract (operands valid, dotprod present).
        unsafe { by_rows!(r, tile_dot, segs, seg, ap, b, p) }
    }
}

/// # Safety
/// As [`block_loop`]; the CPU must support NEON and dotprod.
#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn block_dotprod(job: &Job<'_>, mt: Range<usize>, np: Range<usize>) {
    // SAFETY: forwarded contract.
    unsafe { block_loop::<NeonDot>(job, mt, np) }
}

/// 4×16 tile on i16 operands: per k two 8-lane B loads and, per row, four
/// `smlal`/`smlal2` by a scalar (i16×i16 products accumulated in i32, exact).
#[target_feature(enable = "neon")]
#[inline]
unsafe fn tile_neon<const R: usize>(
    segs: usize,
    seg: usize,
    ap: *const *const u8,
    b: *const u8,
    buf: *mut i32,
) {
    let b = b.cast::<i16>();

    let z = vdupq_n_s32(0);
    let mut c = [[z; 4]; R];
    for t in 0..segs {
        // SAFETY: segment t of the panel starts at t·seg·16 i16.
        let b = unsafe { b.add(t * seg * 16) };
        for k in 0..seg {
            // SAFETY: k < seg; the panel has 16 i16 at k·16 and each row one
            // i16 at k.
            unsafe {
                let b0 = vld1q_s16(b.add(k * 16));
                let b1 = vld1q_s16(b.add(k * 16 + 8));
                for (r, cr) in c.iter_mut().enumerate() {
                    let av = *(*ap.add(r * segs + t)).cast::<i16>().add(k);
                    cr[0] = vmlal_n_s16(cr[0], vget_low_s16(b0), av);
                    cr[1] = vmlal_high_n_s16(cr[1], b0, av);
                    cr[2] = vmlal_n_s16(cr[2], vget_low_s16(b1), av);
                    cr[3] = vmlal_high_n_s16(cr[3], b1, av);
                }
            }
        }
    }
    for (r, cr) in c.iter().enumerate() {
        for (i, &ci) in cr.iter().enumerate() {
            // SAFETY: buf holds MAX_TILE ≥ 4·16 i32.
            unsafe { vst1q_s32(buf.add(r * 16 + i * 4), ci) };
        }
    }
}

struct Neon;

impl Tile for Neon {
    const MR: usize = 4;
    const NR: usize = 16;
    const KS: usize = 1;
    const ESZ: usize = 2;
    #[inline(always)]
    unsafe fn tile(
        r: usize,
        segs: usize,
        seg: usize,
        ap: *const *const u8,
        b: *const u8,
        buf: &mut [i32; MAX_TILE],
    ) {
        let p = buf.as_mut_ptr();
        // SAFETY: forwarded contract (operands valid, NEON present).
        unsafe { by_rows!(r, tile_neon, segs, seg, ap, b, p) }
    }
}

/// # Safety
/// As [`block_loop`]; the CPU must support NEON.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn block_neon(job: &Job<'_>, mt: Range<usize>, np: Range<usize>) {
    // SAFETY: forwarded contract.
    unsafe { block_loop::<Neon>(job, mt, np) }
}

//! x86-64 kernels: AVX-512 VNNI, AVX-VNNI and exact AVX2.
#![allow(unsafe_code)]

use super::driver::{Indirect, Job, MAX_TILE, Tile, block_loop, block_loop_ind};
use core::arch::x86_64::*;
use core::ops::Range;

/// Calls `$f::<R>(args)` for the run-time row count `R` in `1..=$mr`.
macro_rules! by_rows {
    ($rows:expr, $f:ident, $($arg:expr),*) => {
        match $rows {
            1 => $f::<1>($($arg),*),
            2 => $f::<2>($($arg),*),
            3 => $f::<3>($($arg),*),
            4 => $f::<4>($($arg),*),
            5 => $f::<5>($($arg),*),
            6 => $f::<6>($($arg),*),
            7 => $f::<7>($($arg),*),
            _ => $f::<8>($($arg),*),
        }
    };
}

// ---------------------------------------------------------------- AVX-512 VNNI

/// 8×32 tile: per k-quad two 64-byte B loads, one 4-byte broadcast per row and
/// `vpdpbusd` (u8×i8 products summed in i32, no intermediate saturation).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn tile512<const R: usize>(
    segs: usize,
    seg: usize,
    ap: *const *const u8,
    b: *const u8,
    buf: *mut i32,
) {
    let mut c0 = [_mm512_setzero_si512(); R];
    let mut c1 = [_mm512_setzero_si512(); R];
    for t in 0..segs {
        // SAFETY: segment t of the panel starts at t·seg·32 bytes.
        let b = unsafe { b.add(t * seg * 32) };
        let mut k = 0;
        while k < seg {
            // SAFETY: k < seg, so the panel holds 32 columns × 4 bytes at k·32, and each
            // of the R row pointers of segment t holds 4 bytes at k.
            unsafe {
                let b0 = _mm512_loadu_si512(b.add(k * 32).cast());
                let b1 = _mm512_loadu_si512(b.add(k * 32 + 64).cast());
                for r in 0..R {
                    let a = *ap.add(r * segs + t);
                    let av = _mm512_set1_epi32(a.add(k).cast::<i32>().read_unaligned());
                    c0[r] = _mm512_dpbusd_epi32(c0[r], av, b0);
                    c1[r] = _mm512_dpbusd_epi32(c1[r], av, b1);
                }
            }
            k += 4;
        }
    }
    for r in 0..R {
        // SAFETY: buf holds MAX_TILE ≥ 8·32 i32.
        unsafe {
            _mm512_storeu_si512(buf.add(r * 32).cast(), c0[r]);
            _mm512_storeu_si512(buf.add(r * 32 + 16).cast(), c1[r]);
        }
    }
}

struct Avx512Vnni;

impl Tile for Avx512Vnni {
    const MR: usize = 8;
    const NR: usize = 32;
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
        // SAFETY: forwarded contract (operands valid, avx512vnni present).
        unsafe { by_rows!(r, tile512, segs, seg, ap, b, p) }
    }
}

/// # Safety
/// As [`block_loop`]; the CPU must support AVX-512 F/BW/VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn block_avx512vnni(job: &Job<'_>, mt: Range<usize>, np: Range<usize>) {
    // SAFETY: forwarded contract.
    unsafe { block_loop::<Avx512Vnni>(job, mt, np) }
}

// ---------------------------------------------------------------- AVX-VNNI

/// 6×16 tile with VEX `vpdpbusd` on ymm registers (12 accumulators).
#[target_feature(enable = "avx2,avxvnni")]
#[inline]
unsafe fn tile_vnni256<const R: usize>(
    segs: usize,
    seg: usize,
    ap: *const *const u8,
    b: *const u8,
    buf: *mut i32,
) {
    let mut c0 = [_mm256_setzero_si256(); R];
    let mut c1 = [_mm256_setzero_si256(); R];
    for t in 0..segs {
        // SAFETY: segment t of the panel starts at t·seg·16 bytes.
        let b = unsafe { b.add(t * seg * 16) };
        let mut k = 0;
        while k < seg {
            // SAFETY: k < seg; panel has 16 columns × 4 bytes at k·16; each row pointer of
            // segment t holds 4 bytes at k.
            unsafe {
                let b0 = _mm256_loadu_si256(b.add(k * 16).cast());
                let b1 = _mm256_loadu_si256(b.add(k * 16 + 32).cast());
                for r in 0..R {
                    let a = *ap.add(r * segs + t);
                    let av = _mm256_set1_epi32(a.add(k).cast::<i32>().read_unaligned());
                    c0[r] = _mm256_dpbusd_avx_epi32(c0[r], av, b0);
                    c1[r] = _mm256_dpbusd_avx_epi32(c1[r], av, b1);
                }
            }
            k += 4;
        }
    }
    for r in 0..R {
        // SAFETY: buf holds MAX_TILE ≥ 6·16 i32.
        unsafe {
            _mm256_storeu_si256(buf.add(r * 16).cast(), c0[r]);
            _mm256_storeu_si256(buf.add(r * 16 + 8).cast(), c1[r]);
        }
    }
}

struct AvxVnni;

impl Tile for AvxVnni {
    const MR: usize = 6;
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
        // SAFETY: forwarded contract (operands valid, avxvnni present); r ≤ 6.
        unsafe { by_rows!(r, tile_vnni256, segs, seg, ap, b, p) }
    }
}

/// # Safety
/// As [`block_loop`]; the CPU must support AVX2 and AVX-VNNI.
#[target_feature(enable = "avx2,avxvnni")]
pub(crate) unsafe fn block_avxvnni(job: &Job<'_>, mt: Range<usize>, np: Range<usize>) {
    // SAFETY: forwarded contract.
    unsafe { block_loop::<AvxVnni>(job, mt, np) }
}

// ---------------------------------------------------------------- AVX2 (exact)

/// 6×16 tile on operands widened to i16 at pack time: `vpmaddwd` multiplies i16 pairs
/// and adds each pair into i32. A pair sum is at most 2·255·128 = 65 280 in magnitude,
/// so nothing saturates (unlike `vpmaddubsw`, whose i16 pair sums can).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile_avx2<const R: usize>(
    segs: usize,
    seg: usize,
    ap: *const *const u8,
    b: *const u8,
    buf: *mut i32,
) {
    let b = b.cast::<i16>();
    let mut c0 = [_mm256_setzero_si256(); R];
    let mut c1 = [_mm256_setzero_si256(); R];
    for t in 0..segs {
        // SAFETY: segment t of the panel starts at t·seg·16 i16.
        let b = unsafe { b.add(t * seg * 16) };
        let mut k = 0;
        while k < seg {
            // SAFETY: k < seg (even); the panel has 16 columns × 2 i16 at k·16; each row
            // pointer of segment t holds 2 i16 at k.
            unsafe {
                let b0 = _mm256_loadu_si256(b.add(k * 16).cast());
                let b1 = _mm256_loadu_si256(b.add(k * 16 + 16).cast());
                for r in 0..R {
                    let a = (*ap.add(r * segs + t)).cast::<i16>();
                    let av = _mm256_set1_epi32(a.add(k).cast::<i32>().read_unaligned());
                    c0[r] = _mm256_add_epi32(c0[r], _mm256_madd_epi16(av, b0));
                    c1[r] = _mm256_add_epi32(c1[r], _mm256_madd_epi16(av, b1));
                }
            }
            k += 2;
        }
    }
    for r in 0..R {
        // SAFETY: buf holds MAX_TILE ≥ 6·16 i32.
        unsafe {
            _mm256_storeu_si256(buf.add(r * 16).cast(), c0[r]);
            _mm256_storeu_si256(buf.add(r * 16 + 8).cast(), c1[r]);
        }
    }
}

struct Avx2;

impl Tile for Avx2 {
    const MR: usize = 6;
    const NR: usize = 16;
    const KS: usize = 2;
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
        // SAFETY: forwarded contract (operands valid, avx2 present); r ≤ 6.
        unsafe { by_rows!(r, tile_avx2, segs, seg, ap, b, p) }
    }
}

/// # Safety
/// As [`block_loop`]; the CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn block_avx2(job: &Job<'_>, mt: Range<usize>, np: Range<usize>) {
    // SAFETY: forwarded contract.
    unsafe { block_loop::<Avx2>(job, mt, np) }
}

/// # Safety
/// As [`block_loop_ind`]; the CPU must support AVX-512 F/BW/VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn block_ind_avx512vnni(
    job: &Job<'_>,
    ind: &Indirect,
    mt: Range<usize>,
    np: Range<usize>,
) {
    // SAFETY: forwarded contract.
    unsafe { block_loop_ind::<Avx512Vnni>(job, ind, mt, np) }
}

/// # Safety
/// As [`block_loop_ind`]; the CPU must support AVX2 and AVX-VNNI.
#[target_feature(enable = "avx2,avxvnni")]
pub(crate) unsafe fn block_ind_avxvnni(
    job: &Job<'_>,
    ind: &Indirect,
    mt: Range<usize>,
    np: Range<usize>,
) {
    // SAFETY: forwarded contract.
    unsafe { block_loop_ind::<AvxVnni>(job, ind, mt, np) }
}

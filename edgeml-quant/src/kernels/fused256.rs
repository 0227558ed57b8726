//! Fused 6×16 GEMM tiles on 256-bit registers for `avxvnni` (`vpdpbusd ymm`) and the
//! exact `avx2` path (`vpmaddwd` on i16): as the AVX-512 fused tile, the reduction runs
//! over the full K with the row pointers in registers, and the zero-point corrections
//! and the epilogue are applied in registers before the tile is stored straight into a
//! row-major output. Only full 16-column panels are fused; the caller runs the last,
//! partial panel through the generic loop.
#![allow(unsafe_code)]

use super::driver::Job;
use super::x86::{Dst, Fix, dp_vnni, fused_correct, fused_reduce, narrow16, requant8};
use core::arch::x86_64::*;
use core::ops::Range;

const MR: usize = 6;
const NR: usize = 16;

macro_rules! fused256 {
    ($block:ident, $tile:ident, $feat:literal, $ks:expr, $esz:expr, $mac:expr) => {
        /// Runs the full 16-column panels of `np` over the m-tiles `mt`; returns the
        /// first panel not run (the partial last panel, or `np.end`).
        ///
        /// # Safety
        /// As `driver::block_loop`; `out` is the job's row-major output; the CPU must
        /// support the kernel's features.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn $block(
            job: &Job<'_>,
            out: Dst,
            mt: Range<usize>,
            np: Range<usize>,
        ) -> usize {
            let full = np.end.min(job.n / NR).max(np.start);
            let mct = 96 / MR;
            let mut mb = mt.start;
            while mb < mt.end {
                let me = (mb + mct).min(mt.end);
                for p in np.start..full {
                    let n0 = p * NR;
                    let fix = Fix::new(job, n0, NR);
                    // SAFETY: panel p lies inside packed B (caller's contract).
                    let b = unsafe { job.b.add(p * job.kp * NR * $esz) };
                    for t in mb..me {
                        let m0 = t * MR;
                        let rows = MR.min(job.m - m0);
                        let o = out.at(m0 as isize * job.rs + n0 as isize);
                        let lda = job.lda * $esz;
                        // SAFETY: rows m0.. of packed A and of the output exist; the
                        // panel's 16 columns exist.
                        unsafe {
                            let a = job.a.add(m0 * lda);
                            let rt = job.rowterm.as_ptr().wrapping_add(m0);
                            match rows {
                                1 => $tile::<1>(a, lda, job.kp, b, &fix, rt, o, job.rs),
                                2 => $tile::<2>(a, lda, job.kp, b, &fix, rt, o, job.rs),
                                3 => $tile::<3>(a, lda, job.kp, b, &fix, rt, o, job.rs),
                                4 => $tile::<4>(a, lda, job.kp, b, &fix, rt, o, job.rs),
                                5 => $tile::<5>(a, lda, job.kp, b, &fix, rt, o, job.rs),
                                _ => $tile::<6>(a, lda, job.kp, b, &fix, rt, o, job.rs),
                            }
                        }
                    }
                }
                mb = me;
            }
            full
        }

        /// An `R × 16` tile over the full reduction, corrected, finished and stored.
        ///
        /// # Safety
        /// `a` has R rows of `kp` elements (stride `lda` bytes), `b` a packed panel,
        /// `rt` R row terms when `fix.zb` is non-null, `fix` 16 columns, and `o` R
        /// writable rows (stride `rs` elements) of 16 columns.
        #[target_feature(enable = $feat)]
        #[inline]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $tile<const R: usize>(
            a: *const u8,
            lda: usize,
            kp: usize,
            b: *const u8,
            fix: &Fix,
            rt: *const i32,
            o: Dst,
            rs: isize,
        ) {
            let (c0, c1) = fused_reduce!(
                R, (a, lda, kp, b),
                _mm256_setzero_si256, _mm256_loadu_si256, _mm256_set1_epi32, $mac,
                nr: NR, esz: $esz, ks: $ks, vb: 32
            );
            // SAFETY: the panel's 16 columns and R output rows exist (caller's contract).
            unsafe { finish::<R>(&c0, &c1, fix, rt, o, rs) }
        }
    };
}

/// `vpmaddwd` + `vpaddd`: i16 pairs (|sum| ≤ 2·255·128) into i32.
#[target_feature(enable = "avx2")]
#[inline]
fn dp_madd(c: __m256i, a: __m256i, b: __m256i) -> __m256i {
    _mm256_add_epi32(c, _mm256_madd_epi16(a, b))
}

fused256!(block_vnni, tile_vnni, "avx2,avxvnni", 4, 1, dp_vnni);
fused256!(block_madd, tile_madd, "avx2", 2, 2, dp_madd);

/// Corrections and epilogue of an `R × 16` tile (`c0`: columns 0–7, `c1`: 8–15), as
/// `driver::finish_tile` / `quant_one` compute them, stored into `o`.
///
/// # Safety
/// As the tiles above; the CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn finish<const R: usize>(
    c0: &[__m256i; R],
    c1: &[__m256i; R],
    fix: &Fix,
    rt: *const i32,
    o: Dst,
    rs: isize,
) {
    // SAFETY: the 16 columns' operands are readable and the rows writable (contract).
    unsafe {
        let ld = |p: *const i32| {
            (
                _mm256_loadu_si256(p.cast()),
                _mm256_loadu_si256(p.wrapping_add(8).cast()),
            )
        };
        let v = fused_correct!(
            R,
            (c0, c1, fix, rt),
            ld,
            _mm256_setzero_si256,
            _mm256_add_epi32,
            _mm256_mullo_epi32,
            _mm256_set1_epi32
        );
        match o {
            Dst::I32(o) => {
                for (r, v) in v.iter().enumerate() {
                    let row = o.offset(r as isize * rs);
                    _mm256_storeu_si256(row.cast(), v[0]);
                    _mm256_storeu_si256(row.add(8).cast(), v[1]);
                }
            }
            Dst::F32(o) => {
                let (b0, b1) = ld(fix.bias);
                let fm0 = _mm256_loadu_ps(fix.mult);
                let fm1 = _mm256_loadu_ps(fix.mult.add(8));
                for (r, v) in v.iter().enumerate() {
                    let row = o.offset(r as isize * rs);
                    let x0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(v[0], b0)), fm0);
                    let x1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(v[1], b1)), fm1);
                    _mm256_storeu_ps(row, x0);
                    _mm256_storeu_ps(row.add(8), x1);
                }
            }
            Dst::Q(o) => {
                let (b0, b1) = ld(fix.bias);
                let fm0 = _mm256_loadu_ps(fix.mult);
                let fm1 = _mm256_loadu_ps(fix.mult.add(8));
                let (lo, hi) = (_mm256_set1_ps(fix.lo), _mm256_set1_ps(fix.hi));
                let off = _mm256_set1_epi32(fix.zp.wrapping_sub(0x4B40_0000));
                let q = |x: __m256i, b: __m256i, m: __m256| {
                    requant8(_mm256_add_epi32(x, b), m, lo, hi, off)
                };
                for (r, v) in v.iter().enumerate() {
                    let y = narrow16(q(v[0], b0, fm0), q(v[1], b1, fm1));
                    let row = o.offset(r as isize * rs);
                    _mm_storeu_si128(row.cast(), y);
                }
            }
        }
    }
}

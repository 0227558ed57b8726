//! Column stores of a finished tile into an NCHW (column-major) u8/i8 output with SSE2
//! (part of x86-64): rows are narrowed to bytes, then an 8×16 byte transpose gives each
//! output channel its run of up to 8 consecutive pixels.
#![allow(unsafe_code)]

use super::driver::MAX_TILE;
use core::arch::x86_64::*;

/// Stores `rows ≤ 8` × `cols ≤ 32` values of `buf` (row stride `nr`, values already in
/// the output type's range) so that column `j` lands at `dst + j·cs`, rows contiguous.
///
/// # Safety
/// `dst + j·cs + r` must be writable for every `j < cols`, `r < rows`.
#[target_feature(enable = "sse2")]
#[inline]
pub(crate) unsafe fn store_u8_cols(
    buf: &[i32; MAX_TILE],
    nr: usize,
    rows: usize,
    cols: usize,
    dst: *mut u8,
    cs: isize,
    signed: bool,
) {
    debug_assert!(rows <= 8 && cols <= 32 && nr <= 32);
    let mut c0 = 0;
    while c0 < cols {
        let w = (cols - c0).min(16);
        // Narrow 8 rows × 16 columns to bytes; a partial tile goes through a zeroed
        // copy so no out-of-tile value is read.
        let mut tmp = [[0i32; 16]; 8];
        let full = rows == 8 && w == 16;
        if !full {
            for (r, t) in tmp.iter_mut().enumerate().take(rows) {
                for (d, &v) in t.iter_mut().zip(&buf[r * nr + c0..r * nr + c0 + w]) {
                    *d = v;
                }
            }
        }
        let mut rb = [_mm_setzero_si128(); 8];
        for (r, rbr) in rb.iter_mut().enumerate() {
            let p = if full {
                buf[r * nr + c0..r * nr + c0 + 16].as_ptr()
            } else {
                tmp[r].as_ptr()
            }
            .cast::<__m128i>();
            // SAFETY: `p` points at 16 readable i32 (a full tile row or `tmp[r]`).
            unsafe {
                let a = _mm_packs_epi32(_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)));
                let b = _mm_packs_epi32(_mm_loadu_si128(p.add(2)), _mm_loadu_si128(p.add(3)));
                *rbr = if signed {
                    _mm_packs_epi16(a, b)
                } else {
                    _mm_packus_epi16(a, b)
                };
            }
        }
        // 8×16 byte transpose: result q[j] holds column j's 8 bytes in its low half.
        let a01l = _mm_unpacklo_epi8(rb[0], rb[1]);
        let a01h = _mm_unpackhi_epi8(rb[0], rb[1]);
        let a23l = _mm_unpacklo_epi8(rb[2], rb[3]);
        let a23h = _mm_unpackhi_epi8(rb[2], rb[3]);
        let a45l = _mm_unpacklo_epi8(rb[4], rb[5]);
        let a45h = _mm_unpackhi_epi8(rb[4], rb[5]);
        let a67l = _mm_unpacklo_epi8(rb[6], rb[7]);
        let a67h = _mm_unpackhi_epi8(rb[6], rb[7]);
        let b = [
            _mm_unpacklo_epi16(a01l, a23l),
            _mm_unpackhi_epi16(a01l, a23l),
            _mm_unpacklo_epi16(a01h, a23h),
            _mm_unpackhi_epi16(a01h, a23h),
        ];
        let d = [
            _mm_unpacklo_epi16(a45l, a67l),
            _mm_unpackhi_epi16(a45l, a67l),
            _mm_unpacklo_epi16(a45h, a67h),
            _mm_unpackhi_epi16(a45h, a67h),
        ];
        let mut cols8 = [0u64; 16];
        for g in 0..4 {
            let lo = _mm_unpacklo_epi32(b[g], d[g]);
            let hi = _mm_unpackhi_epi32(b[g], d[g]);
            // SAFETY: stores 16 bytes into `cols8[4g..4g+4]` (32 bytes available).
            unsafe {
                let p = cols8.as_mut_ptr().add(4 * g).cast::<__m128i>();
                _mm_storeu_si128(p, lo);
                _mm_storeu_si128(p.add(1), hi);
            }
        }
        for (j, &v) in cols8.iter().enumerate().take(w) {
            let d = dst.wrapping_offset((c0 + j) as isize * cs);
            if rows == 8 {
                // SAFETY: the caller guarantees 8 writable bytes for this column.
                unsafe { d.cast::<u64>().write_unaligned(v) };
            } else {
                for (r, &byte) in v.to_le_bytes().iter().enumerate().take(rows) {
                    // SAFETY: the caller guarantees `rows` writable bytes per column.
                    unsafe { *d.add(r) = byte };
                }
            }
        }
        c0 += w;
    }
}

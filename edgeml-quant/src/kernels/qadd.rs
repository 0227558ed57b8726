//! Element-wise quantized addition of two same-shape u8 or i8 tensors, onnxruntime's
//! `QLinearAdd` form: `y = saturate(round_half_even(c + ra·a + rb·b))` with
//! `ra = a_scale / y_scale`, `rb = b_scale / y_scale` and the zero points folded into
//! `c = y_zp − ra·a_zp − rb·b_zp`.
//!
//! Every path computes, per element and in `f32`, `(c + ra·a) + rb·b` with separate
//! multiplies and adds (no fused multiply-add), clamps to the type's range and rounds
//! to nearest even, so all paths give the same bits as [`scalar`]: the vector paths
//! convert with the default MXCSR rounding mode (nearest even), which equals the scalar
//! path's `1.5·2²³` trick on values of at most 255 in magnitude.

use super::Isa;
use super::pack::QElem;

/// The folded constants of one `QLinearAdd`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AddParams {
    /// `a_scale / y_scale`.
    pub(crate) ra: f32,
    /// `b_scale / y_scale`.
    pub(crate) rb: f32,
    /// `y_zp − ra·a_zp − rb·b_zp`.
    pub(crate) c: f32,
}

/// `out[i] = saturate(round_half_even(c + ra·a[i] + rb·b[i]))` on `isa` (paths the CPU
/// lacks, and non-finite constants, take the scalar loop).
///
/// # Panics
/// If the three slices differ in length.
pub(crate) fn qadd<T: QElem>(isa: Isa, a: &[T], b: &[T], out: &mut [T], p: AddParams) {
    assert!(
        a.len() == b.len() && a.len() == out.len(),
        "qadd: lengths differ"
    );
    let finite = p.ra.is_finite() && p.rb.is_finite() && p.c.is_finite();
    #[cfg(target_arch = "x86_64")]
    if finite && isa.is_available() {
        match isa {
            Isa::Amx | Isa::Avx512Vnni => {
                // SAFETY: `Isa::is_available` checked AVX-512F and AVX-512BW; the slices
                // have the same length (asserted above).
                let done = unsafe { x86::qadd_avx512::<T>(a, b, out, p) };
                return scalar(&a[done..], &b[done..], &mut out[done..], p);
            }
            Isa::Avx2 | Isa::AvxVnni => {
                // SAFETY: `Isa::is_available` checked AVX2; same lengths as above.
                let done = unsafe { x86::qadd_avx2::<T>(a, b, out, p) };
                return scalar(&a[done..], &b[done..], &mut out[done..], p);
            }
            _ => {}
        }
    }
    let _ = (isa, finite);
    scalar(a, b, out, p);
}

/// The reference loop (and the tail of the vector paths).
pub(crate) fn scalar<T: QElem>(a: &[T], b: &[T], out: &mut [T], p: AddParams) {
    let (lo, hi) = (T::RANGE.0 as f32, T::RANGE.1 as f32);
    for ((y, &a), &b) in out.iter_mut().zip(a).zip(b) {
        let v = p.c + p.ra * a.to_i32() as f32 + p.rb * b.to_i32() as f32;
        let v = if v < lo { lo } else { v };
        let v = if v > hi { hi } else { v };
        // |v| ≤ 255: adding 1.5·2²³ leaves the integer rounded to even in the low bits.
        *y = T::from_i32_clamped((v + 12_582_912.0).to_bits() as i32 - 0x4B40_0000);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{AddParams, QElem};
    use std::arch::x86_64::*;

    /// The AVX-512 loop over whole blocks of 16; returns how many elements it wrote.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and AVX-512BW; `a`, `b` and `out` the same length.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn qadd_avx512<T: QElem>(
        a: &[T],
        b: &[T],
        out: &mut [T],
        p: AddParams,
    ) -> usize {
        let n = a.len() / 16 * 16;
        let (ra, rb, c) = (
            _mm512_set1_ps(p.ra),
            _mm512_set1_ps(p.rb),
            _mm512_set1_ps(p.c),
        );
        let lo = _mm512_set1_ps(T::RANGE.0 as f32);
        let hi = _mm512_set1_ps(T::RANGE.1 as f32);
        let (pa, pb, py) = (
            a.as_ptr().cast::<u8>(),
            b.as_ptr().cast::<u8>(),
            out.as_mut_ptr().cast::<u8>(),
        );
        let widen = |v: __m128i| {
            if T::SIGNED {
                _mm512_cvtepi8_epi32(v)
            } else {
                _mm512_cvtepu8_epi32(v)
            }
        };
        let mut i = 0;
        while i < n {
            // SAFETY: `i + 16 <= n <= len`, and u8/i8 elements are one byte each, so
            // the 16-byte loads and the store stay inside the slices.
            unsafe {
                let xa = _mm512_cvtepi32_ps(widen(_mm_loadu_si128(pa.add(i).cast())));
                let xb = _mm512_cvtepi32_ps(widen(_mm_loadu_si128(pb.add(i).cast())));
                let v = _mm512_add_ps(
                    _mm512_add_ps(c, _mm512_mul_ps(ra, xa)),
                    _mm512_mul_ps(rb, xb),
                );
                let v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
                let q = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v));
                _mm_storeu_si128(py.add(i).cast(), q);
            }
            i += 16;
        }
        n
    }

    /// The AVX2 loop over whole blocks of 8; returns how many elements it wrote.
    ///
    /// # Safety
    /// The CPU must have AVX2; `a`, `b` and `out` the same length.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn qadd_avx2<T: QElem>(
        a: &[T],
        b: &[T],
        out: &mut [T],
        p: AddParams,
    ) -> usize {
        let n = a.len() / 8 * 8;
        let (ra, rb, c) = (
            _mm256_set1_ps(p.ra),
            _mm256_set1_ps(p.rb),
            _mm256_set1_ps(p.c),
        );
        let lo = _mm256_set1_ps(T::RANGE.0 as f32);
        let hi = _mm256_set1_ps(T::RANGE.1 as f32);
        let (pa, pb, py) = (
            a.as_ptr().cast::<u8>(),
            b.as_ptr().cast::<u8>(),
            out.as_mut_ptr().cast::<u8>(),
        );
        let widen = |v: __m128i| {
            if T::SIGNED {
                _mm256_cvtepi8_epi32(v)
            } else {
                _mm256_cvtepu8_epi32(v)
            }
        };
        let mut i = 0;
        while i < n {
            // SAFETY: `i + 8 <= n <= len`: the 8-byte loads and store stay inside the
            // one-byte-element slices.
            unsafe {
                let xa = _mm256_cvtepi32_ps(widen(_mm_loadl_epi64(pa.add(i).cast())));
                let xb = _mm256_cvtepi32_ps(widen(_mm_loadl_epi64(pb.add(i).cast())));
                let v = _mm256_add_ps(
                    _mm256_add_ps(c, _mm256_mul_ps(ra, xa)),
                    _mm256_mul_ps(rb, xb),
                );
                let v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
                let q = _mm256_cvtps_epi32(v);
                // In range for the type, so the saturating packs only narrow.
                let w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
                let bytes = if T::SIGNED {
                    _mm_packs_epi16(w, w)
                } else {
                    _mm_packus_epi16(w, w)
                };
                _mm_storel_epi64(py.add(i).cast(), bytes);
            }
            i += 8;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check<T: QElem + PartialEq>(a: &[T], b: &[T], p: AddParams) {
        let mut want = vec![T::from_i32_clamped(0); a.len()];
        scalar(a, b, &mut want, p);
        for isa in Isa::available() {
            let mut got = vec![T::from_i32_clamped(0); a.len()];
            qadd(isa, a, b, &mut got, p);
            assert_eq!(got, want, "{isa:?} {p:?}");
        }
    }

    fn params() -> impl Strategy<Value = AddParams> {
        (1e-3f32..4.0, 1e-3f32..4.0, -300.0f32..300.0).prop_map(|(ra, rb, c)| AddParams {
            ra,
            rb,
            c,
        })
    }

    proptest! {
        #[test]
        fn every_path_equals_the_scalar_loop_u8(
            ab in prop::collection::vec((any::<u8>(), any::<u8>()), 0..100),
            p in params(),
        ) {
            let (a, b): (Vec<u8>, Vec<u8>) = ab.into_iter().unzip();
            check(&a, &b, p);
        }

        #[test]
        fn every_path_equals_the_scalar_loop_i8(
            ab in prop::collection::vec((any::<i8>(), any::<i8>()), 0..100),
            p in params(),
        ) {
            let (a, b): (Vec<i8>, Vec<i8>) = ab.into_iter().unzip();
            check(&a, &b, p);
        }
    }

    #[test]
    fn ties_round_to_even_and_ends_saturate() {
        // c + 0.5·a with a = 1, 3, 5, …: every value a tie.
        let a: Vec<u8> = (0..64).map(|i| (2 * i + 1) as u8).collect();
        let b = vec![0u8; 64];
        check(
            &a,
            &b,
            AddParams {
                ra: 0.5,
                rb: 1.0,
                c: 0.0,
            },
        );
        check(
            &a,
            &b,
            AddParams {
                ra: 4.0,
                rb: 1.0,
                c: -200.0,
            },
        );
        let a: Vec<i8> = (0..64).map(|i| (i * 4 - 128) as i8).collect();
        check(
            &a,
            &a,
            AddParams {
                ra: 1.5,
                rb: 1.5,
                c: 0.5,
            },
        );
    }
}

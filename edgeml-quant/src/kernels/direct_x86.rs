//! x86-64 parts of the direct convolution: the AVX-512 VNNI tile (8 output channels ×
//! 48 pixels, requantized and stored with byte masks) and the SSE2 4-channel interleave.
#![allow(unsafe_code)]

use super::direct::{Epi, KArgs, MR, NR};
use core::arch::x86_64::*;

/// Runs the AVX-512 VNNI tile for `rows ≤ MR` output channels.
///
/// # Safety
/// As the portable tile (`direct::tile_scalar`); the CPU must support AVX-512 F/BW/VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn tile_avx512(rows: usize, k: &KArgs<'_>, e: &Epi<'_>) {
    // SAFETY: forwarded contract.
    unsafe {
        match rows {
            1 => t512::<1>(k, e),
            2 => t512::<2>(k, e),
            3 => t512::<3>(k, e),
            4 => t512::<4>(k, e),
            5 => t512::<5>(k, e),
            6 => t512::<6>(k, e),
            7 => t512::<7>(k, e),
            _ => t512::<8>(k, e),
        }
    }
}

/// 512-bit vectors (16 i32 lanes) per tile row.
const V: usize = NR / 16;
const _: () = assert!(MR == 8 && NR.is_multiple_of(16) && NR <= 64);

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn t512<const R: usize>(k: &KArgs<'_>, e: &Epi<'_>) {
    let mut c = [[_mm512_setzero_si512(); V]; R];
    let mut wq = k.w;
    for &to in k.toff {
        // SAFETY: tap offsets stay inside the padded input (caller's contract).
        let mut xp = unsafe { k.x.add(to) };
        for _ in 0..k.cq {
            // SAFETY: NR lanes × 4 bytes are readable at `xp` and MR × 4 weights at `wq`;
            // `vpdpbusd` sums u8 × i8 products into i32 without intermediate saturation.
            unsafe {
                let b: [__m512i; V] =
                    core::array::from_fn(|v| _mm512_loadu_si512(xp.add(64 * v).cast()));
                for cr in c.iter_mut() {
                    let wv = _mm512_set1_epi32(wq.cast::<i32>().read_unaligned());
                    wq = wq.add(4);
                    for (cv, &bv) in cr.iter_mut().zip(&b) {
                        *cv = _mm512_dpbusd_epi32(*cv, bv, wv);
                    }
                }
                wq = wq.add((MR - R) * 4);
                xp = xp.add(k.plane4);
            }
        }
    }
    // Spill the accumulators once (a fully unrolled copy keeps them in registers in
    // the loop above; the epilogue's loops index this copy).
    let mut acc = [[_mm512_setzero_si512(); V]; MR];
    acc[..R].copy_from_slice(&c);
    let zs = !e.negzw.is_empty();
    let sv: [__m512i; V] = core::array::from_fn(|v| {
        if zs {
            // SAFETY: `s` holds NR sums when the pixel-sum term is used.
            unsafe { _mm512_loadu_si512(e.s.add(16 * v).cast()) }
        } else {
            _mm512_setzero_si512()
        }
    });
    for (r, a) in acc.iter().enumerate().take(R) {
        let oc = e.oc0 + r;
        let ct = _mm512_set1_epi32(e.ct[oc]);
        let mut vs = [_mm512_setzero_si512(); V];
        for v in 0..V {
            vs[v] = _mm512_add_epi32(a[v], ct);
            if zs {
                let z = _mm512_set1_epi32(e.negzw[oc]);
                vs[v] = _mm512_add_epi32(vs[v], _mm512_mullo_epi32(sv[v], z));
            }
        }
        match e.quant {
            Some((mult, zp, lo, hi)) => {
                // As `driver::quant_one`: f32 multiply, clamp, round half to even by
                // adding 1.5·2²³, add the zero point; values end in the output's range.
                let m = _mm512_set1_ps(mult[oc]);
                let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
                let magic = _mm512_set1_ps(12_582_912.0);
                let off = _mm512_set1_epi32(zp.wrapping_sub(0x4B40_0000));
                let mut y = _mm512_setzero_si512();
                for (v, &x) in vs.iter().enumerate() {
                    let x = _mm512_mul_ps(_mm512_cvtepi32_ps(x), m);
                    let x = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
                    let i = _mm512_add_epi32(_mm512_castps_si512(_mm512_add_ps(x, magic)), off);
                    let b = _mm512_cvtepi32_epi8(i);
                    y = match v {
                        0 => _mm512_inserti32x4::<0>(y, b),
                        1 => _mm512_inserti32x4::<1>(y, b),
                        2 => _mm512_inserti32x4::<2>(y, b),
                        _ => _mm512_inserti32x4::<3>(y, b),
                    };
                }
                let base = e.out.wrapping_add(oc * e.plane);
                for sg in e.segs {
                    let mask = (u64::MAX >> (64 - sg.hi)) & !((1u64 << sg.lo) - 1);
                    // SAFETY: the unmasked lanes `lo..hi` land inside channel oc's plane
                    // (segment contract); masked-off lanes are not accessed.
                    unsafe {
                        _mm512_mask_storeu_epi8(base.wrapping_offset(sg.off).cast(), mask, y)
                    };
                }
            }
            None => {
                let base = e.out.cast::<i32>().wrapping_add(oc * e.plane);
                for sg in e.segs {
                    let mask = (u64::MAX >> (64 - sg.hi)) & !((1u64 << sg.lo) - 1);
                    let p = base.wrapping_offset(sg.off);
                    for (v, &x) in vs.iter().enumerate() {
                        // SAFETY: as above, for i32 lanes.
                        unsafe {
                            _mm512_mask_storeu_epi32(
                                p.wrapping_add(16 * v).cast(),
                                (mask >> (16 * v)) as u16,
                                x,
                            )
                        };
                    }
                }
            }
        }
    }
}

/// `dst[4i + j] = src[j][i] ⊕ xor` with SSE2 (part of x86-64), scalar tail.
pub(crate) fn interleave4(src: [&[u8]; 4], xor: u8, dst: &mut [u8]) {
    let n = dst.len() / 4;
    assert!(
        src.iter().all(|s| s.len() >= n),
        "interleave4 source too short"
    );
    let n16 = n / 16 * 16;
    // SAFETY: SSE2 is part of x86-64; every 16-byte load reads `src[j][i..i + 16]` with
    // `i + 16 ≤ n ≤ len` and every store writes `dst[4i..4i + 64]` with `4(i + 16) ≤
    // dst.len()`.
    unsafe {
        let x = _mm_set1_epi8(xor as i8);
        let mut i = 0;
        while i < n16 {
            let ld = |j: usize| _mm_xor_si128(_mm_loadu_si128(src[j].as_ptr().add(i).cast()), x);
            let (a, b, c, d) = (ld(0), ld(1), ld(2), ld(3));
            let ab_l = _mm_unpacklo_epi8(a, b);
            let ab_h = _mm_unpackhi_epi8(a, b);
            let cd_l = _mm_unpacklo_epi8(c, d);
            let cd_h = _mm_unpackhi_epi8(c, d);
            let p = dst.as_mut_ptr().add(4 * i).cast::<__m128i>();
            _mm_storeu_si128(p, _mm_unpacklo_epi16(ab_l, cd_l));
            _mm_storeu_si128(p.add(1), _mm_unpackhi_epi16(ab_l, cd_l));
            _mm_storeu_si128(p.add(2), _mm_unpacklo_epi16(ab_h, cd_h));
            _mm_storeu_si128(p.add(3), _mm_unpackhi_epi16(ab_h, cd_h));
            i += 16;
        }
    }
    if n16 < n && n >= 16 {
        // The last 16 elements again, overlapping (same values), instead of a scalar tail.
        interleave4(
            src.map(|s| &s[n - 16..n]),
            xor,
            &mut dst[4 * (n - 16)..4 * n],
        );
        return;
    }
    for i in n16..n {
        for j in 0..4 {
            dst[4 * i + j] = src[j][i] ^ xor;
        }
    }
}

//! x86-64 parts of the direct convolution: the AVX-512 VNNI tile (8 output channels ×
//! 48 pixels, requantized and stored with byte masks), the AVX-VNNI tile (the same
//! tile in 4 × 16 sub-tiles), the exact AVX2 tile (4 × 8 sub-tiles, `vpmaddwd` on i16)
//! and the SSE2 4-channel interleave.
#![allow(unsafe_code)]

use super::direct::{Epi, KArgs, MR, NR, Seg};
use super::x86::{copy_run, dp_vnni, narrow_codes, narrow16, requant_codes, requant8};
use core::arch::x86_64::*;

/// Runs the AVX-512 VNNI tile for `rows ≤ MR` output channels, on as many 16-lane
/// vectors as its segments reach (the last tile of a small plane is often narrower than
/// `NR`: a 7×7 plane is one full tile and one of a single lane).
///
/// # Safety
/// As the portable tile (`direct::tile_scalar`); the CPU must support AVX-512 F/BW/VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn tile_avx512(rows: usize, k: &KArgs<'_>, e: &Epi<'_>) {
    let lanes = e.segs.iter().map(|s| s.hi as usize).max().unwrap_or(NR);
    macro_rules! go {
        ($nv:literal) => {
            // SAFETY: forwarded contract.
            unsafe {
                match rows {
                    1 => t512::<1, $nv>(k, e),
                    2 => t512::<2, $nv>(k, e),
                    3 => t512::<3, $nv>(k, e),
                    4 => t512::<4, $nv>(k, e),
                    5 => t512::<5, $nv>(k, e),
                    6 => t512::<6, $nv>(k, e),
                    7 => t512::<7, $nv>(k, e),
                    _ => t512::<8, $nv>(k, e),
                }
            }
        };
    }
    match lanes.div_ceil(16) {
        0 | 1 => go!(1),
        2 => go!(2),
        _ => go!(3),
    }
}

const _: () = assert!(MR == 8 && NR == 16 * 3);

/// `R` rows × `NV ≤ 3` vectors of one tile (lanes past `16·NV` are neither computed
/// nor stored: no segment reaches them).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn t512<const R: usize, const NV: usize>(k: &KArgs<'_>, e: &Epi<'_>) {
    // The accumulators start at each row's constant correction (the epilogue's first
    // addition, done here once per row instead of once per vector; wrapping sums, so
    // the result is the same).
    let mut c = [[_mm512_setzero_si512(); NV]; R];
    for (r, cr) in c.iter_mut().enumerate() {
        *cr = [_mm512_set1_epi32(e.ct[e.oc0 + r]); NV];
    }
    let mut wq = k.w;
    for &to in k.toff {
        // SAFETY: tap offsets stay inside the padded input (caller's contract).
        let mut xp = unsafe { k.x.add(to) };
        for _ in 0..k.cq {
            // SAFETY: NR lanes × 4 bytes are readable at `xp` and MR × 4 weights at `wq`;
            // `vpdpbusd` sums u8 × i8 products into i32 without intermediate saturation.
            unsafe {
                let b: [__m512i; NV] =
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
    // Spill the accumulators once: with `c` itself passed by reference, the compiler
    // stores every accumulator after every `vpdpbusd` of the loop above.
    let mut acc = [[_mm512_setzero_si512(); NV]; R];
    for (a, cr) in acc.iter_mut().zip(&c) {
        *a = *cr;
    }
    // SAFETY: forwarded contract.
    unsafe { epi512::<R, NV>(&acc, e) }
}

/// The AVX-512 epilogue of a direct tile (whose accumulators already hold the
/// constant correction `ct`): the pixel-sum correction, requantization and masked
/// segment stores of the `R` rows and `NV` vectors of the raw accumulators `c` (no
/// segment reaches past lane `16·NV`). Monomorphized per tile shape, so the row loop
/// unrolls; kept out of line, because inlined into the tile its registers made the
/// compiler spill accumulators inside the reduction loop (measured 2× slower).
///
/// # Safety
/// As the portable epilogue (`direct::epi_scalar`); the CPU must support AVX-512 F/BW.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline(never)]
unsafe fn epi512<const R: usize, const NV: usize>(c: &[[__m512i; NV]; R], e: &Epi<'_>) {
    // The vector arithmetic runs in plain loops: `array::from_fn` and iterator
    // adaptors may be compiled out of line, without this function's target features,
    // and move every vector through memory.
    let zs = !e.negzw.is_empty();
    let mut sv = [_mm512_setzero_si512(); NV];
    if zs {
        for (v, s) in sv.iter_mut().enumerate() {
            // SAFETY: `s` holds NR sums when the pixel-sum term is used.
            *s = unsafe { _mm512_loadu_si512(e.s.add(16 * v).cast()) };
        }
    }
    // The segments' lane masks and offsets, once for all rows (the stores below could
    // alias `e.segs` as far as the compiler knows, so it would reload them per row).
    // A tile has at most `NR + 1` segments but nearly always 1–2: up to 4 are cached
    // in a small array; more (rows a few pixels wide) are read from `e.segs` per row.
    let mask = |sg: &Seg| ((u64::MAX >> (64 - sg.hi)) & !((1u64 << sg.lo) - 1), sg.off);
    let mut few = [(0u64, 0isize); 4];
    let cached = e.segs.len() <= few.len();
    if cached {
        for (d, sg) in few.iter_mut().zip(e.segs) {
            *d = mask(sg);
        }
    }
    let few = &few[..if cached { e.segs.len() } else { 0 }];
    let quant = e.quant.map(|(mult, zp, lo, hi)| {
        // The codes lie in [lo + zp, hi + zp]: i8 codes when that reaches below 0.
        let signed = lo + (zp as f32) < 0.0;
        (mult, zp, _mm512_set1_ps(lo), _mm512_set1_ps(hi), signed)
    });
    for (r, cr) in c.iter().enumerate() {
        let oc = e.oc0 + r;
        // `ct` is already in the accumulators (see `t512`).
        let mut vs = *cr;
        if zs {
            let z = _mm512_set1_epi32(e.negzw[oc]);
            for v in 0..NV {
                vs[v] = _mm512_add_epi32(vs[v], _mm512_mullo_epi32(sv[v], z));
            }
        }
        if let Some((mult, zp, lo, hi, signed)) = quant {
            let m = _mm512_set1_ps(mult[oc]);
            for x in vs.iter_mut() {
                *x = requant_codes(*x, m, lo, hi, zp);
            }
            let y = narrow_codes::<NV>(&vs, signed);
            let base = e.out.wrapping_add(oc * e.plane);
            // SAFETY: the unmasked lanes `lo..hi` land inside channel oc's plane
            // (segment contract); masked-off lanes are not accessed.
            let store = |(mask, off): (u64, isize)| unsafe {
                _mm512_mask_storeu_epi8(base.wrapping_offset(off).cast(), mask, y)
            };
            if let [one] = few {
                store(*one);
            } else if cached {
                for &sg in few {
                    store(sg);
                }
            } else {
                for sg in e.segs {
                    store(mask(sg));
                }
            }
        } else {
            let base = e.out.cast::<i32>().wrapping_add(oc * e.plane);
            for (mask, off) in e.segs.iter().map(mask) {
                let p = base.wrapping_offset(off);
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

/// `dst[4i + j] = src[j][i] ⊕ xor`: 64 pixels at a time with AVX-512 BW when the CPU
/// has it, then [`interleave4_sse2`].
pub(crate) fn interleave4(src: [&[u8]; 4], xor: u8, dst: &mut [u8]) {
    let n = dst.len() / 4;
    let n64 = n / 64 * 64;
    if n64 > 0
        && src.iter().all(|s| s.len() >= n)
        && std::arch::is_x86_feature_detected!("avx512bw")
    {
        // SAFETY: AVX-512 BW detected just above; every source holds n ≥ n64 bytes and
        // `dst` 4·n64.
        unsafe { interleave4_avx512(src, xor, &mut dst[..4 * n64]) };
        interleave4_sse2(src.map(|s| &s[n64..]), xor, &mut dst[4 * n64..]);
        return;
    }
    interleave4_sse2(src, xor, dst);
}

/// The first `dst.len() / 4` (a multiple of 64) pixels of [`interleave4`]: the SSE2
/// byte and word unpacks on 512-bit registers (per 128-bit lane), then a 4 × 4
/// transpose of the lanes.
///
/// # Safety
/// The CPU must have AVX-512 F and BW; every `src[j]` must hold `dst.len() / 4` bytes.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn interleave4_avx512(src: [&[u8]; 4], xor: u8, dst: &mut [u8]) {
    let n = dst.len() / 4;
    let x = _mm512_set1_epi8(xor as i8);
    let mut i = 0;
    while i + 64 <= n {
        // SAFETY: 64 bytes at `i` of each source (i + 64 ≤ n ≤ len) and 256 bytes at
        // `4i` of `dst` (4(i + 64) ≤ dst.len()).
        unsafe {
            let ld =
                |j: usize| _mm512_xor_si512(_mm512_loadu_si512(src[j].as_ptr().add(i).cast()), x);
            let (a, b, c, d) = (ld(0), ld(1), ld(2), ld(3));
            let ab_l = _mm512_unpacklo_epi8(a, b);
            let ab_h = _mm512_unpackhi_epi8(a, b);
            let cd_l = _mm512_unpacklo_epi8(c, d);
            let cd_h = _mm512_unpackhi_epi8(c, d);
            // Lane L of r_k: pixels 16L + 4k .. 16L + 4k + 3.
            let r0 = _mm512_unpacklo_epi16(ab_l, cd_l);
            let r1 = _mm512_unpackhi_epi16(ab_l, cd_l);
            let r2 = _mm512_unpacklo_epi16(ab_h, cd_h);
            let r3 = _mm512_unpackhi_epi16(ab_h, cd_h);
            // Output vector j is lanes (r0[j], r1[j], r2[j], r3[j]).
            let t0 = _mm512_shuffle_i32x4::<0b01_00_01_00>(r0, r1);
            let t1 = _mm512_shuffle_i32x4::<0b01_00_01_00>(r2, r3);
            let t2 = _mm512_shuffle_i32x4::<0b11_10_11_10>(r0, r1);
            let t3 = _mm512_shuffle_i32x4::<0b11_10_11_10>(r2, r3);
            let p = dst.as_mut_ptr().add(4 * i).cast::<__m512i>();
            _mm512_storeu_si512(p, _mm512_shuffle_i32x4::<0b10_00_10_00>(t0, t1));
            _mm512_storeu_si512(p.add(1), _mm512_shuffle_i32x4::<0b11_01_11_01>(t0, t1));
            _mm512_storeu_si512(p.add(2), _mm512_shuffle_i32x4::<0b10_00_10_00>(t2, t3));
            _mm512_storeu_si512(p.add(3), _mm512_shuffle_i32x4::<0b11_01_11_01>(t2, t3));
        }
        i += 64;
    }
}

/// `dst[4i + j] = src[j][i] ⊕ xor` with SSE2 (part of x86-64), scalar tail.
fn interleave4_sse2(src: [&[u8]; 4], xor: u8, dst: &mut [u8]) {
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
        interleave4_sse2(
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

// ---------------------------------------------------------------- AVX-VNNI

/// 256-bit vectors per lane chunk of the AVX-VNNI sub-tile: 4 rows × 16 lanes, 8
/// accumulators (4 × 24 spilled one accumulator per k-step and ran 1.8× slower; 3 × 24
/// measured the same as 4 × 16).
const LV: usize = 2;
const _: () = assert!(NR.is_multiple_of(8 * LV) && MR == 8);

/// Defines a 256-bit byte tile: `$tile` runs `rows ≤ MR` output channels in 4-row ×
/// 16-lane sub-tiles (`$sub`, on the lanes the segments reach), each k-quad step one
/// `$dp(acc, x bytes, weight quad)` per row and vector, then the shared epilogue.
macro_rules! tile256 {
    ($(#[$doc:meta])* $tile:ident, $sub:ident, $feat:literal, $dp:ident) => {
        $(#[$doc])*
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn $tile(rows: usize, k: &KArgs<'_>, e: &Epi<'_>) {
            let mut acc = [[0i32; NR]; MR];
            let lanes = e.segs.iter().map(|s| s.hi as usize).max().unwrap_or(NR);
            for l0 in (0..lanes.div_ceil(8 * LV) * 8 * LV).step_by(8 * LV) {
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
            // SAFETY: forwarded contract; both features imply AVX2.
            unsafe { epi256(rows, &acc, e) }
        }

        /// Rows `r0..r0+RR` × lanes `l0..l0+8·LV` of a tile into `acc`.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn $sub<const RR: usize>(
            k: &KArgs<'_>,
            r0: usize,
            l0: usize,
            acc: &mut [[i32; NR]; MR],
        ) {
            let mut c = [[_mm256_setzero_si256(); LV]; RR];
            // SAFETY: row r0 of the block's first k-quad.
            let mut wq = unsafe { k.w.add(4 * r0) };
            for &to in k.toff {
                // SAFETY: tap offsets and the lane chunk stay inside the padded input.
                let mut xp = unsafe { k.x.add(to + 4 * l0) };
                for _ in 0..k.cq {
                    // SAFETY: 8·LV lanes × 4 bytes are readable at `xp`, RR × 4 weights
                    // at `wq`.
                    unsafe {
                        let b: [__m256i; LV] =
                            core::array::from_fn(|v| _mm256_loadu_si256(xp.add(32 * v).cast()));
                        for (r, cr) in c.iter_mut().enumerate() {
                            let wv = _mm256_set1_epi32(wq.add(4 * r).cast::<i32>().read_unaligned());
                            for (cv, &bv) in cr.iter_mut().zip(&b) {
                                *cv = $dp(*cv, bv, wv);
                            }
                        }
                        wq = wq.add(MR * 4);
                        xp = xp.add(k.plane4);
                    }
                }
            }
            for (r, cr) in c.iter().enumerate() {
                for (v, &cv) in cr.iter().enumerate() {
                    // SAFETY: row r0 + r, lanes l0 + 8v.. lie inside `acc`.
                    unsafe {
                        _mm256_storeu_si256(acc[r0 + r].as_mut_ptr().add(l0 + 8 * v).cast(), cv)
                    };
                }
            }
        }
    };
}

/// `vpdpbusd` on AVX2 for 7-bit weights: `vpmaddubsw` (u8×i8 pairs into i16, each pair
/// sum within ±2·255·64, so never saturated), `vpmaddwd` by ones, `vpaddd`.
#[target_feature(enable = "avx2")]
#[inline]
fn dp_ubs(c: __m256i, x: __m256i, w: __m256i) -> __m256i {
    let pairs = _mm256_maddubs_epi16(x, w);
    _mm256_add_epi32(c, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

tile256!(
    /// Runs the AVX-VNNI tile (`vpdpbusd ymm`).
    ///
    /// # Safety
    /// As the portable tile (`direct::tile_scalar`); the CPU must support AVX2 and
    /// AVX-VNNI.
    tile_avxvnni,
    sub_vnni,
    "avx2,avxvnni",
    dp_vnni
);

tile256!(
    /// Runs the AVX2 byte tile for weights in −64..=64 (`DirectW::narrow`): the
    /// AVX-VNNI tile with `vpdpbusd` emulated, exact for such weights.
    ///
    /// # Safety
    /// As the portable tile (`direct::tile_scalar`), with every weight of `k.w` in
    /// −64..=64; the CPU must support AVX2.
    tile_avx2_narrow,
    sub_ubs,
    "avx2",
    dp_ubs
);

/// The epilogue of the 256-bit tiles: corrections, requantization (as
/// `driver::quant_one`) and the segment stores of the raw accumulators `acc`.
///
/// # Safety
/// As the portable tile's epilogue; the CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn epi256(rows: usize, acc: &[[i32; NR]; MR], e: &Epi<'_>) {
    let zs = !e.negzw.is_empty();
    // Vectors past the last lane a segment reaches are not needed.
    let lanes = e.segs.iter().map(|s| s.hi as usize).max().unwrap_or(NR);
    let quant = e.quant.map(|(mult, zp, lo, hi)| {
        let off = _mm256_set1_epi32(zp.wrapping_sub(0x4B40_0000));
        (mult, _mm256_set1_ps(lo), _mm256_set1_ps(hi), off)
    });
    for (r, a) in acc.iter().enumerate().take(rows) {
        let oc = e.oc0 + r;
        let ct = _mm256_set1_epi32(e.ct[oc]);
        let nz = _mm256_set1_epi32(if zs { e.negzw[oc] } else { 0 });
        // Lanes 8v..8v+8 with their corrections.
        let sums = |v: usize| {
            // SAFETY: `a` holds NR i32; `s` holds NR sums when used.
            unsafe {
                let x = _mm256_add_epi32(_mm256_loadu_si256(a.as_ptr().add(8 * v).cast()), ct);
                if zs {
                    let s = _mm256_loadu_si256(e.s.add(8 * v).cast());
                    _mm256_add_epi32(x, _mm256_mullo_epi32(s, nz))
                } else {
                    x
                }
            }
        };
        let plane = (oc * e.plane) as isize;
        if let Some((mult, lo, hi, off)) = quant {
            let m = _mm256_set1_ps(mult[oc]);
            let mut bytes = [0u8; NR];
            for v in 0..lanes.div_ceil(16) {
                let q0 = requant8(sums(2 * v), m, lo, hi, off);
                let q1 = requant8(sums(2 * v + 1), m, lo, hi, off);
                // SAFETY: `bytes` holds NR ≥ 16v + 16 bytes.
                unsafe {
                    _mm_storeu_si128(bytes.as_mut_ptr().add(16 * v).cast(), narrow16(q0, q1))
                };
            }
            for sg in e.segs {
                let (lo, hi) = (sg.lo as usize, sg.hi as usize);
                // SAFETY: lanes lo..hi land inside channel oc's plane (segment contract).
                unsafe {
                    copy_run(
                        bytes.as_ptr().add(lo),
                        e.out.offset(plane + sg.off + lo as isize),
                        hi - lo,
                    )
                };
            }
        } else {
            let mut row = [0i32; NR];
            for v in 0..lanes.div_ceil(8) {
                // SAFETY: `row` holds NR i32.
                unsafe { _mm256_storeu_si256(row.as_mut_ptr().add(8 * v).cast(), sums(v)) };
            }
            for sg in e.segs {
                let (lo, hi) = (sg.lo as usize, sg.hi as usize);
                // SAFETY: as above, for i32 lanes.
                unsafe {
                    copy_run(
                        row.as_ptr().add(lo).cast(),
                        e.out
                            .cast::<i32>()
                            .offset(plane + sg.off + lo as isize)
                            .cast(),
                        4 * (hi - lo),
                    )
                };
            }
        }
    }
}

// ---------------------------------------------------------------- AVX2 (exact)

/// Runs the exact AVX2 tile for `rows ≤ MR` output channels: 4-row × 8-lane sub-tiles
/// on the input widened to i16 in registers and the i16 weight copy, with `vpmaddwd`
/// (pair sums ≤ 2·255·128, never saturating), then the shared 256-bit epilogue. Only
/// the 8-lane blocks its segments reach are computed (the last tile of a 7×7 plane has
/// one lane).
///
/// # Safety
/// As the portable tile (`direct::tile_scalar`), with `k.w16` the i16 weights; the CPU
/// must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn tile_avx2(rows: usize, k: &KArgs<'_>, e: &Epi<'_>) {
    let mut acc = [[0i32; NR]; MR];
    // Lanes past the last one a segment reaches are neither computed nor stored.
    let lanes = e.segs.iter().map(|s| s.hi as usize).max().unwrap_or(NR);
    for l0 in (0..lanes.div_ceil(8) * 8).step_by(8) {
        for r0 in [0, 4] {
            if r0 >= rows {
                break;
            }
            // SAFETY: forwarded contract; the sub-tile stays inside the tile.
            unsafe {
                match (rows - r0).min(4) {
                    1 => sub_madd::<1>(k, r0, l0, &mut acc),
                    2 => sub_madd::<2>(k, r0, l0, &mut acc),
                    3 => sub_madd::<3>(k, r0, l0, &mut acc),
                    _ => sub_madd::<4>(k, r0, l0, &mut acc),
                }
            }
        }
    }
    // SAFETY: forwarded contract.
    unsafe { epi256(rows, &acc, e) }
}

/// Rows `r0..r0+RR` × lanes `l0..l0+8` of a tile into `acc`. Each 16-byte half of the
/// 8 lanes' channel quads is zero-extended to i16 (4 lanes × 4 channels) and multiplied
/// by the row's 4 weights (broadcast as 64 bits) with `vpmaddwd`, giving per lane two
/// i32 partial sums (channels 0+1 and 2+3) that are added pairwise at the end.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn sub_madd<const RR: usize>(
    k: &KArgs<'_>,
    r0: usize,
    l0: usize,
    acc: &mut [[i32; NR]; MR],
) {
    let mut c = [[_mm256_setzero_si256(); 2]; RR];
    // SAFETY: row r0 of the block's first k-quad.
    let mut wq = unsafe { k.w16.add(4 * r0) };
    for &to in k.toff {
        // SAFETY: tap offsets and the lane chunk stay inside the padded input.
        let mut xp = unsafe { k.x.add(to + 4 * l0) };
        for _ in 0..k.cq {
            // SAFETY: 8 lanes × 4 bytes are readable at `xp`, RR × 4 i16 weights at `wq`.
            unsafe {
                let x0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(xp.cast()));
                let x1 = _mm256_cvtepu8_epi16(_mm_loadu_si128(xp.add(16).cast()));
                for (r, cr) in c.iter_mut().enumerate() {
                    let wv = _mm256_set1_epi64x(wq.add(4 * r).cast::<i64>().read_unaligned());
                    cr[0] = _mm256_add_epi32(cr[0], _mm256_madd_epi16(x0, wv));
                    cr[1] = _mm256_add_epi32(cr[1], _mm256_madd_epi16(x1, wv));
                }
                wq = wq.add(MR * 4);
                xp = xp.add(k.plane4);
            }
        }
    }
    for (r, cr) in c.iter().enumerate() {
        // hadd gives lanes [0 1 4 5 | 2 3 6 7]; the permute puts them in order.
        let s = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_hadd_epi32(cr[0], cr[1]));
        // SAFETY: row r0 + r, lanes l0..l0 + 8 lie inside `acc`.
        unsafe { _mm256_storeu_si256(acc[r0 + r].as_mut_ptr().add(l0).cast(), s) };
    }
}

#[cfg(test)]
mod tests {
    /// `interleave4` (AVX-512 blocks of 64 pixels, SSE2 blocks of 16, overlapping and
    /// scalar tails) against its definition, for every length up to 300 pixels.
    #[test]
    fn interleave4_matches_the_definition() {
        let src: Vec<Vec<u8>> = (0..4u8)
            .map(|j| {
                (0..300u32)
                    .map(|i| (i * 7 + u32::from(j) * 61) as u8)
                    .collect()
            })
            .collect();
        for n in 0..300 {
            for xor in [0u8, 0x80] {
                let mut got = vec![0xAAu8; 4 * n + 8];
                let s = [&src[0][..n], &src[1][..n], &src[2][..n], &src[3][..n]];
                super::interleave4(s, xor, &mut got[..4 * n]);
                for i in 0..n {
                    for j in 0..4 {
                        assert_eq!(
                            got[4 * i + j],
                            src[j][i] ^ xor,
                            "n {n} pixel {i} channel {j}"
                        );
                    }
                }
                assert!(
                    got[4 * n..].iter().all(|&v| v == 0xAA),
                    "n {n}: wrote past the end"
                );
            }
        }
    }
}

//! AVX-512F micro-kernels (12×32 register tile: 24 accumulators, 2 B loads, 1 broadcast;
//! and an 8×32 twin of the same code).
//!
//! Not part of the portable trio (scalar/AVX2/NEON): picked when the CPU has AVX-512F
//! (server x86, recent AMD), because onnxruntime's MLAS uses it there too.
#![allow(unsafe_code)]

use super::KernelSet;
use std::arch::x86_64::*;

const NR: usize = 32;

// kc 768: the depth of typical convolutions (3×3×64 = 576, 512) in one block, so the
// C tile is not re-read per block (64→64 3×3 on 56²: 1.70 → 1.28 ms with nc 256, from
// kc 256 / nc 1024); nc 256 keeps a packed B block (768×256 floats) within L2.
pub(super) static KERNELS: KernelSet = KernelSet {
    mr: 12,
    nr: NR,
    kc: 768,
    mc: 144,
    nc: 256,
    ukernel: ukernel::<12>,
    edge: Some(ukernel_edge::<12>),
    rows: Some(ukernel_rows::<12>),
    gemv,
};

/// The 8×32 twin (16 accumulators) for row counts that are multiples of 8 but not of
/// 12 (16, 64, 1000 output channels): same `nr` and `kc`, so `B` panels are shared.
pub(super) static KERNELS_8: KernelSet = KernelSet {
    mr: 8,
    nr: NR,
    kc: 768,
    mc: 144,
    nc: 256,
    ukernel: ukernel::<8>,
    edge: Some(ukernel_edge::<8>),
    rows: Some(ukernel_rows::<8>),
    gemv,
};

/// `C[0..MR, 0..32] = alpha·Σ_k a[k]⊗b[k] + beta·C`.
///
/// # Safety
/// The CPU must support AVX-512F. `a` must point to `kc·MR` floats, `b` to `kc·32`
/// floats, and `c` to an MR×32 tile with row stride `ldc` valid for writes (and reads
/// when `beta != 0`).
#[target_feature(enable = "avx512f")]
unsafe fn ukernel<const MR: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        // SAFETY: each iteration reads 32 floats of `b` and MR of `a`, within the kc·NR
        // and kc·MR extents the caller guarantees; unaligned loads are used.
        unsafe {
            let b0 = _mm512_loadu_ps(b);
            let b1 = _mm512_loadu_ps(b.add(16));
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(r));
                row[0] = _mm512_fmadd_ps(av, b0, row[0]);
                row[1] = _mm512_fmadd_ps(av, b1, row[1]);
            }
            a = a.add(MR);
            b = b.add(NR);
        }
    }
    let va = _mm512_set1_ps(alpha);
    let vb = _mm512_set1_ps(beta);
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: row r of the tile spans c[r·ldc .. r·ldc + 32], valid per the contract;
        // C is read only when beta != 0.
        unsafe {
            let p = c.add(r * ldc);
            let mut v0 = _mm512_mul_ps(va, row[0]);
            let mut v1 = _mm512_mul_ps(va, row[1]);
            if beta != 0.0 {
                v0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(p), v0);
                v1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(p.add(16)), v1);
            }
            _mm512_storeu_ps(p, v0);
            _mm512_storeu_ps(p.add(16), v1);
        }
    }
}

/// The lane masks `(m0, m1)` of a tile row's two vectors for its first `nn ≤ 32`
/// columns.
macro_rules! col_masks {
    ($nn:expr) => {{
        let nn: usize = $nn;
        let m0: __mmask16 = if nn >= 16 {
            0xffff
        } else {
            ((1u32 << nn) - 1) as u16
        };
        let m1: __mmask16 = if nn <= 16 {
            0
        } else {
            ((1u32 << (nn - 16)) - 1) as u16
        };
        (m0, m1)
    }};
}

/// `C[r, ·] = alpha·acc[r] + beta·C[r, ·]` for the rows `r < mm` of the tile at `c`,
/// loads and stores masked by `(m0, m1)` (`C` is read only when `beta != 0`). A macro so
/// that it expands inside the `#[target_feature]` kernels.
macro_rules! store_masked {
    ($acc:ident, $c:expr, $ldc:expr, $alpha:expr, $beta:expr, $mm:expr, $m0:expr, $m1:expr) => {{
        let (m0, m1) = ($m0, $m1);
        let va = _mm512_set1_ps($alpha);
        let vb = _mm512_set1_ps($beta);
        for (r, row) in $acc.iter().enumerate().take($mm.min(MR)) {
            // SAFETY: row r < mm of the tile; the masks limit loads and stores to columns
            // the caller guarantees valid (masked-off lanes are not accessed).
            unsafe {
                let p = $c.add(r * $ldc);
                let mut v0 = _mm512_mul_ps(va, row[0]);
                let mut v1 = _mm512_mul_ps(va, row[1]);
                if $beta != 0.0 {
                    v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, p), v0);
                    v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, p.add(16)), v1);
                }
                _mm512_mask_storeu_ps(p, m0, v0);
                _mm512_mask_storeu_ps(p.add(16), m1, v1);
            }
        }
    }};
}

/// `acc[r] += a[k·MR + r] ⊗ (b0, b1)` for every `k < kc`, where `$p` is row `k` of `B`
/// (`b + offs[k]`) and `b0`, `b1` the loads `$l0`, `$l1` of its two vectors.
macro_rules! rows_k_loop {
    ($kc:expr, $a:expr, $b:expr, $offs:expr, $acc:ident, $p:ident => $l0:expr, $l1:expr) => {{
        let mut a: *const f32 = $a;
        for kk in 0..$kc {
            // SAFETY: row kk of B is readable at b + offs[kk] for the lanes loaded, and
            // `a` holds the kc·MR packed floats (the kernel's caller).
            unsafe {
                let $p = $b.add(*$offs.add(kk));
                let b0 = $l0;
                let b1 = $l1;
                for (r, row) in $acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*a.add(r));
                    row[0] = _mm512_fmadd_ps(av, b0, row[0]);
                    row[1] = _mm512_fmadd_ps(av, b1, row[1]);
                }
                a = a.add(MR);
            }
        }
    }};
}

/// `C[0..mm, 0..nn] = alpha·Σ_k a[k]⊗b[k] + beta·C` for a partial tile (masked
/// stores, only rows `< mm` and columns `< nn` are touched).
///
/// # Safety
/// As [`ukernel`], with `mm ≤ MR`, `nn ≤ 32`, and only the `mm × nn` corner of the
/// tile at `c` needing to be valid.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn ukernel_edge<const MR: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
    mm: usize,
    nn: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        // SAFETY: as in `ukernel`: the packed panels hold kc·NR and kc·MR floats.
        unsafe {
            let b0 = _mm512_loadu_ps(b);
            let b1 = _mm512_loadu_ps(b.add(16));
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(r));
                row[0] = _mm512_fmadd_ps(av, b0, row[0]);
                row[1] = _mm512_fmadd_ps(av, b1, row[1]);
            }
            a = a.add(MR);
            b = b.add(NR);
        }
    }
    let (m0, m1) = col_masks!(nn.min(NR));
    store_masked!(acc, c, ldc, alpha, beta, mm, m0, m1);
}

/// `C[0..mm, 0..nn] = alpha·Σ_k a[k]⊗B[k, 0..nn] + beta·C`, with row `k` of `B` read in
/// place at `b + offs[k]` (no packed panel): a convolution's shifted phase planes, whose
/// rows for neighbouring taps overlap, so the strip of `B` a tile reads is a few times
/// smaller than its packed panel. Full tiles (`mm = MR`, `nn = 32`) load and store
/// whole vectors; partial ones mask both, so nothing past column `nn` is read.
///
/// # Safety
/// The CPU must support AVX-512F. `a` must point to `kc·MR` packed floats, `offs` to
/// `kc` offsets with `b + offs[k] .. + nn` readable for each, and the `mm × nn` corner
/// of the tile at `c` (row stride `ldc`) valid for writes (and reads when
/// `beta != 0`); `mm ≤ MR`, `nn ≤ 32`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn ukernel_rows<const MR: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    offs: *const usize,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
    mm: usize,
    nn: usize,
) {
    let nn = nn.min(NR);
    let (m0, m1) = col_masks!(nn);
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    if nn == NR {
        rows_k_loop!(kc, a, b, offs, acc, p => _mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)));
    } else {
        rows_k_loop!(kc, a, b, offs, acc,
            p => _mm512_maskz_loadu_ps(m0, p), _mm512_maskz_loadu_ps(m1, p.add(16)));
    }
    store_masked!(acc, c, ldc, alpha, beta, mm, m0, m1);
}

/// `acc[0..32] += Σ_k a[k]·b[k·ldb..k·ldb+32]`.
///
/// # Safety
/// The CPU must support AVX-512F; `a` must point to `kc` floats, `b` to
/// `(kc-1)·ldb + 32` floats and `acc` to 32 writable floats.
#[target_feature(enable = "avx512f")]
unsafe fn gemv(kc: usize, a: *const f32, b: *const f32, ldb: usize, acc: *mut f32) {
    let mut s = [_mm512_setzero_ps(); 8];
    let mut k = 0;
    // SAFETY: all reads stay below a[kc] and b[(kc-1)·ldb + 32] (k + 3 < kc in the
    // unrolled loop, k < kc in the tail); `acc` holds 32 floats.
    unsafe {
        while k + 4 <= kc {
            for u in 0..4 {
                let av = _mm512_set1_ps(*a.add(k + u));
                let bp = b.add((k + u) * ldb);
                s[2 * u] = _mm512_fmadd_ps(av, _mm512_loadu_ps(bp), s[2 * u]);
                s[2 * u + 1] = _mm512_fmadd_ps(av, _mm512_loadu_ps(bp.add(16)), s[2 * u + 1]);
            }
            k += 4;
        }
        while k < kc {
            let av = _mm512_set1_ps(*a.add(k));
            let bp = b.add(k * ldb);
            s[0] = _mm512_fmadd_ps(av, _mm512_loadu_ps(bp), s[0]);
            s[1] = _mm512_fmadd_ps(av, _mm512_loadu_ps(bp.add(16)), s[1]);
            k += 1;
        }
        let lo = _mm512_add_ps(_mm512_add_ps(s[0], s[2]), _mm512_add_ps(s[4], s[6]));
        let hi = _mm512_add_ps(_mm512_add_ps(s[1], s[3]), _mm512_add_ps(s[5], s[7]));
        _mm512_storeu_ps(acc, _mm512_add_ps(_mm512_loadu_ps(acc), lo));
        _mm512_storeu_ps(acc.add(16), _mm512_add_ps(_mm512_loadu_ps(acc.add(16)), hi));
    }
}

//! AVX2 + FMA micro-kernels (6×16 register tile: 12 accumulators, 2 B loads, 1 broadcast).
#![allow(unsafe_code)]

use super::KernelSet;
use std::arch::x86_64::*;

/// Lanes `i < k` set (`k ≤ 8`), for AVX masked loads and stores (the depthwise and
/// pooling kernels' row tails).
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn lanes8(k: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(k as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

const MR: usize = 6;
const NR: usize = 16;

pub(super) static KERNELS: KernelSet = KernelSet {
    mr: MR,
    nr: NR,
    // Blocking as on AVX-512 (session 3): one k-block for K ≤ 768 (3×3 convs up to 85
    // input channels, 1×1 up to 768) so C is written once; 256-column blocks.
    kc: 768,
    mc: 144,
    nc: 256,
    ukernel,
    edge: Some(ukernel_edge),
    rows: Some(ukernel_rows),
    gemv,
};

/// The k loop shared by [`ukernel`] and [`ukernel_edge`]:
/// `acc[r] += a[k·6 + r] ⊗ b[k·16..+16]` for every k < `kc` and every row `r` of `acc`
/// (6, or fewer for a partial tile). A macro rather than a function so that it is
/// expanded inside the `#[target_feature]` kernels (an `#[inline(always)]` helper
/// cannot carry the features).
macro_rules! full_width_k_loop {
    ($kc:expr, $a:expr, $b:expr, $acc:ident) => {{
        let (mut a, mut b): (*const f32, *const f32) = ($a, $b);
        for _ in 0..$kc {
            // SAFETY: each iteration reads 16 floats of `b` and 6 of `a`, within the kc·NR
            // and kc·MR extents the kernels' callers guarantee; unaligned loads are used.
            unsafe {
                let b0 = _mm256_loadu_ps(b);
                let b1 = _mm256_loadu_ps(b.add(8));
                for (r, row) in $acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*a.add(r));
                    row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                    row[1] = _mm256_fmadd_ps(av, b1, row[1]);
                }
                a = a.add(MR);
                b = b.add(NR);
            }
        }
    }};
}

/// `C[r, ·] = alpha·acc[r] + beta·C[r, ·]` for the rows `r < mm` of the tile at `c`,
/// loads and stores masked by the lane masks `m0`, `m1` (`C` is read only when
/// `beta != 0`).
macro_rules! store_masked {
    ($acc:ident, $c:expr, $ldc:expr, $alpha:expr, $beta:expr, $mm:expr, $m0:expr, $m1:expr) => {{
        let (m0, m1) = ($m0, $m1);
        let va = _mm256_set1_ps($alpha);
        let vb = _mm256_set1_ps($beta);
        for (r, row) in $acc.iter().enumerate().take($mm.min(MR)) {
            // SAFETY: row r < mm of the tile; the masks limit loads and stores to columns
            // the caller guarantees valid (masked-off lanes are not accessed).
            unsafe {
                let p = $c.add(r * $ldc);
                let mut v0 = _mm256_mul_ps(va, row[0]);
                let mut v1 = _mm256_mul_ps(va, row[1]);
                if $beta != 0.0 {
                    v0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(p, m0), v0);
                    v1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(p.add(8), m1), v1);
                }
                _mm256_maskstore_ps(p, m0, v0);
                _mm256_maskstore_ps(p.add(8), m1, v1);
            }
        }
    }};
}

/// `acc[r] += a[k·6 + r] ⊗ (b0, b1)` for every `k < kc`, where `$p` is row `k` of `B`
/// (`b + offs[k]`) and `b0`, `b1` the loads `$l0`, `$l1` of its two vectors.
macro_rules! rows_k_loop {
    ($kc:expr, $a:expr, $b:expr, $offs:expr, $acc:ident, $p:ident => $l0:expr, $l1:expr) => {{
        let mut a: *const f32 = $a;
        for kk in 0..$kc {
            // SAFETY: row kk of B is readable at b + offs[kk] for the lanes loaded, and
            // `a` holds the kc·6 packed floats (the kernel's caller).
            unsafe {
                let $p = $b.add(*$offs.add(kk));
                let b0 = $l0;
                let b1 = $l1;
                for (r, row) in $acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*a.add(r));
                    row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                    row[1] = _mm256_fmadd_ps(av, b1, row[1]);
                }
                a = a.add(MR);
            }
        }
    }};
}

/// `$f::<R>(args)` with `R` the row count `$mm` (1–5), or the full `MR` otherwise: the
/// kernels for partial row tiles compute only the rows they keep.
macro_rules! by_rows {
    ($mm:expr, $f:ident($($arg:expr),*)) => {
        match $mm {
            1 => $f::<1>($($arg),*),
            2 => $f::<2>($($arg),*),
            3 => $f::<3>($($arg),*),
            4 => $f::<4>($($arg),*),
            5 => $f::<5>($($arg),*),
            _ => $f::<MR>($($arg),*),
        }
    };
}

/// `C[0..6, 0..16] = alpha·Σ_k a[k]⊗b[k] + beta·C`.
///
/// # Safety
/// The CPU must support AVX2 and FMA. `a` must point to `kc·6` floats, `b` to `kc·16`
/// floats, and `c` to a 6×16 tile with row stride `ldc` valid for writes (and reads when
/// `beta != 0`).
#[target_feature(enable = "avx2,fma")]
unsafe fn ukernel(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
) {
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    full_width_k_loop!(kc, a, b, acc);
    let va = _mm256_set1_ps(alpha);
    let vb = _mm256_set1_ps(beta);
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: row r of the tile spans c[r·ldc .. r·ldc + 16], valid per the contract;
        // C is read only when beta != 0.
        unsafe {
            let p = c.add(r * ldc);
            let mut v0 = _mm256_mul_ps(va, row[0]);
            let mut v1 = _mm256_mul_ps(va, row[1]);
            if beta != 0.0 {
                v0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(p), v0);
                v1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(p.add(8)), v1);
            }
            _mm256_storeu_ps(p, v0);
            _mm256_storeu_ps(p.add(8), v1);
        }
    }
}

/// `C[0..mm, 0..nn] = alpha·Σ_k a[k]⊗b[k] + beta·C` for a partial tile (masked
/// loads/stores: only rows `< mm` and columns `< nn` are touched). Only the `mm` rows
/// are computed: a 2-row remainder (32 output channels in 6-row tiles) costs a third
/// of a full tile, not a whole one.
///
/// # Safety
/// As [`ukernel`], with `mm ≤ 6`, `nn ≤ 16`, and only the `mm × nn` corner of the tile
/// at `c` needing to be valid.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn ukernel_edge(
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
    // SAFETY: the contract of `ukernel_edge` is `edge_r`'s, with R ≥ mm rows computed.
    unsafe { by_rows!(mm, edge_r(kc, a, b, c, ldc, alpha, beta, mm, nn)) }
}

/// [`ukernel_edge`] computing the first `R` rows of the tile (`R ≥ mm`).
///
/// # Safety
/// As [`ukernel_edge`].
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn edge_r<const R: usize>(
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
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    if nn <= 8 {
        // Only the left half of the panel is kept (e.g. the last column of a 7×7
        // plane's 49): half the FMAs; the right accumulators stay zero and are masked off.
        let (mut a, mut b) = (a, b);
        for _ in 0..kc {
            // SAFETY: as in `full_width_k_loop!`, reading the first 8 of each row's 16 floats.
            unsafe {
                let b0 = _mm256_loadu_ps(b);
                for (r, row) in acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*a.add(r));
                    row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                }
                a = a.add(MR);
                b = b.add(NR);
            }
        }
    } else {
        full_width_k_loop!(kc, a, b, acc);
    }
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let nn = nn.min(NR) as i32;
    let m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nn), lanes);
    let m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nn - 8), lanes);
    store_masked!(acc, c, ldc, alpha, beta, mm, m0, m1);
}

/// `C[0..mm, 0..nn] = alpha·Σ_k a[k]⊗B[k, 0..nn] + beta·C`, with row `k` of `B` read in
/// place at `b + offs[k]` (no packed panel; see the AVX-512 twin). Full tiles use whole
/// loads and stores; partial ones mask both, so nothing past column `nn` is read, and
/// compute only their `mm` rows.
///
/// # Safety
/// The CPU must support AVX2 and FMA. `a` must point to `kc·6` packed floats, `offs` to
/// `kc` offsets with `b + offs[k] .. + nn` readable for each, and the `mm × nn` corner
/// of the tile at `c` (row stride `ldc`) valid for writes (and reads when
/// `beta != 0`); `mm ≤ 6`, `nn ≤ 16`.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn ukernel_rows(
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
    // SAFETY: the contract of `ukernel_rows` is `rows_r`'s, with R ≥ mm rows computed.
    unsafe { by_rows!(mm, rows_r(kc, a, b, offs, c, ldc, alpha, beta, mm, nn)) }
}

/// [`ukernel_rows`] computing the first `R` rows of the tile (`R ≥ mm`).
///
/// # Safety
/// As [`ukernel_rows`].
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_r<const R: usize>(
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
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let full = nn >= NR && R == MR && mm >= MR;
    let nn = nn.min(NR) as i32;
    let m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nn), lanes);
    let m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nn - 8), lanes);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    if nn == NR as i32 {
        rows_k_loop!(kc, a, b, offs, acc, p => _mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
    } else {
        rows_k_loop!(kc, a, b, offs, acc,
            p => _mm256_maskload_ps(p, m0), _mm256_maskload_ps(p.add(8), m1));
    }
    if !full {
        store_masked!(acc, c, ldc, alpha, beta, mm, m0, m1);
        return;
    }
    let va = _mm256_set1_ps(alpha);
    let vb = _mm256_set1_ps(beta);
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: a full tile: all 16 columns of row r are valid (caller).
        unsafe {
            let p = c.add(r * ldc);
            let mut v0 = _mm256_mul_ps(va, row[0]);
            let mut v1 = _mm256_mul_ps(va, row[1]);
            if beta != 0.0 {
                v0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(p), v0);
                v1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(p.add(8)), v1);
            }
            _mm256_storeu_ps(p, v0);
            _mm256_storeu_ps(p.add(8), v1);
        }
    }
}

/// `acc[0..16] += Σ_k a[k]·b[k·ldb..k·ldb+16]`.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `a` must point to `kc` floats, `b` to `(kc-1)·ldb + 16`
/// floats and `acc` to 16 writable floats.
#[target_feature(enable = "avx2,fma")]
unsafe fn gemv(kc: usize, a: *const f32, b: *const f32, ldb: usize, acc: *mut f32) {
    // Four independent accumulator pairs hide the FMA latency.
    let mut s = [_mm256_setzero_ps(); 8];
    let mut k = 0;
    // SAFETY: all reads stay below a[kc] and b[(kc-1)·ldb + 16] (k + 3 < kc in the unrolled loop,
    // k < kc in the tail); `acc` holds 16 floats.
    unsafe {
        while k + 4 <= kc {
            for u in 0..4 {
                let av = _mm256_broadcast_ss(&*a.add(k + u));
                let bp = b.add((k + u) * ldb);
                s[2 * u] = _mm256_fmadd_ps(av, _mm256_loadu_ps(bp), s[2 * u]);
                s[2 * u + 1] = _mm256_fmadd_ps(av, _mm256_loadu_ps(bp.add(8)), s[2 * u + 1]);
            }
            k += 4;
        }
        while k < kc {
            let av = _mm256_broadcast_ss(&*a.add(k));
            let bp = b.add(k * ldb);
            s[0] = _mm256_fmadd_ps(av, _mm256_loadu_ps(bp), s[0]);
            s[1] = _mm256_fmadd_ps(av, _mm256_loadu_ps(bp.add(8)), s[1]);
            k += 1;
        }
        let lo = _mm256_add_ps(_mm256_add_ps(s[0], s[2]), _mm256_add_ps(s[4], s[6]));
        let hi = _mm256_add_ps(_mm256_add_ps(s[1], s[3]), _mm256_add_ps(s[5], s[7]));
        _mm256_storeu_ps(acc, _mm256_add_ps(_mm256_loadu_ps(acc), lo));
        _mm256_storeu_ps(acc.add(8), _mm256_add_ps(_mm256_loadu_ps(acc.add(8)), hi));
    }
}

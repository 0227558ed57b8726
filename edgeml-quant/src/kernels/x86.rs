//! x86-64 kernels: AVX-512 VNNI, AVX-VNNI and exact AVX2.
#![allow(unsafe_code)]

use super::driver::{Indirect, Job, MAX_TILE, OutPtr, Post, Tile, block_loop, block_loop_ind};
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
pub(super) use by_rows;

/// The fused tiles' reduction over the full K, expanded inside each `#[target_feature]`
/// tile: `$r` rows of A from `$a` (stride `$lda` bytes), per k-step one 4-byte broadcast
/// per row (`$set1`) against the panel's two B vectors (`$vb` bytes apart, the panel
/// `$nr` columns of `$esz`-byte groups) into `$mac`. Evaluates to `(c0, c1)`, the left and
/// right halves' accumulators.
macro_rules! fused_reduce {
    (
        $r:ident, ($a:ident, $lda:ident, $kp:ident, $b:ident),
        $zero:ident, $load:ident, $set1:ident, $mac:expr,
        nr: $nr:expr, esz: $esz:expr, ks: $ks:expr, vb: $vb:expr
    ) => {{
        let mut c0 = [$zero(); $r];
        let mut c1 = [$zero(); $r];
        let mut ap = [$a; $r];
        for (r, p) in ap.iter_mut().enumerate() {
            *p = $a.wrapping_add(r * $lda);
        }
        let mut k = 0;
        while k < $kp {
            // SAFETY: k < kp: the panel holds `nr` columns × 4 groups at k·nr·esz, each
            // row 4 groups at k·esz (the tile's contract).
            unsafe {
                let b0 = $load($b.add(k * $nr * $esz).cast());
                let b1 = $load($b.add(k * $nr * $esz + $vb).cast());
                for r in 0..$r {
                    let av = $set1(ap[r].add(k * $esz).cast::<i32>().read_unaligned());
                    c0[r] = $mac(c0[r], av, b0);
                    c1[r] = $mac(c1[r], av, b1);
                }
            }
            k += $ks;
        }
        (c0, c1)
    }};
}
pub(super) use fused_reduce;

/// The fused tiles' zero-point corrections, expanded inside each `#[target_feature]`
/// tile's `unsafe` block: `acc + colterm` (`$ld` loads a column vector pair), plus
/// `zb · rowterm` when `fix.zb` is non-null (`rt` then holds `$r` row terms). Evaluates to
/// the `$r × 2` corrected vectors.
macro_rules! fused_correct {
    (
        $r:ident, ($c0:ident, $c1:ident, $fix:ident, $rt:ident), $ld:ident,
        $zero:ident, $add:ident, $mullo:ident, $set1:ident
    ) => {{
        let (ct0, ct1) = $ld($fix.ct);
        let zb = (!$fix.zb.is_null()).then(|| $ld($fix.zb));
        let mut v = [[$zero(); 2]; $r];
        for r in 0..$r {
            v[r] = [$add($c0[r], ct0), $add($c1[r], ct1)];
            if let Some((z0, z1)) = zb {
                let t = $set1(*$rt.add(r));
                v[r][0] = $add(v[r][0], $mullo(z0, t));
                v[r][1] = $add(v[r][1], $mullo(z1, t));
            }
        }
        v
    }};
}
pub(super) use fused_correct;

// ---------------------------------------------------------------- AVX-512 VNNI

/// 8×32 tile: per k-quad two 64-byte B loads, one 4-byte broadcast per row and
/// `vpdpbusd` (u8×i8 products summed in i32, no intermediate saturation).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
pub(super) unsafe fn tile512<const R: usize>(
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
    match fused_dst(job) {
        // SAFETY: forwarded contract; the output is row-major of the epilogue's type.
        Some(out) => unsafe { block_fused512(job, out, mt, np) },
        // SAFETY: forwarded contract.
        None => unsafe { block_loop::<Avx512Vnni>(job, mt, np) },
    }
}

/// The output of `job` if it is row-major with an epilogue the fused tiles handle.
pub(super) fn fused_dst(job: &Job<'_>) -> Option<Dst> {
    match (&job.post, job.out) {
        _ if job.cs != 1 => None,
        (Post::I32, OutPtr::I32(p)) => Some(Dst::I32(p)),
        (Post::Quant { .. }, OutPtr::U8(p)) => Some(Dst::Q(p)),
        (Post::Quant { .. }, OutPtr::I8(p)) => Some(Dst::Q(p.cast())),
        (Post::F32 { .. }, OutPtr::F32(p)) => Some(Dst::F32(p)),
        _ => None,
    }
}

/// A row-major output of the fused tiles (u8 and i8 share the byte store).
#[derive(Clone, Copy)]
pub(super) enum Dst {
    I32(*mut i32),
    Q(*mut u8),
    F32(*mut f32),
}

/// The blocked loop of a GEMM with a row-major output: each tile's zero-point
/// corrections and epilogue run in registers and the tile is stored straight into the
/// output (no scratch tile).
///
/// # Safety
/// As [`block_loop`]; `out` is the job's row-major output.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn block_fused512(job: &Job<'_>, out: Dst, mt: Range<usize>, np: Range<usize>) {
    const MR: usize = 8;
    const NR: usize = 32;
    let mct = 96 / MR;
    let mut mb = mt.start;
    while mb < mt.end {
        let me = (mb + mct).min(mt.end);
        for p in np.clone() {
            let n0 = p * NR;
            let cols = NR.min(job.n - n0);
            let fix = Fix::new(job, n0, cols);
            // SAFETY: panel p lies inside packed B (caller's contract).
            let b = unsafe { job.b.add(p * job.kp * NR) };
            for t in mb..me {
                let m0 = t * MR;
                let rows = MR.min(job.m - m0);
                let off = m0 as isize * job.rs + n0 as isize;
                let o = out.at(off);
                // SAFETY: rows m0.. of packed A and of the output exist; columns past
                // `cols` are masked off.
                unsafe {
                    let a = job.a.add(m0 * job.lda);
                    let rt = job.rowterm.as_ptr().wrapping_add(m0);
                    by_rows!(rows, fused512, a, job.lda, job.kp, b, &fix, rt, o, job.rs)
                }
            }
        }
        mb = me;
    }
}

impl Dst {
    /// The same output moved by `off` elements.
    pub(super) fn at(self, off: isize) -> Dst {
        match self {
            Dst::I32(q) => Dst::I32(q.wrapping_offset(off)),
            Dst::Q(q) => Dst::Q(q.wrapping_offset(off)),
            Dst::F32(q) => Dst::F32(q.wrapping_offset(off)),
        }
    }
}

impl Fix {
    /// The epilogue operands of the `cols ≤ 32` columns from `n0`.
    pub(super) fn new(job: &Job<'_>, n0: usize, cols: usize) -> Fix {
        let (mult, bias, zp, lo, hi) = match &job.post {
            Post::I32 => (&[][..], &[][..], 0, 0.0, 0.0),
            Post::Quant {
                mult,
                bias,
                zp,
                lo,
                hi,
            } => (*mult, *bias, *zp, *lo, *hi),
            Post::F32 { mult, bias } => (*mult, *bias, 0, 0.0, 0.0),
        };
        let at = |v: &[i32]| v.as_ptr().wrapping_add(n0);
        Fix {
            cols: if cols >= 32 {
                u32::MAX
            } else {
                (1u32 << cols) - 1
            },
            ct: at(job.colterm),
            zb: if job.zb.is_empty() {
                core::ptr::null()
            } else {
                at(job.zb)
            },
            mult: mult.as_ptr().wrapping_add(n0),
            bias: at(bias),
            zp,
            lo,
            hi,
        }
    }
}

/// Per-column operands of one panel's epilogue (pointers at the panel's first column).
pub(super) struct Fix {
    /// Bit j set: column `n0 + j` exists.
    pub(super) cols: u32,
    /// `colterm[n0..]`.
    pub(super) ct: *const i32,
    /// `zb[n0..]`, or null when every weight zero point is 0.
    pub(super) zb: *const i32,
    /// Multipliers and bias from column `n0` (requantized and f32 outputs).
    pub(super) mult: *const f32,
    pub(super) bias: *const i32,
    pub(super) zp: i32,
    pub(super) lo: f32,
    pub(super) hi: f32,
}

/// An `R × 32` tile over the full reduction, corrected, finished and stored.
///
/// # Safety
/// `a` has R rows of `kp` bytes (stride `lda`), `b` a packed panel of `kp·32` bytes,
/// `rt` R row terms when `fix.zb` is non-null, `fix`'s vectors the selected columns, and
/// `o` R writable rows (stride `rs` elements) of the selected columns.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn fused512<const R: usize>(
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
        _mm512_setzero_si512, _mm512_loadu_si512, _mm512_set1_epi32, _mm512_dpbusd_epi32,
        nr: 32, esz: 1, ks: 4, vb: 64
    );
    // SAFETY: forwarded contract.
    unsafe { epi512::<R>(c0, c1, fix, rt, o, rs) }
}

/// The zero-point corrections and epilogue of an `R × 32` tile of raw sums (`c0`: its
/// left 16 columns, `c1` its right 16), stored into `o`.
///
/// # Safety
/// `rt` holds R row terms when `fix.zb` is non-null, `fix`'s vectors the selected
/// columns, and `o` R writable rows (stride `rs` elements) of the selected columns.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
pub(super) unsafe fn epi512<const R: usize>(
    c0: [__m512i; R],
    c1: [__m512i; R],
    fix: &Fix,
    rt: *const i32,
    o: Dst,
    rs: isize,
) {
    let (m0, m1) = (fix.cols as __mmask16, (fix.cols >> 16) as __mmask16);
    // SAFETY: masked loads/stores touch only the selected columns (caller's contract).
    unsafe {
        let ld = |p: *const i32| {
            (
                _mm512_maskz_loadu_epi32(m0, p),
                _mm512_maskz_loadu_epi32(m1, p.wrapping_add(16)),
            )
        };
        let v = fused_correct!(
            R,
            (c0, c1, fix, rt),
            ld,
            _mm512_setzero_si512,
            _mm512_add_epi32,
            _mm512_mullo_epi32,
            _mm512_set1_epi32
        );
        match o {
            Dst::I32(o) => {
                for (r, v) in v.iter().enumerate() {
                    let row = o.offset(r as isize * rs);
                    _mm512_mask_storeu_epi32(row, m0, v[0]);
                    _mm512_mask_storeu_epi32(row.wrapping_add(16), m1, v[1]);
                }
            }
            Dst::F32(o) => {
                // As `driver::store_row`: (acc + bias) as f32 · mult.
                let (b0, b1) = ld(fix.bias);
                let fm0 = _mm512_maskz_loadu_ps(m0, fix.mult);
                let fm1 = _mm512_maskz_loadu_ps(m1, fix.mult.wrapping_add(16));
                for (r, v) in v.iter().enumerate() {
                    let row = o.offset(r as isize * rs);
                    let x0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(v[0], b0)), fm0);
                    let x1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(v[1], b1)), fm1);
                    _mm512_mask_storeu_ps(row, m0, x0);
                    _mm512_mask_storeu_ps(row.wrapping_add(16), m1, x1);
                }
            }
            Dst::Q(o) => {
                let (b0, b1) = ld(fix.bias);
                let fm0 = _mm512_maskz_loadu_ps(m0, fix.mult);
                let fm1 = _mm512_maskz_loadu_ps(m1, fix.mult.wrapping_add(16));
                let (lo, hi) = (_mm512_set1_ps(fix.lo), _mm512_set1_ps(fix.hi));
                let q = |x: __m512i, b: __m512i, m: __m512| {
                    requant16(_mm512_add_epi32(x, b), m, lo, hi, fix.zp)
                };
                for (r, v) in v.iter().enumerate() {
                    let y = _mm512_inserti32x4::<1>(
                        _mm512_castsi128_si512(q(v[0], b0, fm0)),
                        q(v[1], b1, fm1),
                    );
                    let row = o.offset(r as isize * rs);
                    _mm512_mask_storeu_epi8(row.cast(), u64::from(fix.cols), y);
                }
            }
        }
    }
}

/// `driver::quant_one` on 16 lanes, the one copy every AVX-512 epilogue uses: f32
/// multiply by `mult`, clamp to `[lo, hi]`, round half to even by adding 1.5·2²³ (exact
/// for the clamped range), add the zero point, narrow to bytes. `lo`/`hi` keep the
/// values inside the output type, so truncating to bytes is exact.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn requant16(x: __m512i, mult: __m512, lo: __m512, hi: __m512, zp: i32) -> __m128i {
    _mm512_cvtepi32_epi8(requant_codes(x, mult, lo, hi, zp))
}

/// `vpdpbusd` (AVX-VNNI): u8×i8 quads of `a` and `b` summed into the i32 lanes of `c`.
#[target_feature(enable = "avx2,avxvnni")]
#[inline]
pub(super) fn dp_vnni(c: __m256i, a: __m256i, b: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(c, a, b)
}

/// The AVX2 form of `driver::quant_one` on 8 sums `x` that already include their bias:
/// scale by `mult`, clamp to `lo..=hi`, round half to even by the 1.5·2²³ addition, and
/// add `off` = zero point − `0x4B40_0000` (the magic number's bits). The codes come out
/// as i32, inside the output type's range.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn requant8(x: __m256i, mult: __m256, lo: __m256, hi: __m256, off: __m256i) -> __m256i {
    let f = _mm256_mul_ps(_mm256_cvtepi32_ps(x), mult);
    let f = _mm256_min_ps(_mm256_max_ps(f, lo), hi);
    _mm256_add_epi32(
        _mm256_castps_si256(_mm256_add_ps(f, _mm256_set1_ps(12_582_912.0))),
        off,
    )
}

/// Narrows 16 output codes (`a`: the first 8, `b`: the next 8; each inside −128..=255)
/// to their 16 bytes, in order. The i16 pack is exact for such values; keeping each
/// word's low byte and an unsigned pack then give the byte of u8 and i8 codes alike.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn narrow16(a: __m256i, b: __m256i) -> __m128i {
    let w = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(a, b));
    let w = _mm256_and_si256(w, _mm256_set1_epi16(0xFF));
    _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256::<1>(w))
}

/// Copies `n` bytes from `s` to `d` (not overlapping) with at most three fixed-size
/// unaligned moves up to 48 bytes, the last overlapping the one before: a tile row's
/// segments are short, and a `memcpy` call each cost more than the moves. (No loop, so
/// the compiler does not turn it back into a `memcpy` call.)
///
/// # Safety
/// `s` must be readable and `d` writable for `n` bytes.
#[inline(always)]
pub(super) unsafe fn copy_run(s: *const u8, d: *mut u8, n: usize) {
    macro_rules! mv {
        ($t:ty, $at:expr) => {
            d.add($at)
                .cast::<$t>()
                .write_unaligned(s.add($at).cast::<$t>().read_unaligned())
        };
    }
    // SAFETY: every move lies within the first n bytes of both (contract).
    unsafe {
        match n {
            0 => {}
            1 => mv!(u8, 0),
            2..4 => {
                mv!(u16, 0);
                mv!(u16, n - 2);
            }
            4..8 => {
                mv!(u32, 0);
                mv!(u32, n - 4);
            }
            8..16 => {
                mv!(u64, 0);
                mv!(u64, n - 8);
            }
            16..=32 => {
                mv!(u128, 0);
                mv!(u128, n - 16);
            }
            33..=48 => {
                mv!(u128, 0);
                mv!(u128, 16);
                mv!(u128, n - 16);
            }
            // Longer runs (i32 rows) are worth the call.
            _ => core::ptr::copy_nonoverlapping(s, d, n),
        }
    }
}

/// [`requant16`] before the narrowing: the 16 output codes as i32, each inside the
/// output type's range (`lo`/`hi` see to that).
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn requant_codes(x: __m512i, mult: __m512, lo: __m512, hi: __m512, zp: i32) -> __m512i {
    let f = _mm512_mul_ps(_mm512_cvtepi32_ps(x), mult);
    let f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);
    let f = _mm512_castps_si512(_mm512_add_ps(f, _mm512_set1_ps(12_582_912.0)));
    _mm512_add_epi32(f, _mm512_set1_epi32(zp.wrapping_sub(0x4B40_0000)))
}

/// Narrows `NV ≤ 3` vectors of output codes to bytes `0..16·NV` of one vector, in
/// order, with two saturating packs and one dword permutation (three shuffles where
/// `vpmovdb` takes two per vector, plus the inserts). The codes are already inside the
/// output type (i8 when `signed`, else u8), so the saturation never changes one and the
/// bytes equal [`requant16`]'s truncation.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
pub(super) fn narrow_codes<const NV: usize>(v: &[__m512i; NV], signed: bool) -> __m512i {
    if NV == 1 {
        return _mm512_castsi128_si512(_mm512_cvtepi32_epi8(v[0]));
    }
    // Per 128-bit lane L: words [v0 4L..4L+4, v1 4L..4L+4] and [v2 …, v2 …].
    let p01 = _mm512_packs_epi32(v[0], v[NV.min(2) - 1]);
    let p2 = _mm512_packs_epi32(v[NV - 1], v[NV - 1]);
    // Per lane L: dwords [v0 quad L, v1 quad L, v2 quad L, v2 quad L].
    let b = if signed {
        _mm512_packs_epi16(p01, p2)
    } else {
        _mm512_packus_epi16(p01, p2)
    };
    let idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_permutexvar_epi32(idx, b)
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
    match fused_dst(job) {
        // SAFETY: forwarded contract; the output is row-major of the epilogue's type.
        // The fused loop covers the full 16-column panels and returns where the rest
        // (at most the last, partial panel) starts.
        Some(out) => unsafe {
            let full = super::fused256::block_vnni(job, out, mt.clone(), np.clone());
            if full < np.end {
                block_loop::<AvxVnni>(job, mt, full..np.end);
            }
        },
        // SAFETY: forwarded contract.
        None => unsafe { block_loop::<AvxVnni>(job, mt, np) },
    }
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
    match fused_dst(job) {
        // SAFETY: as in `block_avxvnni`.
        Some(out) => unsafe {
            let full = super::fused256::block_madd(job, out, mt.clone(), np.clone());
            if full < np.end {
                block_loop::<Avx2>(job, mt, full..np.end);
            }
        },
        // SAFETY: forwarded contract.
        None => unsafe { block_loop::<Avx2>(job, mt, np) },
    }
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

//! x86-64 AMX-INT8 GEMM: `tdpbusd` on 16 × 64-byte tiles (Intel Xeon 4th generation and
//! later).
//!
//! The packed B is the `avx512vnni` layout with K padded to a multiple of 64: within a
//! 32-column panel, k-quad `q` is 128 bytes (32 columns × 4 k-values) at `q·128`, so a
//! B tile (16 k-quads × 16 columns × 4 bytes) is 16 rows of 64 bytes at stride 128, and
//! the panel's right half starts 64 bytes further. A is row-major u8 (`lda` bytes per
//! row, zero-padded to the padded K), read by 16-row tiles at stride `lda`.
//!
//! Each 32 × 32 output tile keeps its four i32 accumulator tiles (`tmm0..3`) over the
//! whole reduction; per 64 k-values it loads two A tiles (`tmm4`, `tmm5`) and two B
//! tiles (`tmm6`, `tmm7`) and issues four `tdpbusd`. Rows of an m-tile beyond the last
//! full 16 go through the `avx512vnni` tile on the same packed panel. The raw sums are
//! then corrected for the zero points and finished by the same epilogue code as the
//! `avx512vnni` path, so both paths agree bit for bit.
//!
//! Convolutions: dense ones with a unit horizontal stride, `C_in/g` a multiple of 64,
//! `K = kH·kW·C_in/g ≥ 256` and symmetric weights run as an implicit GEMM
//! ([`conv_nhwc`]): the input is rewritten once into zero-point-padded NHWC, and each A
//! tile (16 output pixels × 64 channels of one tap) is read in place at stride `C_in/g`,
//! so no im2col matrix is built; the 32 × 32 result tiles are transposed in registers
//! into the NCHW output. Other dense convolutions with a unit horizontal stride and
//! depthwise ones keep the `avx512vnni` direct kernels; the rest (strided) go through
//! im2col and the GEMM.
//!
//! The tile registers are configured (`ldtilecfg`) at the start of every block of work
//! and released (`tilerelease`) at its end, so a thread holds no tile state between
//! calls. On Linux the process must be granted the tile data state once
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`); [`available`] asks for it
//! and reports `false` if the kernel refuses, so dispatch falls back to `avx512vnni`.
#![allow(unsafe_code)]

use super::driver::{Job, MAX_TILE, finish_tile};
use super::pack::Aligned;
use super::x86::{Dst, Fix, by_rows, epi512, fused_dst, requant16, tile512};
use core::arch::asm;
use core::arch::x86_64::*;
use core::ops::Range;
use std::cell::RefCell;
use std::sync::OnceLock;

/// Output rows per m-tile of the AMX path.
pub(crate) const MR: usize = 32;
/// Columns per packed panel (as `avx512vnni`).
pub(crate) const NR: usize = 32;

/// Whether this CPU and OS can run the AMX path: CPUID reports AMX-TILE and AMX-INT8
/// (and AVX-512 F/BW/VL/VNNI, used for edges and epilogues), the OS enables the tile state
/// in XCR0, and (on Linux) the process was granted the tile data state. Decided once.
pub(crate) fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        if !(std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("xsave"))
        {
            return false;
        }
        // CPUID leaf 7 exists on every CPU with AVX-512 (checked above).
        let l7 = __cpuid_count(7, 0);
        // EDX bit 24: AMX-TILE, bit 25: AMX-INT8.
        if (l7.edx >> 24) & 3 != 3 {
            return false;
        }
        // SAFETY: XSAVE with OS support (checked above) makes `xgetbv` legal.
        let xcr0 = unsafe { xcr0() };
        // XCR0 bit 17: XTILECFG, bit 18: XTILEDATA.
        if (xcr0 >> 17) & 3 != 3 {
            return false;
        }
        request_tile_permission()
    })
}

/// Reads XCR0.
///
/// # Safety
/// The CPU must support XSAVE and the OS must have enabled it (OSXSAVE).
#[target_feature(enable = "xsave")]
unsafe fn xcr0() -> u64 {
    // SAFETY: caller's contract.
    unsafe { _xgetbv(0) }
}

/// Asks Linux for the AMX tile data state for this process (every thread, present and
/// future); `true` if granted.
#[cfg(target_os = "linux")]
fn request_tile_permission() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: `arch_prctl(ARCH_REQ_XCOMP_PERM, 18)` only extends the process's set of
    // permitted XSAVE features; it reads and writes no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    r == 0
}

/// Other systems: not yet supported (their permission model is untested), so the AMX
/// path is reported unavailable and dispatch uses `avx512vnni`.
#[cfg(not(target_os = "linux"))]
fn request_tile_permission() -> bool {
    false
}

/// A tile configuration (palette 1): all eight tiles 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileCfg([u8; 64]);

static CFG: TileCfg = {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = 64; // bytes per row (little-endian u16)
        c[48 + t] = 16; // rows
        t += 1;
    }
    TileCfg(c)
};

/// A 32 × 32 i32 scratch tile, aligned for tile stores.
#[repr(C, align(64))]
struct Acc([i32; MR * NR]);

/// Raw sums of a 16- or 32-row tile (`TWO`: 32 rows) over `kp` k-values into `buf`
/// (row stride 32 i32), added to the sums already there when `load`. `a` is the
/// m-tile's A in tile order (see [`pack_a`]) from the first of those k-values, `b` the
/// panel from the same k.
///
/// # Safety
/// The tiles must be configured as [`CFG`]; `a` must hold the packed A tiles of `kp`
/// k-values (two per 64 k-values, or one without `TWO`), `b` `kp·32` bytes of a packed
/// panel, `kp` a multiple of 64, and `buf` room for 16 (32) rows of 32 i32.
#[inline(always)]
unsafe fn tile_amx<const TWO: bool>(
    a: *const u8,
    b: *const u8,
    kp: usize,
    buf: *mut i32,
    load: bool,
) {
    let step = if TWO { 2 * TILE_BYTES } else { TILE_BYTES };
    // SAFETY: the caller guarantees the tile configuration, `a`, `b` and `buf` as
    // documented above, which is what the accumulator and k-step helpers need.
    unsafe {
        if load {
            load_acc(buf, TWO);
        } else {
            zero_acc(TWO);
        }
        let mut k = 0;
        let mut ak = a;
        while k < kp {
            k_step(ak, ak.add(TILE_BYTES), 64, b.add(k * NR), TWO);
            ak = ak.add(step);
            k += 64;
        }
        store_acc(buf, TWO);
    }
}

/// Clears the accumulator tiles `tmm0`, `tmm1` (and `tmm2`, `tmm3` with `two`).
///
/// # Safety
/// The tiles must be configured as [`CFG`].
#[inline(always)]
unsafe fn zero_acc(two: bool) {
    // SAFETY: register-only tile instructions on configured tiles.
    unsafe {
        asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
        if two {
            asm!("tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
        }
    }
}

/// Loads the accumulator tiles from a 16 (32 with `two`) × 32 i32 block at `buf` (row
/// stride 32 i32): `tmm0`/`tmm1` the left/right half of rows 0–15, `tmm2`/`tmm3` of rows
/// 16–31.
///
/// # Safety
/// Tiles configured as [`CFG`]; `buf` readable for 16 (32) rows of 32 i32.
#[inline(always)]
unsafe fn load_acc(buf: *const i32, two: bool) {
    let s = 4 * NR;
    // SAFETY: loads within the block the caller guarantees.
    unsafe {
        asm!(
            "tileloadd tmm0, [{o} + {s}*1]",
            "tileloadd tmm1, [{o2} + {s}*1]",
            o = in(reg) buf,
            o2 = in(reg) buf.add(16),
            s = in(reg) s,
            options(nostack, readonly),
        );
        if two {
            asm!(
                "tileloadd tmm2, [{o} + {s}*1]",
                "tileloadd tmm3, [{o2} + {s}*1]",
                o = in(reg) buf.add(16 * NR),
                o2 = in(reg) buf.add(16 * NR + 16),
                s = in(reg) s,
                options(nostack, readonly),
            );
        }
    }
}

/// Stores the accumulator tiles into `buf`, in the layout [`load_acc`] reads.
///
/// # Safety
/// Tiles configured as [`CFG`]; `buf` writable for 16 (32 with `two`) rows of 32 i32.
#[inline(always)]
unsafe fn store_acc(buf: *mut i32, two: bool) {
    let s = 4 * NR;
    // SAFETY: stores within the block the caller guarantees.
    unsafe {
        asm!(
            "tilestored [{o} + {s}*1], tmm0",
            "tilestored [{o2} + {s}*1], tmm1",
            o = in(reg) buf,
            o2 = in(reg) buf.add(16),
            s = in(reg) s,
            options(nostack),
        );
        if two {
            asm!(
                "tilestored [{o} + {s}*1], tmm2",
                "tilestored [{o2} + {s}*1], tmm3",
                o = in(reg) buf.add(16 * NR),
                o2 = in(reg) buf.add(16 * NR + 16),
                s = in(reg) s,
                options(nostack),
            );
        }
    }
}

/// One step of 64 k-values: loads the B tiles of a 32-column panel at `b` (left and
/// right 16 columns) and the 16 × 64 A tile at `a` (row stride `lda`), and adds their
/// products into `tmm0`/`tmm1`; with `two`, also the A tile at `a2` into `tmm2`/`tmm3`.
/// The GEMM reads A in tile order (`lda` 64), the implicit-GEMM convolution in place.
///
/// # Safety
/// Tiles configured as [`CFG`]; 16 rows of 64 bytes readable at stride `lda` from `a`
/// (and `a2` with `two`); 16 k-quads of the panel (`16·128` bytes) readable from `b`.
#[inline(always)]
unsafe fn k_step(a: *const u8, a2: *const u8, lda: usize, b: *const u8, two: bool) {
    // SAFETY: register-only tile instructions on configured tiles; loads within the
    // operands the caller guarantees.
    unsafe {
        asm!(
            "tileloadd tmm6, [{b} + {s}*1]",
            "tileloadd tmm7, [{b2} + {s}*1]",
            "tileloadd tmm4, [{a} + {l}*1]",
            "tdpbusd tmm0, tmm4, tmm6",
            "tdpbusd tmm1, tmm4, tmm7",
            b = in(reg) b,
            b2 = in(reg) b.add(64),
            s = in(reg) 4 * NR,
            a = in(reg) a,
            l = in(reg) lda,
            options(nostack, readonly),
        );
        if two {
            asm!(
                "tileloadd tmm5, [{a} + {l}*1]",
                "tdpbusd tmm2, tmm5, tmm6",
                "tdpbusd tmm3, tmm5, tmm7",
                a = in(reg) a2,
                l = in(reg) lda,
                options(nostack, readonly),
            );
        }
    }
}

/// Bytes of one A tile (16 rows × 64 k-values).
const TILE_BYTES: usize = 16 * 64;

/// Copies the first `groups·16` rows (`groups` 1 or 2) of an m-tile of A (`lda` bytes
/// per row, `kp` valid) into tile order: per 64 k-values, `groups` contiguous 16 × 64
/// tiles, so the kernel's tile loads read consecutive memory.
///
/// # Safety
/// `a` must have `groups·16` rows of `kp` readable bytes at stride `lda`, and `dst` room
/// for `groups·16·kp` bytes.
#[inline(always)]
unsafe fn pack_a(a: *const u8, lda: usize, kp: usize, groups: usize, dst: *mut u8) {
    for kb in 0..kp / 64 {
        for g in 0..groups {
            for r in 0..16 {
                // SAFETY: row g·16 + r has bytes kb·64..kb·64+64; the destination tile
                // row lies inside `dst` (caller's contract).
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        a.add((g * 16 + r) * lda + kb * 64),
                        dst.add((kb * groups + g) * TILE_BYTES + r * 64),
                        64,
                    );
                }
            }
        }
    }
}

/// Loads `R` rows of raw sums from `buf` (row stride 32) and finishes them into `o`.
///
/// # Safety
/// As [`epi512`]; `buf` must hold `R` rows of 32 i32.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn finish_rows<const R: usize>(
    buf: *const i32,
    fix: &Fix,
    rt: *const i32,
    o: Dst,
    rs: isize,
) {
    let mut c0 = [_mm512_setzero_si512(); R];
    let mut c1 = [_mm512_setzero_si512(); R];
    for r in 0..R {
        // SAFETY: row r of buf holds 32 i32 (caller's contract).
        unsafe {
            c0[r] = _mm512_loadu_si512(buf.add(r * NR).cast());
            c1[r] = _mm512_loadu_si512(buf.add(r * NR + 16).cast());
        }
    }
    // SAFETY: forwarded contract.
    unsafe { epi512::<R>(c0, c1, fix, rt, o, rs) }
}

/// m-tiles per cache block: about 96 rows of A stay in L2 while B panels stream.
const MC_TILES: usize = 3;
/// k-values per K block (a multiple of 64): a 32-column B block of 16 KiB and a 32-row
/// A block of 16 KiB fit in L1 together.
const KC: usize = 512;

/// The AMX blocked loop over m-tiles `mt` (of 32 rows) and n-panels `np`.
///
/// # Safety
/// As [`super::driver::block_loop`] for a job packed with the AMX geometry; the CPU
/// must pass [`available`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn block_amx(job: &Job<'_>, mt: Range<usize>, np: Range<usize>) {
    thread_local! {
        // A block of A in tile order, reused between calls on this thread.
        static APK: RefCell<Aligned> = RefCell::new(Aligned::zeroed(0));
    }
    let need = MC_TILES * MR * job.kp;
    APK.with(|c| match c.try_borrow_mut() {
        Ok(mut b) => {
            if b.len() < need {
                *b = Aligned::zeroed(need);
            }
            // SAFETY: the caller's contract, passed on.
            unsafe { block_amx_in(job, mt, np, b.as_mut_slice()) }
        }
        // SAFETY: as above.
        Err(_) => unsafe { block_amx_in(job, mt, np, Aligned::zeroed(need).as_mut_slice()) },
    })
}

/// [`block_amx`] with `apk`, at least `MC_TILES·32·kp` bytes, for A in tile order.
///
/// # Safety
/// As [`block_amx`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn block_amx_in(job: &Job<'_>, mt: Range<usize>, np: Range<usize>, apk: &mut [u8]) {
    let fused = fused_dst(job);
    let mut acc = [Acc([0; MR * NR]), Acc([0; MR * NR]), Acc([0; MR * NR])];
    // SAFETY: CFG is a valid 64-byte palette-1 configuration, 64-byte aligned.
    unsafe { asm!("ldtilecfg [{0}]", in(reg) CFG.0.as_ptr(), options(nostack, readonly)) };
    let mut mb = mt.start;
    while mb < mt.end {
        let me = (mb + MC_TILES).min(mt.end);
        // The block's full 16-row groups, in tile order (one copy, reused by every panel).
        for t in mb..me {
            let m0 = t * MR;
            let groups = MR.min(job.m - m0) / 16;
            // SAFETY: rows m0.. of packed A exist; slot t − mb of `apk` holds 32·kp bytes.
            unsafe {
                let dst = apk.as_mut_ptr().add((t - mb) * MR * job.kp);
                pack_a(job.a.add(m0 * job.lda), job.lda, job.kp, groups, dst);
            }
        }
        for p in np.clone() {
            let n0 = p * NR;
            let cols = NR.min(job.n - n0);
            let fix = fused.map(|_| Fix::new(job, n0, cols));
            // SAFETY: panel p lies inside packed B (caller's contract).
            let b = unsafe { job.b.add(p * job.kp * NR) };
            // The full 16-row groups, K in blocks of KC: the block's B (KC·32 bytes)
            // stays in L1 while each m-tile's A block streams past it.
            let mut k0 = 0;
            while k0 < job.kp {
                let kc = KC.min(job.kp - k0);
                for t in mb..me {
                    let m0 = t * MR;
                    let groups = MR.min(job.m - m0) / 16;
                    let buf = acc[t - mb].0.as_mut_ptr();
                    // SAFETY: the m-tile's packed groups in `apk` hold `kp` k-values
                    // (`groups` tiles per 64), the panel holds `kp·32` bytes; `buf` holds
                    // 32 rows of 32 i32.
                    unsafe {
                        let at = apk
                            .as_ptr()
                            .add((t - mb) * MR * job.kp + k0 / 64 * groups * TILE_BYTES);
                        let bk = b.add(k0 * NR);
                        match groups {
                            2 => tile_amx::<true>(at, bk, kc, buf, k0 > 0),
                            1 => tile_amx::<false>(at, bk, kc, buf, k0 > 0),
                            _ => {}
                        }
                    }
                }
                k0 += kc;
            }
            for t in mb..me {
                let m0 = t * MR;
                let rows = MR.min(job.m - m0);
                let buf = acc[t - mb].0.as_mut_ptr();
                let full = rows / 16 * 16;
                // SAFETY: rows m0..m0+rows of packed A exist with `kp` bytes each; `buf`
                // holds 32 rows of 32 i32.
                unsafe {
                    let a = job.a.add(m0 * job.lda);
                    let mut r0 = full;
                    while r0 < rows {
                        let r = (rows - r0).min(8);
                        let mut ap = [core::ptr::null::<u8>(); 8];
                        for (i, q) in ap.iter_mut().enumerate().take(r) {
                            *q = a.add((r0 + i) * job.lda);
                        }
                        by_rows!(r, tile512, 1, job.kp, ap.as_ptr(), b, buf.add(r0 * NR));
                        r0 += r;
                    }
                }
                let mut r0 = 0;
                while r0 < rows {
                    let r = (rows - r0).min(8);
                    // SAFETY: rows r0..r0+r of buf are computed; the output covers rows
                    // m0+r0.. of the selected columns (caller's contract).
                    unsafe {
                        let chunk = buf.add(r0 * NR);
                        match (fused, &fix) {
                            (Some(out), Some(fix)) => {
                                let o = out.at((m0 + r0) as isize * job.rs + n0 as isize);
                                let rt = job.rowterm.as_ptr().wrapping_add(m0 + r0);
                                by_rows!(r, finish_rows, chunk, fix, rt, o, job.rs)
                            }
                            _ => {
                                let tile = &mut *chunk.cast::<[i32; MAX_TILE]>();
                                finish_tile(job, tile, NR, m0 + r0, r, n0, cols);
                            }
                        }
                    }
                    r0 += r;
                }
            }
        }
        mb = me;
    }
    // SAFETY: releases this thread's tile state (configured above).
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

// ---------------------------------------------------- implicit-GEMM convolution

/// Weights of a dense convolution packed for [`conv_nhwc`]: per group, a B operand of
/// `K = taps · C_in/g` rows in `(tap, channel)` order and `C_out/g` columns, in the GEMM
/// panel layout (32 columns, k in quads). Built only when `C_in/g` is a multiple of 64
/// (a tile row is 64 channels of one tap) and every weight zero point is 0.
#[derive(Debug, Clone)]
pub(crate) struct ConvW {
    groups: usize,
    cig: usize,
    cog: usize,
    panels: Vec<Aligned>,
    /// Per output channel: `Σ w'` over K.
    wsum: Vec<i32>,
}

impl ConvW {
    /// Packs `w` (`[C_out, C_in/g, kH, kW]`); `None` where the path does not apply.
    pub(crate) fn new<T: super::pack::QElem>(
        w: ndarray::ArrayView4<'_, T>,
        zp: &[T],
        groups: usize,
    ) -> Option<ConvW> {
        let (c_out, cig, kh, kw) = w.dim();
        if cig == 0 || !cig.is_multiple_of(64) || zp.iter().any(|&z| z.to_b() != 0) {
            return None;
        }
        let cog = c_out / groups.max(1);
        let k = kh * kw * cig;
        let mut panels = Vec::with_capacity(groups);
        let mut wsum = vec![0i32; c_out];
        for g in 0..groups {
            let np = cog.div_ceil(NR);
            let mut a = Aligned::zeroed(np * k * NR);
            let v = a.as_mut_slice();
            for j in 0..cog {
                let oc = g * cog + j;
                for ky in 0..kh {
                    for kx in 0..kw {
                        for c in 0..cig {
                            let kk = (ky * kw + kx) * cig + c;
                            let x = w[[oc, c, ky, kx]].to_b();
                            v[(j / NR) * k * NR + (kk / 4) * NR * 4 + (j % NR) * 4 + kk % 4] =
                                x as u8;
                            wsum[oc] = wsum[oc].wrapping_add(i32::from(x));
                        }
                    }
                }
            }
            panels.push(a);
        }
        Some(ConvW {
            groups,
            cig,
            cog,
            panels,
            wsum,
        })
    }

    /// Channels per group (the padded image's pixel stride).
    pub(crate) fn cig(&self) -> usize {
        self.cig
    }
}

/// Where one batch item's convolution goes: NCHW output (i32, or u8/i8 bytes with the
/// requantization of every output channel).
pub(crate) enum ConvOut<'a> {
    I32(&'a mut [i32]),
    Q {
        out: &'a mut [u8],
        signed: bool,
        mult: &'a [f32],
        bias: &'a [i32],
        zp: i32,
        lo: f32,
        hi: f32,
    },
}

/// Bytes read past the end of a padded image by the last tiles.
pub(crate) fn conv_slack(aw: &ConvW, kw: usize, dil_w: usize) -> usize {
    (2 * MR + kw * dil_w) * aw.cig
}

/// One batch item of a dense convolution with unit horizontal stride on AMX: `img` is
/// the input in zero-point-padded NHWC form, `[group][Hp][Wp][C_in/g]` (mapped to u8),
/// followed by [`conv_slack`] readable bytes. Output pixels of one output row form the
/// GEMM's rows (32 per tile, tail rows computed and dropped), output channels its
/// columns; the K loop runs over taps and 64-channel chunks, each A tile read in place
/// (16 pixels at stride `C_in/g`). Corrections and epilogue as every GEMM path.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_nhwc(
    aw: &ConvW,
    img: &[u8],
    za: u8,
    (hp, wp): (usize, usize),
    (kh, kw): (usize, usize),
    sh: usize,
    dil: [usize; 2],
    (oh, ow): (usize, usize),
    out: ConvOut<'_>,
    threads: usize,
) -> bool {
    use super::driver::{OutPtr, Post, par_chunks};
    let (cig, cog, groups) = (aw.cig, aw.cog, aw.groups);
    let plane = oh * ow;
    let per_group = hp * wp * cig;
    let slack = conv_slack(aw, kw, dil[1]);
    let c_out = cog * groups;
    // The requantization (if any), then the output as a raw pointer: tasks write
    // disjoint pixels of it.
    let q = match &out {
        ConvOut::I32(_) => None,
        ConvOut::Q {
            mult,
            bias,
            zp,
            lo,
            hi,
            ..
        } => Some((*mult, *bias, *zp, *lo, *hi)),
    };
    let (outp, len) = match out {
        ConvOut::I32(o) => (OutPtr::I32(o.as_mut_ptr()), o.len()),
        ConvOut::Q { out, signed, .. } => {
            let p = out.as_mut_ptr();
            (
                if signed {
                    OutPtr::I8(p.cast())
                } else {
                    OutPtr::U8(p)
                },
                out.len(),
            )
        }
    };
    if len != c_out * plane
        || img.len() < groups * per_group + slack
        || oh == 0
        || ow == 0
        || (oh - 1) * sh + (kh - 1) * dil[0] >= hp
        || ow + (kw - 1) * dil[1] > wp
    {
        return false;
    }
    let za = i32::from(za);
    let colterm: Vec<i32> = aw
        .wsum
        .iter()
        .map(|&s| s.wrapping_mul(za).wrapping_neg())
        .collect();
    let toff: Vec<usize> = (0..kh * kw)
        .map(|t| ((t / kw) * dil[0] * wp + (t % kw) * dil[1]) * cig)
        .collect();
    let chunks = cig / 64;
    let kp = kh * kw * cig;
    let xtiles = ow.div_ceil(MR);
    let panels = cog.div_ceil(NR);
    let units = groups * oh * xtiles;
    struct Shared(OutPtr);
    // SAFETY: tasks write disjoint output pixels through the pointer.
    unsafe impl Sync for Shared {}
    impl Shared {
        fn get(&self) -> OutPtr {
            self.0
        }
    }
    let sh_out = Shared(outp);
    let run = |r: Range<usize>| {
        let mut acc = Acc([0; MR * NR]);
        let buf = acc.0.as_mut_ptr();
        // SAFETY: CFG is a valid configuration; released at the end of this closure.
        unsafe { asm!("ldtilecfg [{0}]", in(reg) CFG.0.as_ptr(), options(nostack, readonly)) };
        for u in r {
            let (g, rest) = (u / (oh * xtiles), u % (oh * xtiles));
            let (oy, xt) = (rest / xtiles, rest % xtiles);
            let ox0 = xt * MR;
            let rows = MR.min(ow - ox0);
            let gout = match sh_out.get() {
                OutPtr::I32(p) => OutPtr::I32(p.wrapping_add(g * cog * plane)),
                OutPtr::U8(p) => OutPtr::U8(p.wrapping_add(g * cog * plane)),
                OutPtr::I8(p) => OutPtr::I8(p.wrapping_add(g * cog * plane)),
                OutPtr::F32(p) => OutPtr::F32(p),
            };
            let post = match q {
                None => Post::I32,
                Some((mult, bias, zp, lo, hi)) => Post::Quant {
                    mult: &mult[g * cog..(g + 1) * cog],
                    bias: &bias[g * cog..(g + 1) * cog],
                    zp,
                    lo,
                    hi,
                },
            };
            let job = Job {
                a: core::ptr::null(),
                b: core::ptr::null(),
                kp,
                lda: cig,
                m: plane,
                n: cog,
                rowterm: &[],
                colterm: &colterm[g * cog..(g + 1) * cog],
                zb: &[],
                post,
                out: gout,
                rs: 1,
                cs: plane as isize,
            };
            let a0 = img[g * per_group + (oy * sh * wp + ox0) * cig..].as_ptr();
            for p in 0..panels {
                let n0 = p * NR;
                let cols = NR.min(cog - n0);
                let b = aw.panels[g].as_slice()[p * kp * NR..].as_ptr();
                // SAFETY: every A tile lies inside the padded image plus slack (checked
                // above), the panel holds kp·32 bytes; tiles configured above.
                unsafe { conv_tile(a0, cig, &toff, chunks, b, buf, rows > 16) };
                // SAFETY: buf holds the computed tile; the output covers pixels
                // m0..m0+rows of the panel's channels (length checked above).
                unsafe { finish_cols(buf, rows, cols, &job, oy * ow + ox0, n0) };
            }
        }
        // SAFETY: configured above on this thread.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    };
    let threads = if c_out * plane * kp < 1 << 18 {
        1
    } else {
        threads
    };
    par_chunks(units, threads, 0, (c_out * plane * kp) as u64, run);
    true
}

/// Raw sums of one implicit-GEMM tile: 16 (or 32 with `two`) pixels at stride `lda`
/// from `a0`, × a 32-column panel, over every tap (`toff`) and 64-channel chunk.
///
/// # Safety
/// Tiles configured as [`CFG`]; every A tile (`a0 + toff + chunk·64`, 16 or 32 rows at
/// stride `lda`) readable; `b` a panel of `toff.len()·chunks·64·32` bytes; `buf` 32×32.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn conv_tile(
    a0: *const u8,
    lda: usize,
    toff: &[usize],
    chunks: usize,
    b: *const u8,
    buf: *mut i32,
    two: bool,
) {
    // SAFETY: the caller guarantees the tile configuration and every A tile, the panel
    // and `buf` as documented above. All four accumulators are cleared and stored, so
    // rows 16–31 of `buf` hold zeros without `two`.
    unsafe {
        zero_acc(true);
        let mut bk = b;
        for &to in toff {
            for c in 0..chunks {
                let a = a0.add(to + c * 64);
                k_step(a, a.add(16 * lda), lda, bk, two);
                bk = bk.add(64 * NR);
            }
        }
        store_acc(buf, true);
    }
}

/// Transposes a 16 × 16 block of i32 (row `i` in `r[i]`) in registers: two rounds of
/// in-lane unpacks, then two rounds of 128-bit lane shuffles.
#[target_feature(enable = "avx512f")]
#[inline]
fn transpose16(r: [__m512i; 16]) -> [__m512i; 16] {
    let mut t = [_mm512_setzero_si512(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    // u[4q + c]: rows 4q..4q+4, lane l holding column 4l + c.
    let mut u = [_mm512_setzero_si512(); 16];
    for q in 0..4 {
        let (a, b, c, d) = (t[4 * q], t[4 * q + 1], t[4 * q + 2], t[4 * q + 3]);
        u[4 * q] = _mm512_unpacklo_epi64(a, c);
        u[4 * q + 1] = _mm512_unpackhi_epi64(a, c);
        u[4 * q + 2] = _mm512_unpacklo_epi64(b, d);
        u[4 * q + 3] = _mm512_unpackhi_epi64(b, d);
    }
    let mut o = [_mm512_setzero_si512(); 16];
    for c in 0..4 {
        let v0 = _mm512_shuffle_i32x4::<0x88>(u[c], u[4 + c]);
        let v1 = _mm512_shuffle_i32x4::<0xDD>(u[c], u[4 + c]);
        let w0 = _mm512_shuffle_i32x4::<0x88>(u[8 + c], u[12 + c]);
        let w1 = _mm512_shuffle_i32x4::<0xDD>(u[8 + c], u[12 + c]);
        o[c] = _mm512_shuffle_i32x4::<0x88>(v0, w0);
        o[8 + c] = _mm512_shuffle_i32x4::<0xDD>(v0, w0);
        o[4 + c] = _mm512_shuffle_i32x4::<0x88>(v1, w1);
        o[12 + c] = _mm512_shuffle_i32x4::<0xDD>(v1, w1);
    }
    o
}

/// Finishes a 32 × 32 tile of raw sums whose rows are output pixels `m0..m0+rows` and
/// columns output channels `n0..n0+cols`, into the job's channel-major output (pixel
/// stride 1, channel stride `job.cs`): 16 × 16 blocks are transposed in registers, then
/// each channel's 16 pixels are corrected (`colterm`), finished as `driver::quant_one`
/// does (or kept as i32) and stored as one masked run.
///
/// # Safety
/// `buf` holds 32 × 32 i32; the output is writable at those pixels and channels; the
/// job's epilogue vectors cover the channels; `job.zb` is empty.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn finish_cols(
    buf: *const i32,
    rows: usize,
    cols: usize,
    job: &Job<'_>,
    m0: usize,
    n0: usize,
) {
    use super::driver::{OutPtr, Post};
    debug_assert!(job.zb.is_empty() && job.rs == 1);
    let bytes: *mut u8 = match job.out {
        OutPtr::U8(p) => p,
        OutPtr::I8(p) => p.cast(),
        _ => core::ptr::null_mut(),
    };
    for half in 0..rows.div_ceil(16) {
        let r = (rows - 16 * half).min(16);
        let kmask: __mmask16 = if r >= 16 { u16::MAX } else { (1u16 << r) - 1 };
        for cb in 0..cols.div_ceil(16) {
            // SAFETY: rows 16·half.. and columns 16·cb.. lie inside the 32 × 32 buffer.
            let blk: [__m512i; 16] = core::array::from_fn(|i| unsafe {
                _mm512_loadu_si512(buf.add((16 * half + i) * NR + 16 * cb).cast())
            });
            let colv = transpose16(blk);
            for (j, &v) in colv.iter().enumerate().take((cols - 16 * cb).min(16)) {
                let c = n0 + 16 * cb + j;
                let v = _mm512_add_epi32(v, _mm512_set1_epi32(job.colterm[c]));
                let off = (m0 + 16 * half) as isize + c as isize * job.cs;
                match (&job.post, job.out) {
                    (Post::I32, OutPtr::I32(p)) => {
                        // SAFETY: the valid pixels of channel c are writable (contract).
                        unsafe { _mm512_mask_storeu_epi32(p.offset(off).cast(), kmask, v) };
                    }
                    (
                        Post::Quant {
                            mult,
                            bias,
                            zp,
                            lo,
                            hi,
                        },
                        OutPtr::U8(_) | OutPtr::I8(_),
                    ) => {
                        let y = requant16(
                            _mm512_add_epi32(v, _mm512_set1_epi32(bias[c])),
                            _mm512_set1_ps(mult[c]),
                            _mm512_set1_ps(*lo),
                            _mm512_set1_ps(*hi),
                            *zp,
                        );
                        // SAFETY: as above, for bytes.
                        unsafe { _mm_mask_storeu_epi8(bytes.offset(off).cast(), kmask, y) };
                    }
                    _ => debug_assert!(false, "output type does not match the epilogue"),
                }
            }
        }
    }
}

//! Direct (channel-major) convolution: output channels are the GEMM's M, output pixels
//! its N, so each output channel's row of pixels is stored straight into the NCHW
//! output (requantized in registers), with no output transpose.
//!
//! The input of one batch item is rewritten once per call into a zero-point-padded
//! `[group][C/4][Hp][Wp][4]` layout ("NCHWc4"): for a unit horizontal stride, the 4
//! channels of `NR` consecutive output pixels at one kernel tap are `4·NR` consecutive
//! bytes, one vector load (the u8 operand of `vpdpbusd`), while the weights, packed as
//! `[MR rows][4 channels]` per k-quad, are broadcast (the i8 operand). With a unit
//! vertical stride, tiles run over the padded width ("flat" tiles, which may span output
//! rows; the `Wp − OW` columns between rows are computed and not stored); otherwise tiles
//! stay within one output row.
//!
//! Zero points: with `x'`, `w'` the operands mapped to u8/i8 and channels padded to a
//! multiple of 4 with `x' = zx'`, `w' = 0`,
//! `Σ(x'−zx')(w'−zw') = Σx'w' − zx'·Σw' − zw'·Σx' + Kp·zx'·zw'` over the padded
//! `Kp = taps·4·⌈C/4⌉` (padded entries contribute 0 to both sides).
#![allow(unsafe_code)]

use super::Isa;
use super::driver::quant_one;
use super::pack::{QElem, b_zp};
use ndarray::ArrayView4;

/// Output channels per tile (rows of the broadcast operand).
pub(crate) const MR: usize = 8;
/// Output pixels per tile (i32 lanes: three 512-bit vectors; 8 × 48 keeps 24
/// accumulators in registers, measured ~2% (3×3) and ~10% (1×1) faster than 8 × 32).
pub(crate) const NR: usize = 48;
/// Bytes read past the last padded plane by the last tiles (see [`DGeom::bytes`]).
const SLACK: usize = (NR + 16) * 4;
/// Largest padded input (bytes) the direct path allocates; larger ones use im2col.
const MAX_BYTES: usize = 1 << 26;
/// Largest padded image of one group (bytes) whose tiles run block-major (see
/// `region`): well inside a 1–2 MB L2.
const BLOCK_MAJOR_BYTES: usize = 1 << 18;

/// Whether `isa` has a direct-convolution kernel.
pub(crate) fn has_direct(isa: Isa) -> bool {
    matches!(
        isa,
        Isa::Amx
            | Isa::Avx512Vnni
            | Isa::AvxVnni
            | Isa::Avx2
            | Isa::NeonDotprod
            | Isa::Neon
            | Isa::Scalar
    )
}

/// Weights packed for the direct kernel.
#[derive(Debug, Clone)]
pub(crate) struct DirectW {
    cog: usize,
    groups: usize,
    cq: usize,
    taps: usize,
    bpg: usize,
    /// `[group][block][taps·cq k-quads][MR][4]`, rows beyond `cog` zero.
    w: Vec<i8>,
    /// The same widened to i16 (for `avx2`'s `vpmaddwd` and `neon`'s `smlal`; empty on
    /// other paths, and on `avx2` when `narrow`).
    w16: Vec<i16>,
    /// `avx2` only: every packed weight lies in −64..=64, so `vpmaddubsw`'s i16 pair
    /// sums (at most 2·255·64 = 32 640 in magnitude) cannot saturate and the tile
    /// multiplies bytes directly, as `vpdpbusd` would (7-bit weights: onnxruntime's
    /// `reduce_range`).
    narrow: bool,
    /// Per output channel: `Σ w'` over K.
    wsum: Vec<i32>,
    /// Per output channel: `zw'` (empty when all are zero).
    zw: Vec<i32>,
}

impl DirectW {
    /// Packs `w` (`[C_out, C_in/g, kH, kW]`) with per-channel zero points `zp` for
    /// `isa`'s kernel.
    pub(crate) fn new<T: QElem>(isa: Isa, w: ArrayView4<'_, T>, zp: &[T], groups: usize) -> Self {
        let (c_out, cig, kh, kw) = w.dim();
        let cog = c_out / groups.max(1);
        let cq = cig.div_ceil(4);
        let taps = kh * kw;
        let kq = taps * cq;
        let bpg = cog.div_ceil(MR);
        let mut packed = vec![0i8; groups * bpg * kq * MR * 4];
        let mut wsum = vec![0i32; c_out];
        for ((oc, c, ky, kx), &v) in w.indexed_iter() {
            let (g, ocl) = (oc / cog, oc % cog);
            let (blk, r) = (ocl / MR, ocl % MR);
            let q = (ky * kw + kx) * cq + c / 4;
            let v = v.to_b();
            packed[((g * bpg + blk) * kq + q) * MR * 4 + r * 4 + c % 4] = v;
            wsum[oc] = wsum[oc].wrapping_add(i32::from(v));
        }
        let zw: Vec<i32> = zp.iter().map(|&z| b_zp(z)).collect();
        let zw = if zw.iter().all(|&z| z == 0) {
            Vec::new()
        } else {
            zw
        };
        let narrow = isa == Isa::Avx2 && packed.iter().all(|v| (-64..=64).contains(v));
        let w16 = if matches!(isa, Isa::Avx2 | Isa::Neon) && !narrow {
            packed.iter().map(|&v| i16::from(v)).collect()
        } else {
            Vec::new()
        };
        DirectW {
            cog,
            groups,
            cq,
            taps,
            bpg,
            w: packed,
            w16,
            narrow,
            wsum,
            zw,
        }
    }
}

/// Geometry of one direct convolution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DGeom {
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) sh: usize,
    /// Horizontal stride, 1 or 2. Stride 2 (either way) stores the padded image as
    /// phases: even and odd padded rows (vertical stride 2), even and odd padded
    /// columns (horizontal stride 2), so that the pixels a tap reads for consecutive
    /// outputs are consecutive again and tiles run over whole stored rows.
    pub(crate) sw: usize,
    pub(crate) dil: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub(crate) pads: [usize; 4],
    pub(crate) oh: usize,
    pub(crate) ow: usize,
}

impl DGeom {
    fn hp(&self) -> usize {
        self.h + self.pads[0] + self.pads[2]
    }
    fn wp(&self) -> usize {
        self.w + self.pads[1] + self.pads[3]
    }
    /// Row phases: 2 for a vertical stride of 2, else 1 (rows stored as they are).
    fn rph(&self) -> usize {
        if self.sh == 2 { 2 } else { 1 }
    }
    /// The vertical stride within the stored rows.
    fn row_step(&self) -> usize {
        self.sh / self.rph()
    }
    /// Pixels per stored row: the padded width, or one column phase of it.
    fn pitch(&self) -> usize {
        self.wp().div_ceil(self.sw.max(1))
    }
    /// Stored rows per phase.
    fn rows(&self) -> usize {
        self.hp().div_ceil(self.rph())
    }
    /// Pixels (4-byte groups) per stored channel-quad plane, all phases.
    fn plane_px(&self) -> usize {
        self.rph() * self.sw * self.rows() * self.pitch()
    }
    /// Where padded pixel `(y, x)` is stored, in pixels from the plane's start.
    fn at(&self, y: usize, x: usize) -> usize {
        let phase = (y % self.rph()) * self.sw + x % self.sw;
        (phase * self.rows() + y / self.rph()) * self.pitch() + x / self.sw
    }
    /// Byte offset of kernel tap `t` (row-major over `kh × kw`) from a lane's pixel.
    fn tap_offset(&self, t: usize) -> usize {
        self.at((t / self.kw) * self.dil[0], (t % self.kw) * self.dil[1]) * 4
    }
    /// Bytes of the padded input for `planes` channel quads, if within the limit.
    fn bytes(&self, planes: usize) -> Option<usize> {
        let hp = self
            .h
            .checked_add(self.pads[0])?
            .checked_add(self.pads[2])?;
        let wp = self
            .w
            .checked_add(self.pads[1])?
            .checked_add(self.pads[3])?;
        if !matches!(self.sw, 1 | 2) {
            return None;
        }
        let r = self.rph();
        let b = hp
            .div_ceil(r)
            .checked_mul(r)?
            .checked_mul(wp.div_ceil(self.sw) * self.sw)?
            .checked_mul(planes)?
            .checked_mul(4)?
            .checked_add(SLACK)?;
        (b <= MAX_BYTES).then_some(b)
    }
    /// Flat tiles (over the stored rows) when the vertical stride is 1 and they cost
    /// less.
    fn flat(&self) -> bool {
        let pitch = self.pitch();
        self.row_step() == 1
            && ((self.oh - 1) * pitch + self.ow).div_ceil(NR) <= self.oh * self.ow.div_ceil(NR)
    }
    fn tiles(&self) -> usize {
        if self.flat() {
            ((self.oh - 1) * self.pitch() + self.ow).div_ceil(NR)
        } else {
            self.oh * self.ow.div_ceil(NR)
        }
    }
}

/// Whether the direct path can run this convolution (its padded input fits).
pub(crate) fn usable(dw: &DirectW, geo: &DGeom) -> bool {
    geo.bytes(dw.groups * dw.cq).is_some()
}

/// A run of tile lanes `lo..hi` stored at output offset `off + lane` (within a plane).
#[derive(Clone, Copy, Default)]
pub(crate) struct Seg {
    pub(crate) lo: u32,
    pub(crate) hi: u32,
    pub(crate) off: isize,
}

/// Input pixel offset of lane 0 and the store segments of tile `t`.
fn tile_segs(geo: &DGeom, flat: bool, t: usize, segs: &mut [Seg; NR + 1]) -> (usize, usize) {
    let wp = geo.pitch();
    if flat {
        let f0 = t * NR;
        let mut n = 0;
        let mut i = 0;
        while i < NR {
            let f = f0 + i;
            let (oy, ox) = (f / wp, f % wp);
            if oy >= geo.oh {
                break;
            }
            if ox >= geo.ow {
                i += wp - ox;
                continue;
            }
            let len = (geo.ow - ox).min(NR - i);
            segs[n] = Seg {
                lo: i as u32,
                hi: (i + len) as u32,
                off: (oy * geo.ow + ox) as isize - i as isize,
            };
            n += 1;
            i += len;
        }
        (f0, n)
    } else {
        let tpr = geo.ow.div_ceil(NR);
        let (oy, ox0) = (t / tpr, (t % tpr) * NR);
        segs[0] = Seg {
            lo: 0,
            hi: (geo.ow - ox0).min(NR) as u32,
            off: (oy * geo.ow + ox0) as isize,
        };
        (oy * geo.row_step() * wp + ox0, 1)
    }
}

/// The operands of one tile's reduction.
pub(crate) struct KArgs<'a> {
    /// Packed weights of the block: `[kq][MR][4]`.
    pub(crate) w: *const i8,
    /// The same as i16 (`avx2` and `neon` only; dangling otherwise).
    pub(crate) w16: *const i16,
    /// The weights fit in 7 bits (`avx2` only; see `DirectW::narrow`): `w16` is
    /// dangling and the tile multiplies `w` directly. (Read only on x86-64.)
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) narrow: bool,
    /// Padded input at the tile's first pixel (channel quad 0 of the group).
    pub(crate) x: *const u8,
    /// Byte offset of each kernel tap.
    pub(crate) toff: &'a [usize],
    pub(crate) cq: usize,
    /// Bytes per channel-quad plane.
    pub(crate) plane4: usize,
}

/// Where and how a tile's rows are finished.
pub(crate) struct Epi<'a> {
    /// First output channel (global) of the tile.
    pub(crate) oc0: usize,
    /// Per output channel: constant correction (plus bias when requantizing).
    pub(crate) ct: &'a [i32],
    /// Per output channel: `−zw'` (empty: no pixel-sum term).
    pub(crate) negzw: &'a [i32],
    /// The tile's `NR` pixel sums (valid when `negzw` is not empty).
    pub(crate) s: *const i32,
    /// `(mult per channel, zp, lo, hi)` for u8/i8 output, `None` for i32.
    pub(crate) quant: Option<(&'a [f32], i32, f32, f32)>,
    /// Output of the batch item (i32 or bytes) and elements per channel plane.
    pub(crate) out: *mut u8,
    pub(crate) plane: usize,
    pub(crate) segs: &'a [Seg],
}

/// The portable tile: the same reduction and epilogue as the SIMD kernels.
///
/// # Safety
/// `k` must describe readable operands for `taps·cq` k-quads of `NR` lanes, and the
/// output must be writable at every segment of every row.
unsafe fn tile_scalar(rows: usize, k: &KArgs<'_>, e: &Epi<'_>) {
    let mut acc = [[0i32; NR]; MR];
    let mut wq = k.w;
    for &to in k.toff {
        for q in 0..k.cq {
            // SAFETY: NR lanes × 4 bytes at this tap and quad are readable (contract).
            let xs = unsafe { core::slice::from_raw_parts(k.x.add(to + q * k.plane4), NR * 4) };
            // SAFETY: the block holds MR × 4 weights per k-quad.
            let ws = unsafe { core::slice::from_raw_parts(wq, MR * 4) };
            for (a, wr) in acc.iter_mut().zip(ws.chunks_exact(4)).take(rows) {
                for (v, xl) in a.iter_mut().zip(xs.chunks_exact(4)) {
                    let d = (0..4).fold(0i32, |s, j| {
                        s.wrapping_add(i32::from(xl[j]) * i32::from(wr[j]))
                    });
                    *v = v.wrapping_add(d);
                }
            }
            // SAFETY: stays inside the block's packed weights.
            wq = unsafe { wq.add(MR * 4) };
        }
    }
    // SAFETY: forwarded contract.
    unsafe { epi_scalar(rows, &acc, e) }
}

/// The portable epilogue: corrections, requantization (`quant_one`) and the segment
/// stores of the raw accumulators `acc` (also used by the NEON tiles).
///
/// # Safety
/// The output must be writable at every segment of every row.
pub(crate) unsafe fn epi_scalar(rows: usize, acc: &[[i32; NR]; MR], e: &Epi<'_>) {
    for (r, a) in acc.iter().enumerate().take(rows) {
        let oc = e.oc0 + r;
        let ct = e.ct[oc];
        for sg in e.segs {
            for (lane, &av) in a
                .iter()
                .enumerate()
                .take(sg.hi as usize)
                .skip(sg.lo as usize)
            {
                let mut v = av.wrapping_add(ct);
                if !e.negzw.is_empty() {
                    // SAFETY: `s` holds NR sums.
                    let s = unsafe { *e.s.add(lane) };
                    v = v.wrapping_add(e.negzw[oc].wrapping_mul(s));
                }
                let at = (oc * e.plane) as isize + sg.off + lane as isize;
                // SAFETY: the segment's lanes are inside channel `oc`'s plane.
                unsafe {
                    match e.quant {
                        Some((mult, zp, lo, hi)) => {
                            *e.out.offset(at) = quant_one(v, 0, mult[oc], zp, lo, hi) as u8;
                        }
                        None => *e.out.cast::<i32>().offset(at) = v,
                    }
                }
            }
        }
    }
}

/// Runs one tile on `isa`.
///
/// # Safety
/// As [`tile_scalar`]; `isa` must be available and [`has_direct`].
unsafe fn run_tile(isa: Isa, rows: usize, k: &KArgs<'_>, e: &Epi<'_>) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: availability checked when the weights were packed (`amx` implies
        // AVX-512 VNNI); forwarded contract.
        Isa::Avx512Vnni | Isa::Amx => unsafe { super::direct_x86::tile_avx512(rows, k, e) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::AvxVnni => unsafe { super::direct_x86::tile_avxvnni(rows, k, e) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above; 7-bit weights (checked when packed).
        Isa::Avx2 if k.narrow => unsafe { super::direct_x86::tile_avx2_narrow(rows, k, e) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above; the weights were packed for `avx2` (i16 copy present).
        Isa::Avx2 => unsafe { super::direct_x86::tile_avx2(rows, k, e) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above (the kernel's `x' − 128` is corrected in `ct`).
        Isa::NeonDotprod => unsafe { super::direct_neon::tile_dot(rows, k, e) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above; the weights were packed for `neon` (i16 copy present).
        Isa::Neon => unsafe { super::direct_neon::tile_neon(rows, k, e) },
        // SAFETY: forwarded contract.
        _ => unsafe { tile_scalar(rows, k, e) },
    }
}

/// The output of one batch item, `[C_out, OH, OW]`, with its epilogue.
pub(crate) enum DOut<'a> {
    /// ConvInteger.
    I32(&'a mut [i32]),
    /// QLinearConv (u8 or i8 bytes): `(mult, bias)` per output channel, zp, lo, hi.
    Q(&'a mut [u8], &'a [f32], &'a [i32], i32, f32, f32),
}

struct SendPtr(*mut u8);
// SAFETY: tasks write disjoint output pixels (disjoint tiles) through it.
unsafe impl Sync for SendPtr {}
// SAFETY: as above.
unsafe impl Send for SendPtr {}
impl SendPtr {
    fn get(&self) -> *mut u8 {
        self.0
    }
}

/// One batch item `x` (`[C_in, H, W]`, standard layout) through the direct kernel.
/// `scratch` is reused between calls. Returns `false` (writing nothing) if the
/// output length does not match.
///
/// With several threads, a large enough plane and symmetric weights, the output rows
/// are cut into bands and each task builds the padded input rows of its own band
/// (halo included) in its own buffer, then runs the band's tiles: no core reads
/// input a different core just wrote, which measured faster at 2 threads than one
/// shared image built by all threads. Otherwise one image is built (split over the
/// threads) and the tiles are split over the threads.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv<T: QElem>(
    isa: Isa,
    dw: &DirectW,
    geo: &DGeom,
    x: &[T],
    zx: T,
    mut out: DOut<'_>,
    threads: usize,
    scratch: &mut Vec<u8>,
) -> bool {
    let c_out = dw.groups * dw.cog;
    let plane = geo.oh * geo.ow;
    let (outp, len) = match &mut out {
        DOut::I32(v) => (v.as_mut_ptr().cast::<u8>(), v.len()),
        DOut::Q(v, ..) => (v.as_mut_ptr(), v.len()),
    };
    let cig = x.len() / (dw.groups * geo.h * geo.w).max(1);
    if geo.bytes(dw.groups * dw.cq).is_none() {
        return false;
    }
    if len != c_out * plane || x.len() != dw.groups * cig * geo.h * geo.w || !has_direct(isa) {
        return false;
    }
    if dw.bpg == 0 {
        // No output channels: nothing to write.
        return true;
    }
    let za = zx.to_a();
    let kp = (dw.taps * dw.cq * 4) as i32;
    let (quant, bias) = match &out {
        DOut::I32(_) => (None, None),
        DOut::Q(_, m, b, zp, lo, hi) => (Some((*m, *zp, *lo, *hi)), Some(*b)),
    };
    let zai = i32::from(za);
    let ct: Vec<i32> = (0..c_out)
        .map(|oc| {
            let z = dw.zw.get(oc).copied().unwrap_or(0);
            let c = zai
                .wrapping_mul(dw.wsum[oc])
                .wrapping_neg()
                .wrapping_add(kp.wrapping_mul(zai).wrapping_mul(z));
            // `neon-dotprod` multiplies `x' − 128` (i8): add back `128·Σw'`.
            let c = if isa == Isa::NeonDotprod {
                c.wrapping_add(dw.wsum[oc].wrapping_mul(128))
            } else {
                c
            };
            c.wrapping_add(bias.map_or(0, |b| b[oc]))
        })
        .collect();
    let negzw: Vec<i32> = dw.zw.iter().map(|z| z.wrapping_neg()).collect();
    let kq = dw.taps * dw.cq;
    let work = (c_out * plane * kq) as u64;
    let threads = if work < (1 << 16) { 1 } else { threads };
    let src = Src {
        xs: super::pack::raw_bytes(x),
        xor: if T::SIGNED { 0x80 } else { 0 },
        za,
        cig,
        chan: geo.h * geo.w,
        row0: 0,
    };
    let job = Job {
        isa,
        dw,
        ct: &ct,
        negzw: &negzw,
        quant,
        esz: if quant.is_some() { 1 } else { 4 },
        plane,
        threads,
    };
    let bands = if threads > 1 && negzw.is_empty() && plane >= 16 * NR {
        // One or two bands per thread, whichever computes fewer tiles in all (each band
        // ends in a partial tile); two on a tie, which balances a late thread better.
        let tiles = |b: usize| -> usize {
            (0..b)
                .filter_map(|i| band_geometry(geo, geo.oh * i / b, geo.oh * (i + 1) / b))
                .map(|(g, _)| g.tiles())
                .sum()
        };
        let (one, two) = (geo.oh.min(threads), geo.oh.min(2 * threads));
        if tiles(one) < tiles(two) { one } else { two }
    } else {
        1
    };
    if bands <= 1 {
        return region(&job, geo, &src, SendPtr(outp), threads, scratch);
    }
    thread_local! {
        // Each task's padded band, reused between calls on this thread.
        static BAND: core::cell::RefCell<Vec<u8>> = const { core::cell::RefCell::new(Vec::new()) };
    }
    let outp = SendPtr(outp);
    super::driver::par_chunks(bands, threads, bands, work, |r| {
        for b in r {
            let (oy0, oy1) = (geo.oh * b / bands, geo.oh * (b + 1) / bands);
            let Some((bgeo, row0)) = band_geometry(geo, oy0, oy1) else {
                continue;
            };
            let bsrc = Src { row0, ..src };
            let at = SendPtr(outp.get().wrapping_add(oy0 * geo.ow * job.esz));
            BAND.with(|s| match s.try_borrow_mut() {
                Ok(mut s) => region(&job, &bgeo, &bsrc, at, 1, &mut s),
                Err(_) => region(&job, &bgeo, &bsrc, at, 1, &mut Vec::new()),
            });
        }
    });
    true
}

/// The input of one region: the mapped bytes of the whole batch item, and where the
/// region's first input row starts in each channel.
#[derive(Clone, Copy)]
struct Src<'a> {
    xs: &'a [u8],
    /// XOR mapping i8 to u8 (0x80) or nothing (0).
    xor: u8,
    /// The mapped input zero point (padding value).
    za: u8,
    cig: usize,
    /// Elements per input channel.
    chan: usize,
    /// The region's first input row.
    row0: usize,
}

/// What every region of one call shares.
struct Job<'a> {
    isa: Isa,
    dw: &'a DirectW,
    ct: &'a [i32],
    negzw: &'a [i32],
    quant: Option<(&'a [f32], i32, f32, f32)>,
    /// Bytes per output element.
    esz: usize,
    /// Elements per output channel plane (of the whole image).
    plane: usize,
    /// Threads of the whole call (a band's region runs on one of them).
    threads: usize,
}

/// The geometry of output rows `oy0..oy1` as a convolution of its own (input rows from
/// the returned one, pads cut to what the band reaches), or `None` for an empty band.
fn band_geometry(geo: &DGeom, oy0: usize, oy1: usize) -> Option<(DGeom, usize)> {
    if oy1 <= oy0 {
        return None;
    }
    let span = (geo.kh - 1) * geo.dil[0] + 1;
    // Padded input rows pr0..pr1 feed the band.
    let pr0 = oy0 * geo.sh;
    let pr1 = (oy1 - 1) * geo.sh + span;
    let pt = geo.pads[0];
    // The image's rows are padded rows pt..pt + h; the band reads their overlap with
    // pr0..pr1 and pads the rest.
    let (lo, hi) = (pr0.max(pt), pr1.min(pt + geo.h));
    let (h, top, bottom, row0) = if lo < hi {
        (hi - lo, lo - pr0, pr1 - hi, lo - pt)
    } else {
        (0, pr1 - pr0, 0, 0)
    };
    let g = DGeom {
        h,
        pads: [top, geo.pads[1], bottom, geo.pads[3]],
        oh: oy1 - oy0,
        ..*geo
    };
    Some((g, row0))
}

/// Builds the padded input of one region (the whole image, or one band) in `scratch`
/// and runs its tiles on `threads`, writing output row 0 of the region at `outp`.
fn region(
    job: &Job<'_>,
    geo: &DGeom,
    src: &Src<'_>,
    outp: SendPtr,
    threads: usize,
    scratch: &mut Vec<u8>,
) -> bool {
    let dw = job.dw;
    let (isa, plane, quant) = (job.isa, job.plane, job.quant);
    let (ct, negzw) = (job.ct, job.negzw);
    let Some(bytes) = geo.bytes(dw.groups * dw.cq) else {
        return false;
    };
    let xb = build_input(src, geo, (dw.groups, dw.cq), bytes, scratch, threads);
    let plane4 = geo.plane_px() * 4;
    let toff: Vec<usize> = (0..geo.kh * geo.kw).map(|t| geo.tap_offset(t)).collect();
    let c_out = dw.groups * dw.cog;
    let flat = geo.flat();
    let ntiles = geo.tiles();
    let kq = dw.taps * dw.cq;
    for g in 0..dw.groups {
        let xg = &xb[g * dw.cq * plane4..];
        let sums = if negzw.is_empty() {
            Vec::new()
        } else {
            pixel_sums(xg, geo, flat, ntiles, dw.cq, &toff)
        };
        // One (tile, block of MR output channels) pair.
        let unit = |t: usize, blk: usize, segs: &[Seg], base: usize| {
            let rows = MR.min(dw.cog - blk * MR);
            let wo = ((g * dw.bpg + blk) * kq) * MR * 4;
            let k = KArgs {
                w: dw.w[wo..].as_ptr(),
                w16: dw.w16.as_ptr().wrapping_add(wo),
                narrow: dw.narrow,
                x: xg[base * 4..].as_ptr(),
                toff: &toff,
                cq: dw.cq,
                plane4,
            };
            let e = Epi {
                oc0: g * dw.cog + blk * MR,
                ct,
                negzw,
                s: sums
                    .get(t * NR..)
                    .map_or(core::ptr::null(), <[i32]>::as_ptr),
                quant,
                out: outp.get(),
                plane,
                segs,
            };
            // SAFETY: the padded input has SLACK bytes past its last plane, so every tap
            // of every lane of every tile is readable; segments lie inside the output
            // planes (checked length; a band's rows lie inside the image's, from
            // `outp`); `isa` has a kernel.
            unsafe { run_tile(isa, rows, &k, &e) };
        };
        // Work units are (tile, block) pairs, so that small planes (a 7×7 plane is two
        // tiles) still split over the threads. Tile-major, except for a short reduction
        // (at most 8 k-quads, K ≤ 32) in a call on several threads with an image that
        // stays in L2 while every block reads it: such a layer is its epilogue and
        // output stores, and block-major order writes each block's 8 planes as
        // sequential runs where tile-major order writes all `C_out` planes a little at
        // a time. Measured on MobileNetV2's 16→96 expansion at 112², 2 threads: 0.27 →
        // 0.19 ms; on one thread block-major was slower (0.24 → 0.26), and at K = 128
        // too (0.134 → 0.144 ms on 2 threads).
        let block_major =
            job.threads > 1 && dw.bpg > 1 && kq <= 8 && dw.cq * plane4 <= BLOCK_MAJOR_BYTES;
        let run = |units: core::ops::Range<usize>| {
            let mut segs = [Seg::default(); NR + 1];
            let mut at = units.start;
            while at < units.end {
                if block_major {
                    let (blk, t) = (at / ntiles, at % ntiles);
                    let (base, ns) = tile_segs(geo, flat, t, &mut segs);
                    unit(t, blk, &segs[..ns], base);
                    at += 1;
                } else {
                    let t = at / dw.bpg;
                    let blocks = at % dw.bpg..(units.end - t * dw.bpg).min(dw.bpg);
                    at = (t + 1) * dw.bpg;
                    let (base, ns) = tile_segs(geo, flat, t, &mut segs);
                    for blk in blocks {
                        unit(t, blk, &segs[..ns], base);
                    }
                }
            }
        };
        let units = ntiles * dw.bpg;
        super::driver::par_chunks(units, threads, 0, (c_out * plane * kq) as u64, run);
    }
    true
}

/// Per tile lane: `Σ x'` over the lane's receptive field (all taps and channels).
fn pixel_sums(
    xg: &[u8],
    geo: &DGeom,
    flat: bool,
    ntiles: usize,
    cq: usize,
    toff: &[usize],
) -> Vec<i32> {
    let px = geo.plane_px();
    let n = px + SLACK / 4;
    let mut p = vec![0i32; n];
    for q in 0..cq {
        let pl = &xg[q * px * 4..];
        for (i, v) in p.iter_mut().enumerate() {
            let px = &pl[i * 4..i * 4 + 4];
            *v = px.iter().fold(*v, |a, &b| a.wrapping_add(i32::from(b)));
        }
    }
    let mut segs = [Seg::default(); NR + 1];
    let mut s = vec![0i32; ntiles * NR];
    for t in 0..ntiles {
        let (base, _) = tile_segs(geo, flat, t, &mut segs);
        for lane in 0..NR {
            let i = base + lane;
            s[t * NR + lane] = toff.iter().fold(0i32, |a, &o| {
                a.wrapping_add(p.get(i + o / 4).copied().unwrap_or(0))
            });
        }
    }
    s
}

/// Writes the zero-point-padded `[group][cq][Hp][Wp][4]` image of `src` (its rows
/// from `src.row0`, bytes `⊕ src.xor`) into the reused buffer `out` and returns it:
/// `bytes` bytes of `out` from a 64-byte boundary.
fn build_input<'o>(
    src: &Src<'_>,
    geo: &DGeom,
    (groups, cq): (usize, usize),
    bytes: usize,
    out: &'o mut Vec<u8>,
    threads: usize,
) -> &'o [u8] {
    let (xs, xor, za, cig) = (src.xs, src.xor, src.za, src.cig);
    let base = src.row0 * geo.w;
    let (h, w) = (geo.h, geo.w);
    let (hp, wp) = (geo.hp(), geo.wp());
    let [pt, pl, pb, pr] = geo.pads;
    // The image starts on a cache line, so that no 64-byte load straddles two. The
    // buffer only grows: every byte of the image is written below, whatever it held.
    if out.len() < bytes + 64 {
        *out = vec![za; bytes + 64];
    }
    let at = out.as_ptr().align_offset(64).min(64);
    let out = &mut out[at..at + bytes];
    out[bytes - SLACK..].fill(za);
    let fill = vec![za ^ xor; h * w];
    let whole = pl == 0 && pr == 0;
    // One plane of 4 channels at a time, each written whole (padding included, since
    // the buffer is reused), the planes split over the threads for large images.
    let plane_len = geo.plane_px() * 4;
    let pitch = geo.pitch();
    // Which row and column phases some tap reads (a 1×1 kernel reads only the even
    // ones).
    let phased = geo.rph() * geo.sw > 1;
    let rows_read: [bool; 2] =
        core::array::from_fn(|p| (0..geo.kh).any(|ky| (ky * geo.dil[0]) % geo.rph() == p));
    let cols_read: [bool; 2] =
        core::array::from_fn(|p| (0..geo.kw).any(|kx| (kx * geo.dil[1]) % geo.sw == p));
    let one_plane = |pi: usize, plane: &mut [u8]| {
        let (g, q) = (pi / cq, pi % cq);
        let src: [&[u8]; 4] = core::array::from_fn(|j| {
            let c = 4 * q + j;
            if c < cig {
                &xs[(g * cig + c) * src.chan + base..][..h * w]
            } else {
                &fill[..]
            }
        });
        if phased {
            // Each padded row is built whole, then its pixels go to their phases (a
            // column phase past the row's end holds padding). Phases no tap reads are
            // skipped.
            let mut row = vec![za; geo.sw * pitch * 4];
            for y in 0..hp {
                if !rows_read[y % geo.rph()] {
                    continue;
                }
                let interior = y >= pt && y < hp - pb;
                if interior {
                    let iy = y - pt;
                    interleave4(
                        src.map(|s| &s[iy * w..(iy + 1) * w]),
                        xor,
                        &mut row[pl * 4..(wp - pr) * 4],
                    );
                }
                for c in (0..geo.sw).filter(|&c| cols_read[c]) {
                    let d = &mut plane[geo.at(y, c) * 4..][..pitch * 4];
                    if !interior {
                        d.fill(za);
                        continue;
                    }
                    if geo.sw == 1 {
                        d.copy_from_slice(&row);
                        continue;
                    }
                    for (j, px) in row.chunks_exact(8).enumerate() {
                        d[j * 4..j * 4 + 4].copy_from_slice(&px[c * 4..c * 4 + 4]);
                    }
                }
            }
            return;
        }
        plane[..pt * wp * 4].fill(za);
        plane[(hp - pb) * wp * 4..].fill(za);
        if whole {
            interleave4(src, xor, &mut plane[pt * wp * 4..][..h * w * 4]);
        } else {
            for y in 0..h {
                let row = &mut plane[(y + pt) * wp * 4..][..wp * 4];
                row[..pl * 4].fill(za);
                row[(wp - pr) * 4..].fill(za);
                interleave4(
                    src.map(|s| &s[y * w..(y + 1) * w]),
                    xor,
                    &mut row[pl * 4..(wp - pr) * 4],
                );
            }
        }
    };
    let tasks = if bytes >= 1 << 16 { threads } else { 1 };
    super::driver::par_rows(
        &mut out[..groups * cq * plane_len],
        plane_len,
        tasks,
        one_plane,
    );
    out
}

/// `dst[4i + j] = src[j][i] ⊕ xor`.
fn interleave4(src: [&[u8]; 4], xor: u8, dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        super::direct_x86::interleave4(src, xor, dst);
    }
    #[cfg(not(target_arch = "x86_64"))]
    for (i, d) in dst.chunks_exact_mut(4).enumerate() {
        for j in 0..4 {
            d[j] = src[j][i] ^ xor;
        }
    }
}

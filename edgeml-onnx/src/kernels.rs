//! SIMD float kernels: a packed, cache-blocked SGEMM with run-time ISA dispatch.
//!
//! [`sgemm`] computes `C = alpha·A·B + beta·C` for row-major `C` and operands given as
//! strided views ([`MatRef`], so transposes are free) or pre-packed panels
//! ([`PackedA`], [`PackedB`]) — operators pack constant weights once at plan time.
//!
//! The micro-kernels are one per ISA: AVX2+FMA (6×16 register tile), AVX-512F (12×32,
//! plus an 8×32 twin for row counts that 8 divides but 12 does not, e.g. 64 or 1000
//! output channels; used on CPUs that have it; needs Rust 1.89+, the workspace
//! minimum), NEON (8×8 with
//! `fmla` by lane) and a portable scalar twin (4×8). The ISA is picked once per process
//! ([`best_isa`]): the best one the CPU has, unless the environment variable
//! `EDGEML_KERNELS=scalar|avx2|avx512|neon` forces one (an unavailable or unknown value falls
//! back to the best available kernel with a `log` warning). Rows `M = 1` take a GEMV path
//! that streams the packed `B` panels once.
//!
//! Work is split into `MC×NC` tiles of `C` run with rayon, so it uses whatever pool the
//! caller installed (serial when the pool has one thread, and when called from outside
//! any rayon pool: see [`in_parallel_pool`]). Called by an operator during a plan run,
//! the GEMM and the convolution driver poll the run's cancellation token and deadline
//! once per block of work and stop early with its typed error; the public entry points
//! here never stop.
//!
//! # Numerics
//! Products are accumulated in `f32` in `k` order per element (with FMA on SIMD paths);
//! NaN and infinities propagate as IEEE arithmetic says, except that `beta == 0` means
//! "overwrite": `C` is not read then, so garbage or NaN already in `C` does not leak
//! into the result (BLAS convention).
#![allow(unsafe_code)]

mod depthwise;
mod fused;
mod pool;
mod scalar;
mod sparse;
pub mod vmath;

pub use depthwise::{DepthwiseGeo, DepthwiseScratch, depthwise_plane, gather};
pub(crate) use fused::sgemm_packed_b_until;
pub(crate) use fused::{BiasAct, VecAct, apply_act};
pub use fused::{BiasClamp, ColMap, Epilogue, PackB, RowsB, sgemm_packed_b, sgemm_packed_b_mapped};
pub(crate) use pool::{RowSpec, Taps, pool_planes_k3s2, pool_rows, pool_taps};
pub(crate) use sparse::{PANEL as SPARSE_PANEL, spmm_packed_b_until, spmm_until};
pub use sparse::{SparseB, prefer_sparse, spmm, spmm_packed_b};

#[cfg(target_arch = "x86_64")]
mod avx2;

#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(target_arch = "aarch64")]
mod neon;

#[cfg(test)]
mod tests;
#[cfg(test)]
use tests as tests_util;
#[cfg(test)]
mod fused_tests;

use crate::plan::budget::{COPY_UNITS, Meter, Stop};
use crate::{Error, Result};
use rayon::prelude::*;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// An instruction-set family for the float kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Isa {
    /// Portable Rust, always available.
    Scalar,
    /// x86-64 AVX2 + FMA.
    Avx2,
    /// aarch64 Advanced SIMD.
    Neon,
    /// x86-64 AVX-512F (preferred over AVX2 when present).
    Avx512,
}

impl Isa {
    /// The lowercase name used in bench ids and `EDGEML_KERNELS`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Neon => "neon",
            Isa::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run the ISA's kernels.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    fn from_name(s: &str) -> Option<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(Isa::Scalar),
            "avx2" => Some(Isa::Avx2),
            "neon" => Some(Isa::Neon),
            "avx512" => Some(Isa::Avx512),
            _ => None,
        }
    }
}

/// Every ISA this CPU can run, best last (always starts with [`Isa::Scalar`]).
pub fn available_isas() -> Vec<Isa> {
    [Isa::Scalar, Isa::Neon, Isa::Avx2, Isa::Avx512]
        .into_iter()
        .filter(|i| i.is_available())
        .collect()
}

/// The ISA the operators use: chosen once per process, honouring `EDGEML_KERNELS`.
pub fn best_isa() -> Isa {
    static BEST: OnceLock<Isa> = OnceLock::new();
    *BEST.get_or_init(|| {
        let best = available_isas().last().copied().unwrap_or(Isa::Scalar);
        match std::env::var("EDGEML_KERNELS") {
            Ok(v) if !v.is_empty() => match Isa::from_name(&v) {
                Some(isa) if isa.is_available() => isa,
                Some(isa) => {
                    log::warn!(
                        "EDGEML_KERNELS={v}: {} not available here, using {}",
                        isa.name(),
                        best.name()
                    );
                    best
                }
                None => {
                    log::warn!(
                        "EDGEML_KERNELS={v}: unknown (expected scalar|avx2|avx512|neon), using {}",
                        best.name()
                    );
                    best
                }
            },
            _ => best,
        }
    })
}

/// A computation that [`on_best_isa`] runs compiled for the CPU's best ISA.
///
/// # Implementing
/// Mark [`IsaBody::run`] `#[inline(always)]`, and the helpers it calls too: only code
/// inlined into `run` is compiled for the ISA (a call that stays out of line runs as
/// compiled for the default target, which is slower, not wrong). A closure cannot
/// promise that, which is why this is a trait.
pub trait IsaBody {
    /// What [`IsaBody::run`] returns.
    type Output;
    /// The computation.
    fn run(self) -> Self::Output;
}

/// Runs `body` inside a function compiled for [`best_isa`] (AVX-512F or AVX2+FMA on
/// x86-64; elsewhere the target's default, e.g. NEON on aarch64), so that the loops
/// inlined into it are vectorized with that ISA's registers, as the slice functions of
/// [`vmath`] are: for crates built for the default target (SSE2 on x86-64) this is
/// the run-time dispatch of plain Rust loops. Rust never contracts `a·b + c` into a
/// fused multiply-add, so float arithmetic gives the same bits on every path.
#[inline(always)]
pub fn on_best_isa<B: IsaBody>(body: B) -> B::Output {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn avx512<B: IsaBody>(body: B) -> B::Output {
            body.run()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2<B: IsaBody>(body: B) -> B::Output {
            body.run()
        }
        match best_isa() {
            // SAFETY: `best_isa` returns only ISAs this CPU supports.
            Isa::Avx512 => return unsafe { avx512(body) },
            // SAFETY: as above.
            Isa::Avx2 => return unsafe { avx2(body) },
            _ => {}
        }
    }
    body.run()
}

/// A micro-kernel: `C[0..MR, 0..NR] = alpha·Σ_k a[k]⊗b[k] + beta·C` over a full tile;
/// `beta == 0` must not read `C`.
type MicroKernel = unsafe fn(usize, *const f32, *const f32, *mut f32, usize, f32, f32);
/// A partial-tile micro-kernel: as [`MicroKernel`] but only the top-left `mm × nn`
/// corner of the tile is read or written (last two arguments).
type EdgeKernel = unsafe fn(usize, *const f32, *const f32, *mut f32, usize, f32, f32, usize, usize);
/// A partial- or full-tile micro-kernel that reads `B` in place instead of from a
/// packed panel: row `k` of the tile's `B` starts at `b + offs[k]` (`kc` offsets), and
/// only its first `nn` columns are read. Otherwise as [`EdgeKernel`].
type RowsKernel =
    unsafe fn(usize, *const f32, *const f32, *const usize, *mut f32, usize, f32, f32, usize, usize);
/// A GEMV kernel: `acc[0..NR] += Σ_k a[k]·b[k·ldb..k·ldb + NR]`.
type GemvKernel = unsafe fn(usize, *const f32, *const f32, usize, *mut f32);

/// The register tile, blocking sizes and kernels of one ISA.
struct KernelSet {
    mr: usize,
    nr: usize,
    kc: usize,
    mc: usize,
    nc: usize,
    ukernel: MicroKernel,
    /// A micro-kernel for partial tiles, when the ISA has masked stores.
    edge: Option<EdgeKernel>,
    /// A micro-kernel reading `B` rows in place (no packing), when the ISA has one: used
    /// for sources that offer their rows ([`fused::PackB::in_place_rows`]), such as a
    /// convolution's shifted phase planes.
    rows: Option<RowsKernel>,
    gemv: GemvKernel,
}

impl std::fmt::Debug for KernelSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KernelSet({}x{}, kc {})", self.mr, self.nr, self.kc)
    }
}

fn kernel_set(isa: Isa) -> &'static KernelSet {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if isa.is_available() => &avx2::KERNELS,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if isa.is_available() => &avx512::KERNELS,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if isa.is_available() => &neon::KERNELS,
        _ => &scalar::KERNELS,
    }
}

/// The kernel set for an `A` operand of `m` rows: the ISA's default, or a twin with
/// shorter register tile when that pads `m` to fewer rows (AVX-512: 8×32 for
/// `m = 16, 64, 1000`, where 12-row tiles would compute 50 %, 12.5 %, 0.8 % padding).
/// Twins share `nr` and `kc` with the default set, so packed `B` panels fit both.
/// `EDGEML_MR8=0` in the environment turns the twin off (for A/B measurements).
fn kernel_set_rows(isa: Isa, m: usize) -> &'static KernelSet {
    let ks = kernel_set(isa);
    #[cfg(target_arch = "x86_64")]
    if std::ptr::eq(ks, &avx512::KERNELS) && mr8_enabled() {
        let alt = &avx512::KERNELS_8;
        if m.div_ceil(alt.mr) * alt.mr < m.div_ceil(ks.mr) * ks.mr {
            return alt;
        }
    }
    let _ = m;
    ks
}

#[cfg(target_arch = "x86_64")]
fn mr8_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("EDGEML_MR8").map_or(true, |v| v != "0"))
}

/// The panel width (`nr`) of the GEMM's packed `B` operand on `isa` (what
/// [`PackB::pack`] is asked for).
pub fn panel_width(isa: Isa) -> usize {
    kernel_set(isa).nr
}

/// A read-only strided view of an `rows × cols` `f32` matrix: element `(i, j)` is
/// `data[i·rs + j·cs]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatRef<'a> {
    /// A strided view.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if some element would lie outside `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Result<Self> {
        if rows > 0 && cols > 0 {
            let last = (rows - 1)
                .checked_mul(rs)
                .and_then(|r| (cols - 1).checked_mul(cs).and_then(|c| r.checked_add(c)));
            match last {
                Some(l) if l < data.len() => {}
                _ => {
                    return Err(Error::ShapeMismatch(format!(
                        "matrix view {rows}x{cols} with strides ({rs}, {cs}) exceeds buffer of {} elements",
                        data.len()
                    )));
                }
            }
        }
        Ok(Self {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }

    /// A dense row-major view.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `data` is shorter than `rows·cols`.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self> {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }
}

/// Packs `rows × depth` elements `data[p·ps + d·ds]` into `[k-block][panel][kk][w]`
/// panels of width `w` (block `k0` starts at `k0·rows_pad`), zero-padded to whole panels.
/// Every element of `out` (length `rows_pad·depth`) is written, unless `stop` stops the
/// packing (polled before each k-block; then false is returned).
#[allow(clippy::too_many_arguments)]
fn pack_into(
    data: &[f32],
    ps: usize,
    ds: usize,
    rows: usize,
    depth: usize,
    w: usize,
    kc: usize,
    out: &mut [f32],
    stop: &Stop,
) -> bool {
    let rows_pad = rows.div_ceil(w) * w;
    let mut off = 0;
    let mut meter = Meter::new(stop);
    for k0 in (0..depth).step_by(kc.max(1)) {
        let kcur = kc.min(depth - k0);
        if meter.tick((rows_pad * kcur) as u64 * COPY_UNITS) {
            return false;
        }
        let block = &mut out[off..off + rows_pad * kcur];
        let work = |(p, panel): (usize, &mut [f32])| {
            let r0 = p * w;
            let rn = w.min(rows - r0);
            if rn < w {
                panel.fill(0.0);
            }
            if ps == 1 {
                for kk in 0..kcur {
                    let src = &data[(k0 + kk) * ds + r0..][..rn];
                    panel[kk * w..kk * w + rn].copy_from_slice(src);
                }
            } else if ds == 1 {
                for r in 0..rn {
                    let src = &data[(r0 + r) * ps + k0..][..kcur];
                    for (kk, &v) in src.iter().enumerate() {
                        panel[kk * w + r] = v;
                    }
                }
            } else {
                for kk in 0..kcur {
                    for r in 0..rn {
                        panel[kk * w + r] = data[(r0 + r) * ps + (k0 + kk) * ds];
                    }
                }
            }
        };
        if rows_pad * kcur >= 1 << 16 && threads() > 1 {
            block
                .par_chunks_mut(w * kcur)
                .enumerate()
                .with_min_len(min_len())
                .for_each(work);
        } else {
            block.chunks_mut(w * kcur).enumerate().for_each(work);
        }
        off += rows_pad * kcur;
    }
    true
}

fn pack_a_into(a: &MatRef<'_>, ks: &KernelSet, out: &mut [f32], stop: &Stop) -> bool {
    pack_into(a.data, a.rs, a.cs, a.rows, a.cols, ks.mr, ks.kc, out, stop)
}

fn pack_b_into(b: &MatRef<'_>, ks: &KernelSet, out: &mut [f32], stop: &Stop) -> bool {
    pack_into(b.data, b.cs, b.rs, b.cols, b.rows, ks.nr, ks.kc, out, stop)
}

thread_local! {
    /// Reusable packing buffers (A, B) so hot loops do not page-fault fresh memory.
    static SCRATCH: std::cell::Cell<[Vec<f32>; 2]> = const { std::cell::Cell::new([Vec::new(), Vec::new()]) };
}

/// Takes this thread's scratch buffers (re-entrant: a nested call finds them empty).
fn take_scratch() -> [Vec<f32>; 2] {
    SCRATCH.with(|s| s.take())
}

fn put_scratch(bufs: [Vec<f32>; 2]) {
    SCRATCH.with(|s| s.set(bufs));
}

/// `len` elements of the reused scratch `v` (grown as needed) starting on a 64-byte
/// boundary, so that no 64-byte load of a packed panel straddles two cache lines (a
/// large `Vec` from the system allocator starts 16 bytes past a page). [`aligned`]
/// finds the same elements again while `v` is not reallocated.
fn grow(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len + 15 {
        v.resize(len + 15, 0.0);
    }
    let at = align_at(v);
    &mut v[at..at + len]
}

/// The `len` elements of `v` that [`grow`] handed out.
fn aligned(v: &[f32], len: usize) -> &[f32] {
    let at = align_at(v);
    &v[at..at + len]
}

/// The first index of `v` on a 64-byte boundary (an `f32` is 4-byte aligned, so at
/// most 15 elements in).
fn align_at(v: &[f32]) -> usize {
    v.as_ptr().align_offset(64).min(15).min(v.len())
}

/// Zeroed storage of `len` packed elements starting on a 64-byte boundary (see [`grow`]).
#[derive(Debug)]
struct Panels {
    v: Vec<f32>,
    len: usize,
}

impl Panels {
    fn zeroed(len: usize) -> Panels {
        Panels {
            v: vec![0.0; len + 15],
            len,
        }
    }

    fn as_slice(&self) -> &[f32] {
        aligned(&self.v, self.len)
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        let at = align_at(&self.v);
        &mut self.v[at..at + self.len]
    }
}

impl Clone for Panels {
    /// A copy with its own alignment (a cloned `Vec` may start elsewhere in a line).
    fn clone(&self) -> Panels {
        let mut c = Panels::zeroed(self.len);
        c.as_mut_slice().copy_from_slice(self.as_slice());
        c
    }
}

/// The left operand `A` (`m × k`) packed into the register-tile panels of one ISA.
#[derive(Debug, Clone)]
pub struct PackedA {
    isa: Isa,
    ks: &'static KernelSet,
    m: usize,
    k: usize,
    data: Panels,
}

impl PackedA {
    /// Packs `a` for `isa`.
    pub fn pack(isa: Isa, a: MatRef<'_>) -> Self {
        let ks = kernel_set_rows(isa, a.rows);
        let mut data = Panels::zeroed(a.rows.div_ceil(ks.mr) * ks.mr * a.cols);
        let done = pack_a_into(&a, ks, data.as_mut_slice(), &Stop::default());
        debug_assert!(done, "packing without a stop runs to the end");
        Self {
            isa,
            ks,
            m: a.rows,
            k: a.cols,
            data,
        }
    }

    /// Rows of `A`.
    pub fn rows(&self) -> usize {
        self.m
    }

    /// Columns of `A` (the reduction depth).
    pub fn cols(&self) -> usize {
        self.k
    }
}

/// The right operand `B` (`k × n`) packed into the register-tile panels of one ISA.
#[derive(Debug, Clone)]
pub struct PackedB {
    isa: Isa,
    k: usize,
    n: usize,
    data: Panels,
}

impl PackedB {
    /// Packs `b` for `isa`.
    pub fn pack(isa: Isa, b: MatRef<'_>) -> Self {
        let ks = kernel_set(isa);
        let mut data = Panels::zeroed(b.cols.div_ceil(ks.nr) * ks.nr * b.rows);
        let done = pack_b_into(&b, ks, data.as_mut_slice(), &Stop::default());
        debug_assert!(done, "packing without a stop runs to the end");
        Self {
            isa,
            k: b.rows,
            n: b.cols,
            data,
        }
    }

    /// Rows of `B` (the reduction depth).
    pub fn rows(&self) -> usize {
        self.k
    }

    /// Columns of `B`.
    pub fn cols(&self) -> usize {
        self.n
    }
}

/// The left operand of [`sgemm`].
#[derive(Debug, Clone, Copy)]
pub enum Lhs<'a> {
    /// A strided view, packed on the fly.
    View(MatRef<'a>),
    /// Pre-packed panels.
    Packed(&'a PackedA),
}

/// The right operand of [`sgemm`].
#[derive(Debug, Clone, Copy)]
pub enum Rhs<'a> {
    /// A strided view, packed on the fly.
    View(MatRef<'a>),
    /// Pre-packed panels.
    Packed(&'a PackedB),
}

/// A `Send` raw pointer to the output; tiles written through it are disjoint.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: the pointer is only used to write disjoint tiles of one `&mut [f32]` that
// outlives the parallel section (see `sgemm`).
unsafe impl Send for OutPtr {}
// SAFETY: as above; no two tasks touch the same element.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Method access makes closures capture the whole (`Send`) wrapper.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `C = alpha·A·B + beta·C`, `C` row-major `m × n` with row stride `ldc`, on `isa`.
///
/// Pre-packed operands must have been packed for the same `isa`. With `beta == 0`, `C`
/// is overwritten without being read.
///
/// # Errors
/// [`Error::ShapeMismatch`] when the inner dimensions disagree or `c` is too small;
/// [`Error::InvalidInput`] when a packed operand was packed for another ISA.
pub fn sgemm(
    isa: Isa,
    alpha: f32,
    a: Lhs<'_>,
    b: Rhs<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) -> Result<()> {
    sgemm_until(isa, alpha, a, b, beta, c, ldc, &Stop::default())
}

/// `y[i] = Σₖ a[i·k + kk]·x[kk]`: a row-major `y.len() × k` matrix times a vector, on
/// the CPU's best ISA ([`on_best_isa`]), each row a dot product in 16 partial sums (no
/// packing: every weight is read once). This is what a convolution or GEMM with a single
/// output column needs (e.g. the squeeze-excitation 1×1 convolutions on a 1×1 map),
/// where a register-tiled GEMM would compute a whole panel of columns for one.
/// Deterministic; the summation order differs from [`sgemm`]'s, so results agree with
/// it within rounding.
///
/// # Panics
/// When `a.len() != y.len() * k` or `x.len() != k`.
pub fn matvec(a: &[f32], k: usize, x: &[f32], y: &mut [f32]) {
    assert_eq!(a.len(), y.len() * k, "matrix size");
    assert_eq!(x.len(), k, "vector length");
    struct Body<'a> {
        a: &'a [f32],
        k: usize,
        x: &'a [f32],
        y: &'a mut [f32],
    }
    impl IsaBody for Body<'_> {
        type Output = ();
        #[inline(always)]
        fn run(self) {
            if self.k == 0 {
                self.y.fill(0.0);
                return;
            }
            for (yi, row) in self.y.iter_mut().zip(self.a.chunks_exact(self.k)) {
                let mut lanes = [0f32; 16];
                let (rc, xc) = (row.chunks_exact(16), self.x.chunks_exact(16));
                let (rt, xt) = (rc.remainder(), xc.remainder());
                for (r, v) in rc.zip(xc) {
                    for ((l, &a), &b) in lanes.iter_mut().zip(r).zip(v) {
                        *l += a * b;
                    }
                }
                let tail = rt.iter().zip(xt).fold(0.0f32, |s, (&a, &b)| s + a * b);
                *yi = lanes.iter().sum::<f32>() + tail;
            }
        }
    }
    on_best_isa(Body { a, k, x, y });
}

/// [`sgemm`] within a run: polls `stop` once per block of work and, when the run was
/// cancelled or its deadline passed, returns the run's typed error with `C` partly
/// computed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_until(
    isa: Isa,
    alpha: f32,
    a: Lhs<'_>,
    b: Rhs<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    stop: &Stop,
) -> Result<()> {
    let isa = if isa.is_available() { isa } else { Isa::Scalar };
    let (m, ka) = match a {
        Lhs::View(v) => (v.rows, v.cols),
        Lhs::Packed(p) => (p.m, p.k),
    };
    let (kb, n) = match b {
        Rhs::View(v) => (v.rows, v.cols),
        Rhs::Packed(p) => (p.k, p.n),
    };
    if ka != kb {
        return Err(Error::ShapeMismatch(format!(
            "sgemm: A is {m}x{ka} but B is {kb}x{n}"
        )));
    }
    let k = ka;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let need = (m - 1).checked_mul(ldc).and_then(|x| x.checked_add(n));
    if ldc < n || need.is_none_or(|need| c.len() < need) {
        return Err(Error::ShapeMismatch(format!(
            "sgemm: output buffer of {} elements with ldc {ldc} cannot hold {m}x{n}",
            c.len()
        )));
    }
    for packed_isa in [
        if let Lhs::Packed(p) = a {
            Some(p.isa)
        } else {
            None
        },
        if let Rhs::Packed(p) = b {
            Some(p.isa)
        } else {
            None
        },
    ]
    .into_iter()
    .flatten()
    {
        if !std::ptr::eq(kernel_set(packed_isa), kernel_set(isa)) {
            return Err(Error::InvalidInput(format!(
                "sgemm: operand packed for {} used with {} kernels",
                packed_isa.name(),
                isa.name()
            )));
        }
    }
    if k == 0 || alpha == 0.0 {
        scale_c(c, m, n, ldc, beta);
        return Ok(());
    }
    let ks = match a {
        Lhs::Packed(p) => p.ks,
        Lhs::View(_) => kernel_set_rows(isa, m),
    };
    let mut scratch = take_scratch();
    let [sa, sb] = &mut scratch;
    if m == 1 {
        let row_owned;
        let row: &[f32] = match a {
            Lhs::View(v) if v.cs == 1 => &v.data[..k],
            Lhs::View(v) => {
                row_owned = (0..k).map(|kk| v.at(0, kk)).collect::<Vec<_>>();
                &row_owned
            }
            Lhs::Packed(p) => {
                // Panel layout with MR rows: row 0 is every MR-th element.
                row_owned = unpack_row0(p, ks);
                &row_owned
            }
        };
        let mut packed = true;
        let gb = match b {
            Rhs::Packed(p) => GemvB::Packed(p.data.as_slice()),
            Rhs::View(v) if v.cs == 1 => GemvB::Rows(v.data, v.rs),
            Rhs::View(v) => {
                let pb = grow(sb, n.div_ceil(ks.nr) * ks.nr * k);
                packed = pack_b_into(&v, ks, pb, stop);
                GemvB::Packed(pb)
            }
        };
        let done = packed && gemv(ks, n, k, alpha, row, gb, beta, &mut c[..n], stop);
        put_scratch(scratch);
        return done.then_some(()).ok_or_else(|| stopped_in(stop, m, k, n));
    }
    // Packing a large operand takes a while too: it is polled (per k-block) and a
    // stopped packing skips the rest.
    let mut packed = true;
    let pb: &[f32] = match b {
        Rhs::Packed(p) => p.data.as_slice(),
        Rhs::View(v) => {
            let pb = grow(sb, n.div_ceil(ks.nr) * ks.nr * k);
            packed = pack_b_into(&v, ks, pb, stop);
            pb
        }
    };
    let pa: &[f32] = match a {
        Lhs::Packed(p) => p.data.as_slice(),
        Lhs::View(v) => {
            let pa = grow(sa, m.div_ceil(ks.mr) * ks.mr * k);
            packed = packed && pack_a_into(&v, ks, pa, stop);
            pa
        }
    };
    let done = packed && gemm_tiles(ks, m, n, k, alpha, pa, pb, beta, c, ldc, stop);
    put_scratch(scratch);
    done.then_some(()).ok_or_else(|| stopped_in(stop, m, k, n))
}

/// The error of a product stopped by its run (the operator's step adds the node).
fn stopped_in(stop: &Stop, m: usize, k: usize, n: usize) -> Error {
    stop.error(&|| format!("a {m}x{k} by {k}x{n} matrix product"))
}

fn scale_c(c: &mut [f32], m: usize, n: usize, ldc: usize, beta: f32) {
    for i in 0..m {
        let row = &mut c[i * ldc..i * ldc + n];
        if beta == 0.0 {
            row.fill(0.0);
        } else if beta != 1.0 {
            row.iter_mut().for_each(|x| *x *= beta);
        }
    }
}

fn unpack_row0(p: &PackedA, ks: &KernelSet) -> Vec<f32> {
    let m_pad = p.m.div_ceil(ks.mr) * ks.mr;
    let mut row = Vec::with_capacity(p.k);
    for k0 in (0..p.k).step_by(ks.kc) {
        let kcur = ks.kc.min(p.k - k0);
        let base = k0 * m_pad;
        row.extend((0..kcur).map(|kk| p.data.as_slice()[base + kk * ks.mr]));
    }
    row
}

/// Whether work may be split across threads: only on a worker of a rayon pool with more
/// than one thread. Called from outside any pool (e.g. a plan built with one thread), the
/// kernels and operators run on the calling thread instead of spilling into rayon's
/// global pool.
pub fn in_parallel_pool() -> bool {
    rayon::current_thread_index().is_some() && rayon::current_num_threads() > 1
}

/// Minimum items per rayon task: 1 inside a parallel pool, "never split" outside.
pub(crate) fn min_len() -> usize {
    if in_parallel_pool() { 1 } else { usize::MAX }
}

/// [`min_len`] for an operator pass over `elems` output elements: tiny passes stay on
/// one thread even inside a pool, where task hand-off would cost more than the work.
pub(crate) fn min_len_for(elems: usize) -> usize {
    if elems >= 1 << 14 {
        min_len()
    } else {
        usize::MAX
    }
}

/// How many threads the kernels may use here.
fn threads() -> usize {
    if in_parallel_pool() {
        rayon::current_num_threads()
    } else {
        1
    }
}

/// The `B` operand of the GEMV path.
#[derive(Clone, Copy)]
enum GemvB<'a> {
    /// Packed panels.
    Packed(&'a [f32]),
    /// Row-major with unit column stride and this row stride.
    Rows(&'a [f32], usize),
}

#[allow(clippy::too_many_arguments)]
fn gemv(
    ks: &KernelSet,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: GemvB<'_>,
    beta: f32,
    c: &mut [f32],
    stop: &Stop,
) -> bool {
    let nr = ks.nr;
    let n_pad = n.div_ceil(nr) * nr;
    let panels = n_pad / nr;
    let stopped = AtomicBool::new(false);
    let per_task = if threads() > 1 && n * k > 1 << 15 {
        panels.div_ceil(threads() * 4).max(1)
    } else {
        panels
    };
    c.par_chunks_mut(per_task * nr)
        .enumerate()
        .with_min_len(min_len())
        .for_each(|(t, cchunk)| {
            let mut acc = vec![0.0f32; nr];
            let mut meter = Meter::new(stop);
            for (pi, cpanel) in cchunk.chunks_mut(nr).enumerate() {
                if meter.tick((nr * k) as u64) {
                    stopped.store(true, Ordering::Relaxed);
                    return;
                }
                let panel = t * per_task + pi;
                let j0 = panel * nr;
                acc.fill(0.0);
                match b {
                    GemvB::Packed(pb) => {
                        for k0 in (0..k).step_by(ks.kc) {
                            let kcur = ks.kc.min(k - k0);
                            let off = k0 * n_pad + panel * nr * kcur;
                            let bp = &pb[off..off + nr * kcur];
                            let ap = &a[k0..k0 + kcur];
                            // SAFETY: `ap` holds `kcur` floats, `bp` holds `kcur` rows of `nr`
                            // floats at stride `nr`, and `acc` holds `nr`, which is what the
                            // kernel reads/writes; the kernel set matches the CPU (`kernel_set`).
                            unsafe {
                                (ks.gemv)(kcur, ap.as_ptr(), bp.as_ptr(), nr, acc.as_mut_ptr())
                            };
                        }
                    }
                    GemvB::Rows(data, rs) if cpanel.len() == nr => {
                        // Rows kk of columns j0..j0+nr: data[kk·rs + j0 ..][..nr].
                        let need = (k - 1) * rs + j0 + nr;
                        let bp = &data[j0..need];
                        // SAFETY: `bp` starts at column j0 and extends to the last element
                        // the kernel reads ((k-1)·rs + nr - 1 past its start); `a` holds k
                        // floats and `acc` holds nr; the kernel set matches the CPU.
                        unsafe { (ks.gemv)(k, a.as_ptr(), bp.as_ptr(), rs, acc.as_mut_ptr()) };
                    }
                    GemvB::Rows(data, rs) => {
                        for (kk, &av) in a.iter().enumerate() {
                            let row = &data[kk * rs + j0..][..cpanel.len()];
                            for (s, &bv) in acc.iter_mut().zip(row) {
                                *s += av * bv;
                            }
                        }
                    }
                }
                for (o, &s) in cpanel.iter_mut().zip(&acc) {
                    *o = if beta == 0.0 {
                        alpha * s
                    } else {
                        alpha * s + beta * *o
                    };
                }
            }
        });
    !stopped.into_inner()
}

/// Block sizes `(mc, nc)` for a parallel GEMM: starting from `(mc, nc)`, halves the
/// column (then row) blocks until there are a few tasks per thread, when the product is
/// large enough to be worth splitting.
fn split_blocks(
    ks: &KernelSet,
    m: usize,
    n: usize,
    k: usize,
    mut mc: usize,
    mut nc: usize,
    t: usize,
) -> (usize, usize) {
    let (mr, nr) = (ks.mr, ks.nr);
    let (m_pad, n_pad) = (m.div_ceil(mr) * mr, n.div_ceil(nr) * nr);
    if t > 1 && (m as u64) * (n as u64) * (k as u64) > 1 << 17 {
        while m_pad.div_ceil(mc) * n_pad.div_ceil(nc) < 3 * t {
            if nc > 4 * nr {
                nc = (nc / 2).div_ceil(nr) * nr;
            } else if mc > 2 * mr {
                mc = (mc / 2).div_ceil(mr) * mr;
            } else {
                break;
            }
        }
    }
    (mc, nc)
}

/// `C ← alpha·A·B + beta·C` on one `mm × nn` micro-tile (`mm ≤ mr`, `nn ≤ nr`; `beta = 0`
/// overwrites): the full-tile kernel, the ISA's masked edge kernel, or the full kernel
/// into a scratch tile that is then merged.
///
/// # Safety
/// Rows `0..mm`, columns `0..nn` from `c` (row stride `ldc`) must be valid for writes
/// and not accessed by anyone else during the call; `ap`/`bp` must hold `kcur·mr` /
/// `kcur·nr` floats packed for `ks`, whose kernels the CPU must support.
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn micro_tile(
    ks: &KernelSet,
    kcur: usize,
    ap: &[f32],
    bp: &[f32],
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
    mm: usize,
    nn: usize,
) {
    let nr = ks.nr;
    if mm == ks.mr && nn == nr {
        // SAFETY: the full mr×nr tile is writable (caller), operands as documented.
        unsafe { (ks.ukernel)(kcur, ap.as_ptr(), bp.as_ptr(), c, ldc, alpha, beta) };
    } else if let Some(edge) = ks.edge {
        // SAFETY: the edge kernel touches only rows 0..mm, columns 0..nn (caller).
        unsafe { edge(kcur, ap.as_ptr(), bp.as_ptr(), c, ldc, alpha, beta, mm, nn) };
    } else {
        let mut tmp = [0.0f32; 16 * 32];
        // SAFETY: `tmp` has room for an mr×nr tile (mr ≤ 16, nr ≤ 32) with row stride nr.
        unsafe {
            (ks.ukernel)(
                kcur,
                ap.as_ptr(),
                bp.as_ptr(),
                tmp.as_mut_ptr(),
                nr,
                1.0,
                0.0,
            )
        };
        for r in 0..mm {
            // SAFETY: row r, columns 0..nn are writable and ours alone (caller).
            let dst = unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc), nn) };
            for (d, &v) in dst.iter_mut().zip(&tmp[r * nr..r * nr + nn]) {
                let v = alpha * v;
                *d = if beta == 0.0 { v } else { v + beta * *d };
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn gemm_tiles(
    ks: &KernelSet,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    pa: &[f32],
    pb: &[f32],
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    stop: &Stop,
) -> bool {
    let (mr, nr) = (ks.mr, ks.nr);
    let m_pad = m.div_ceil(mr) * mr;
    let n_pad = n.div_ceil(nr) * nr;
    let (mc, nc) = split_blocks(ks, m, n, k, ks.mc.min(m_pad), ks.nc.min(n_pad), threads());
    let stopped = AtomicBool::new(false);
    let mb = m_pad.div_ceil(mc);
    let nb = n_pad.div_ceil(nc);
    let out = OutPtr(c.as_mut_ptr());
    let c_len = c.len();
    (0..mb * nb)
        .into_par_iter()
        .with_min_len(min_len())
        .for_each_init(
            || Meter::new(stop),
            |meter, tile| {
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
                let out = out.get();
                let (ti, tj) = (tile / nb, tile % nb);
                let (i0, j0) = (ti * mc, tj * nc);
                let i1 = (i0 + mc).min(m);
                let j1 = (j0 + nc).min(n);
                for k0 in (0..k).step_by(ks.kc) {
                    let kcur = ks.kc.min(k - k0);
                    let beta_k = if k0 == 0 { beta } else { 1.0 };
                    for j in (j0..j1).step_by(nr) {
                        // One column strip of the tile per poll of the run's stop.
                        if meter.tick(((i1 - i0) * nr * kcur) as u64) {
                            stopped.store(true, Ordering::Relaxed);
                            return;
                        }
                        let bp = &pb[k0 * n_pad + (j / nr) * nr * kcur..][..nr * kcur];
                        let nn = nr.min(j1 - j);
                        for i in (i0..i1).step_by(mr) {
                            let ap = &pa[k0 * m_pad + (i / mr) * mr * kcur..][..mr * kcur];
                            let mm = mr.min(i1 - i);
                            let off = i * ldc + j;
                            debug_assert!(off + (mm - 1) * ldc + nn <= c_len);
                            // SAFETY: rows i..i+mm, columns j..j+nn of `c` are in bounds
                            // (checked in `sgemm`: (m-1)·ldc + n ≤ len) and belong to this task
                            // only (tiles partition C); `ap`/`bp` hold kcur·mr / kcur·nr packed
                            // floats of the kernel set's layout.
                            unsafe {
                                micro_tile(
                                    ks,
                                    kcur,
                                    ap,
                                    bp,
                                    out.add(off),
                                    ldc,
                                    alpha,
                                    beta_k,
                                    mm,
                                    nn,
                                )
                            };
                        }
                    }
                }
            },
        );
    !stopped.into_inner()
}

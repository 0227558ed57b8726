//! A GEMM driver for convolutions: `C = A·B` where `B` is never materialised.
//!
//! [`sgemm_packed_b`] asks a [`PackB`] source to write each `kc × nc` block of `B`
//! straight into the micro-kernel's panel layout (so an im2col matrix is built in
//! cache-sized pieces instead of as a whole buffer that is then repacked), and calls an
//! epilogue on every finished row segment of `C` while the tile is still in cache (bias,
//! residual add and activation of a fused convolution).
#![allow(unsafe_code)]

use super::{
    Isa, KernelSet, Lhs, OutPtr, grow, kernel_set, kernel_set_rows, micro_tile, min_len,
    pack_a_into, split_blocks, threads,
};
use crate::plan::budget::{COPY_UNITS, Meter, Stop};
use crate::{Error, Result};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// A right-hand operand `B` (`k × n`) that writes its own packed panels on demand.
pub trait PackB: Sync {
    /// Rows of `B` (the reduction depth).
    fn rows(&self) -> usize;

    /// Columns of `B`.
    fn cols(&self) -> usize;

    /// Writes rows `k0..k0 + kcur` and columns `j0..j0 + jn` of `B` into `out` as
    /// panels of `nr` columns: element `(k0 + kk, j0 + p·nr + q)` goes to
    /// `out[p·nr·kcur + kk·nr + q]`. `out.len()` is `jn.div_ceil(nr)·nr·kcur`; columns
    /// past `jn` in the last panel must be written as zeros (or any finite value: their
    /// results are discarded).
    fn pack(&self, k0: usize, kcur: usize, j0: usize, jn: usize, nr: usize, out: &mut [f32]);

    /// `B`'s rows as they already lie in memory, when they do: element `(k, j)` is
    /// `buf[offs[k] + j]` (one offset per row). The driver then reads them in place on
    /// ISAs with a kernel for it (AVX-512) instead of packing panels; the results are
    /// the same bits either way. The default, `None`, always packs.
    fn in_place_rows(&self) -> Option<(&[f32], &[usize])> {
        None
    }
}

/// `B` given as a row-major matrix with row stride `rs` (a 1×1 convolution's input).
#[derive(Debug, Clone, Copy)]
pub struct RowsB<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
}

impl<'a> RowsB<'a> {
    /// A view of `rows × cols` elements `data[r·rs + c]`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the view does not fit in `data` or `rs < cols`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, rs: usize) -> Result<Self> {
        let need = if rows == 0 || cols == 0 {
            Some(0)
        } else {
            (rows - 1).checked_mul(rs).and_then(|x| x.checked_add(cols))
        };
        if rs < cols || need.is_none_or(|n| n > data.len()) {
            return Err(Error::ShapeMismatch(format!(
                "row view {rows}x{cols} with stride {rs} exceeds buffer of {} elements",
                data.len()
            )));
        }
        Ok(Self {
            data,
            rows,
            cols,
            rs,
        })
    }
}

impl PackB for RowsB<'_> {
    fn rows(&self) -> usize {
        self.rows
    }

    fn cols(&self) -> usize {
        self.cols
    }

    fn pack(&self, k0: usize, kcur: usize, j0: usize, jn: usize, nr: usize, out: &mut [f32]) {
        for (p, panel) in out.chunks_exact_mut(nr * kcur).enumerate() {
            let c0 = j0 + p * nr;
            let w = nr.min(j0 + jn - c0);
            for (kk, dst) in panel.chunks_exact_mut(nr).enumerate() {
                let src = &self.data[(k0 + kk) * self.rs + c0..][..w];
                dst[..w].copy_from_slice(src);
                dst[w..].fill(0.0);
            }
        }
    }
}

/// A column remap of `C`: the GEMM computes `n` logical columns laid out as rows of
/// `pitch`, of which only the first `width` of each are kept. Logical column `j` is
/// stored at physical column `(j / pitch)·width + j % pitch` when `j % pitch < width`
/// and dropped otherwise (a convolution computed on a padded-width grid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColMap {
    /// Logical columns per grid row (`≥ width`, `> 0`).
    pub pitch: usize,
    /// Columns kept per grid row.
    pub width: usize,
}

impl ColMap {
    /// Physical columns for `n` logical ones.
    pub(super) fn physical(&self, n: usize) -> usize {
        (n / self.pitch) * self.width + (n % self.pitch).min(self.width)
    }
}

/// The common convolution epilogue as data, applied by the driver with the ISA's own
/// vector code: `v = clamp(v + bias[row], lo, hi)`, where the clamp is written as
/// `if v < lo { lo } else if v > hi { hi } else { v }` so NaN propagates (`Relu` is
/// `lo = 0, hi = ∞`; no activation is `lo = -∞, hi = ∞`).
#[derive(Debug, Clone, Copy)]
pub struct BiasClamp<'a> {
    /// Per-row bias (length ≥ rows of `C`), or none.
    pub bias: Option<&'a [f32]>,
    /// Lower clamp.
    pub lo: f32,
    /// Upper clamp.
    pub hi: f32,
}

impl<'a> From<BiasClamp<'a>> for BiasAct<'a> {
    fn from(bc: BiasClamp<'a>) -> Self {
        BiasAct {
            bias: bc.bias,
            z: None,
            act: VecAct::Clamp(bc.lo, bc.hi),
        }
    }
}

/// The activation of a [`BiasAct`] epilogue; each is computed exactly as the
/// standalone operator computes it (the same scalar twin, so fusing changes no bit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum VecAct {
    /// `if v < lo { lo } else if v > hi { hi } else { v }` (NaN propagates; `Relu` is
    /// `lo = 0, hi = ∞`, none is `±∞`).
    Clamp(f32, f32),
    /// `v` if `v ≥ 0`, else `alpha·v`.
    LeakyRelu(f32),
    /// [`super::vmath::hard_sigmoid`].
    HardSigmoid(f32, f32),
    /// [`super::vmath::sigmoid`].
    Sigmoid,
    /// [`super::vmath::tanh`].
    Tanh,
    /// [`super::vmath::silu`].
    Silu,
    /// [`super::vmath::hardswish`].
    HardSwish,
}

/// The bias, `Z` and activation of a finished row segment, applied by the driver in one
/// pass with the ISA's own vector code: `v = act((v + bias[row]) + z[row][col])`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BiasAct<'a> {
    /// Per-row bias (length ≥ rows of `C`), or none (nothing is added).
    pub bias: Option<&'a [f32]>,
    /// A matrix added after the bias (ONNX `FusedConv`'s `Z`), row-major with row
    /// stride `.1`, indexed like `C`'s physical columns, or none.
    pub z: Option<(&'a [f32], usize)>,
    /// The activation.
    pub act: VecAct,
}

/// `dst[q] = act((src[q] + b) + z[q])` (`src` = `dst` itself when `None`; without `b`
/// or `z` nothing is added for it, so a bias-free product keeps its `-0.0`s, as the
/// unfused operators do). `z` is at least as long as `dst`.
#[inline(always)]
fn bias_act_body(
    dst: &mut [f32],
    src: Option<&[f32]>,
    b: Option<f32>,
    z: Option<&[f32]>,
    act: VecAct,
) {
    // Each combination its own loop (no per-element branch). Plain `for` loops, not
    // `for_each`: a closure-taking adaptor left out of line is compiled without this
    // function's ISA, and `mul_add` (in `exp`) then calls `fmaf`.
    macro_rules! arms {
        ($f:expr) => {{
            let f = $f;
            match (src, b, z) {
                (Some(s), Some(b), Some(z)) => {
                    for ((d, &x), &z) in dst.iter_mut().zip(s).zip(z) {
                        *d = f((x + b) + z);
                    }
                }
                (Some(s), Some(b), None) => {
                    for (d, &x) in dst.iter_mut().zip(s) {
                        *d = f(x + b);
                    }
                }
                (Some(s), None, Some(z)) => {
                    for ((d, &x), &z) in dst.iter_mut().zip(s).zip(z) {
                        *d = f(x + z);
                    }
                }
                (Some(s), None, None) => {
                    for (d, &x) in dst.iter_mut().zip(s) {
                        *d = f(x);
                    }
                }
                (None, Some(b), Some(z)) => {
                    for (d, &z) in dst.iter_mut().zip(z) {
                        *d = f((*d + b) + z);
                    }
                }
                (None, Some(b), None) => {
                    for d in dst.iter_mut() {
                        *d = f(*d + b);
                    }
                }
                (None, None, Some(z)) => {
                    for (d, &z) in dst.iter_mut().zip(z) {
                        *d = f(*d + z);
                    }
                }
                (None, None, None) => {
                    for d in dst.iter_mut() {
                        *d = f(*d);
                    }
                }
            }
        }};
    }
    use super::vmath;
    match act {
        VecAct::Clamp(lo, hi) => arms!(|x: f32| {
            let y = if x < lo { lo } else { x };
            if y > hi { hi } else { y }
        }),
        VecAct::LeakyRelu(a) => arms!(|x: f32| if x >= 0.0 { x } else { a * x }),
        VecAct::HardSigmoid(a, c) => arms!(|x: f32| vmath::hard_sigmoid(x, a, c)),
        VecAct::Sigmoid => arms!(vmath::sigmoid),
        VecAct::Tanh => arms!(vmath::tanh),
        VecAct::Silu => arms!(vmath::silu),
        VecAct::HardSwish => arms!(vmath::hardswish),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn bias_act_avx512(d: &mut [f32], s: Option<&[f32]>, b: Option<f32>, z: Option<&[f32]>, a: VecAct) {
    bias_act_body(d, s, b, z, a)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn bias_act_avx2(d: &mut [f32], s: Option<&[f32]>, b: Option<f32>, z: Option<&[f32]>, a: VecAct) {
    bias_act_body(d, s, b, z, a)
}

/// [`bias_act_body`] compiled for `isa` (which the CPU must support).
fn bias_act(
    isa: Isa,
    d: &mut [f32],
    s: Option<&[f32]>,
    b: Option<f32>,
    z: Option<&[f32]>,
    a: VecAct,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` is available (checked by the driver's entry point); the body is
        // safe, bounds-checked Rust.
        Isa::Avx512 => unsafe { bias_act_avx512(d, s, b, z, a) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for AVX2 + FMA.
        Isa::Avx2 => unsafe { bias_act_avx2(d, s, b, z, a) },
        _ => bias_act_body(d, s, b, z, a),
    }
}

/// `act` applied in place over `v` on the float kernels' ISA: the arithmetic of the
/// [`BiasAct`] epilogue, for the paths that finish outside the GEMM driver.
pub(crate) fn apply_act(v: &mut [f32], act: VecAct) {
    bias_act(super::best_isa(), v, None, None, None, act);
}

/// An epilogue: called once per finished row segment of `C` as
/// `epi(row, first_column, values)`, and may rewrite the values in place.
pub type Epilogue<'a> = &'a (dyn Fn(usize, usize, &mut [f32]) + Sync);

/// What happens to a finished row segment of `C`.
struct Post<'a> {
    isa: Isa,
    epi: Option<Epilogue<'a>>,
    bc: Option<BiasAct<'a>>,
}

impl Post<'_> {
    fn any(&self) -> bool {
        self.epi.is_some() || self.bc.is_some()
    }

    /// Finishes `row[..]` = row `i` from column `j`: copied from `src` when given, then
    /// the bias/clamp, then the epilogue.
    fn row(&self, i: usize, j: usize, row: &mut [f32], src: Option<&[f32]>) {
        match self.bc {
            Some(bc) => {
                let z = bc.z.map(|(z, ld)| &z[i * ld + j..][..row.len()]);
                bias_act(self.isa, row, src, bc.bias.map(|bv| bv[i]), z, bc.act);
            }
            None => {
                if let Some(src) = src {
                    row.copy_from_slice(src);
                }
            }
        }
        if let Some(epi) = self.epi {
            epi(i, j, row);
        }
    }
}

thread_local! {
    /// Per-thread buffer for the packed `B` block of one tile.
    static BBUF: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    /// Per-thread scratch tile of `C` for a remapped output.
    static CBUF: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    /// Per-thread buffer for `A` packed on the fly.
    static ABUF: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// `C = A·B` (`C` row-major `m × n`, row stride `ldc`; overwritten, never read), with
/// `B` packed block by block by `b`, then `epi` applied to every row segment of `C`.
///
/// Each row segment is passed to `epi` exactly once, after its final value is stored
/// and before the thread moves on to another tile, so the data is still in cache.
///
/// # Errors
/// [`Error::ShapeMismatch`] when the inner dimensions disagree or `c` is too small;
/// [`Error::InvalidInput`] when a packed `A` was packed for another ISA.
pub fn sgemm_packed_b(
    isa: Isa,
    a: Lhs<'_>,
    b: &dyn PackB,
    c: &mut [f32],
    ldc: usize,
    epi: Option<Epilogue<'_>>,
) -> Result<()> {
    sgemm_packed_b_mapped(isa, a, b, c, ldc, epi, None, None)
}

/// [`sgemm_packed_b`] with the columns of `C` remapped by `map` (`C`, row stride `ldc`,
/// then holds the physical columns only, and the epilogue sees physical coordinates)
/// and an optional [`BiasClamp`] applied to each row segment before `epi`.
///
/// # Errors
/// As [`sgemm_packed_b`]; [`Error::InvalidInput`] for a map with `pitch == 0` or
/// `width > pitch`; [`Error::ShapeMismatch`] for a bias shorter than the rows of `A`.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_packed_b_mapped(
    isa: Isa,
    a: Lhs<'_>,
    b: &dyn PackB,
    c: &mut [f32],
    ldc: usize,
    epi: Option<Epilogue<'_>>,
    map: Option<ColMap>,
    bc: Option<BiasClamp<'_>>,
) -> Result<()> {
    sgemm_packed_b_until(
        isa,
        a,
        b,
        c,
        ldc,
        epi,
        map,
        bc.map(BiasAct::from),
        &Stop::default(),
    )
}

/// [`sgemm_packed_b_mapped`] within a run: polls `stop` once per block of work and,
/// when the run was cancelled or its deadline passed, returns the run's typed error
/// with `C` partly computed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_packed_b_until(
    isa: Isa,
    a: Lhs<'_>,
    b: &dyn PackB,
    c: &mut [f32],
    ldc: usize,
    epi: Option<Epilogue<'_>>,
    map: Option<ColMap>,
    bc: Option<BiasAct<'_>>,
    stop: &Stop,
) -> Result<()> {
    if let Some(cm) = map
        && (cm.pitch == 0 || cm.width > cm.pitch)
    {
        return Err(Error::InvalidInput(format!(
            "sgemm: column map {cm:?} needs 0 < width <= pitch"
        )));
    }
    let isa = if isa.is_available() { isa } else { Isa::Scalar };
    let (m, k) = match a {
        Lhs::View(v) => (v.rows, v.cols),
        Lhs::Packed(p) => (p.m, p.k),
    };
    let n_log = b.cols();
    let n = map.map_or(n_log, |cm| cm.physical(n_log));
    if b.rows() != k {
        return Err(Error::ShapeMismatch(format!(
            "sgemm: A is {m}x{k} but B is {}x{n_log}",
            b.rows()
        )));
    }
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
    if let Lhs::Packed(p) = a
        && !std::ptr::eq(kernel_set(p.isa), kernel_set(isa))
    {
        return Err(Error::InvalidInput(format!(
            "sgemm: operand packed for {} used with {} kernels",
            p.isa.name(),
            isa.name()
        )));
    }
    let ks = match a {
        Lhs::Packed(p) => p.ks,
        Lhs::View(_) => kernel_set_rows(isa, m),
    };
    if let Some(BiasAct { bias: Some(bv), .. }) = bc
        && bv.len() < m
    {
        return Err(Error::ShapeMismatch(format!(
            "sgemm: bias of {} values for {m} rows",
            bv.len()
        )));
    }
    let post = Post { isa, epi, bc };
    if k == 0 {
        for i in 0..m {
            let row = &mut c[i * ldc..i * ldc + n];
            row.fill(0.0);
            post.row(i, 0, row, None);
        }
        return Ok(());
    }
    let mut abuf = ABUF.with(|s| s.take());
    let mut packed = true;
    let pa: &[f32] = match a {
        Lhs::Packed(p) => p.data.as_slice(),
        Lhs::View(v) => {
            let pa = grow(&mut abuf, m.div_ceil(ks.mr) * ks.mr * k);
            packed = pack_a_into(&v, ks, pa, stop);
            pa
        }
    };
    let done = packed && tiles(ks, m, n_log, k, pa, b, c, ldc, &post, map, stop);
    ABUF.with(|s| s.set(abuf));
    if done {
        Ok(())
    } else {
        Err(stop.error(&|| format!("a {m}x{k} by {k}x{n_log} matrix product")))
    }
}

#[allow(clippy::too_many_arguments)]
fn tiles(
    ks: &KernelSet,
    m: usize,
    n: usize,
    k: usize,
    pa: &[f32],
    b: &dyn PackB,
    c: &mut [f32],
    ldc: usize,
    post: &Post<'_>,
    map: Option<ColMap>,
    stop: &Stop,
) -> bool {
    let (mr, nr) = (ks.mr, ks.nr);
    let m_pad = m.div_ceil(mr) * mr;
    let n_pad = n.div_ceil(nr) * nr;
    // With a single k-block, a task owns all rows of a column block (unless threads need
    // more tasks), so a B block is packed once and reused by every MC-row block of A.
    // With several k-blocks the C tile is re-read per block, so it is kept MC rows high
    // (cache-sized) and B is packed once per row block instead.
    // (B is then packed whole up front, once, into `pre`.) A remapped C is computed
    // into a per-thread scratch tile, also kept MC rows high.
    let multi = k > ks.kc;
    let t = threads();
    // B read in place: the ISA's kernel for it, and rows that hold every column read.
    let direct = ks.rows.zip(b.in_place_rows()).filter(|(_, (buf, offs))| {
        offs.len() == k
            && offs
                .iter()
                .max()
                .and_then(|&o| o.checked_add(n))
                .is_some_and(|end| end <= buf.len())
    });
    let mc0 = if multi || map.is_some() {
        ks.mc.min(m_pad)
    } else {
        m_pad
    };
    let (mc, nc) = split_blocks(ks, m, n, k, mc0, ks.nc.min(n_pad), t);
    let mb = m_pad.div_ceil(mc);
    let nb = n_pad.div_ceil(nc);
    // B is packed whole, once, when several row blocks would each pack it again
    // (threads splitting a single-block product, or a remapped C kept MC rows high).
    let prepack = direct.is_none() && (multi || mb > 1);
    let mut pre_buf = Vec::new();
    if prepack {
        pre_buf = BBUF.with(|s| s.take());
        let all = grow(&mut pre_buf, n_pad * k);
        // Packing B (e.g. im2col) is a fair share of a convolution: split it into
        // column chunks (whole `nr` panels) so every thread packs a part.
        let cw = if t > 1 {
            (n_pad.div_ceil(4 * t)).div_ceil(nr).max(1) * nr
        } else {
            n_pad
        };
        let mut jobs: Vec<(usize, usize, usize, &mut [f32])> = Vec::new();
        let mut rest: &mut [f32] = &mut all[..n_pad * k];
        for k0 in (0..k).step_by(ks.kc) {
            let kcur = ks.kc.min(k - k0);
            for j0 in (0..n_pad).step_by(cw) {
                let w = cw.min(n_pad - j0);
                let (head, tail) = std::mem::take(&mut rest).split_at_mut(w * kcur);
                rest = tail;
                if j0 < n {
                    jobs.push((k0, kcur, j0, head));
                }
            }
        }
        // Packing is polled too: a huge im2col takes a while before the first tile.
        let stopped = AtomicBool::new(false);
        jobs.into_par_iter().with_min_len(min_len()).for_each_init(
            || Meter::new(stop),
            |meter, (k0, kcur, j0, dst)| {
                if stopped.load(Ordering::Relaxed) || meter.tick(dst.len() as u64 * COPY_UNITS) {
                    stopped.store(true, Ordering::Relaxed);
                    return;
                }
                let jn = (dst.len() / kcur).min(n - j0);
                b.pack(k0, kcur, j0, jn, nr, dst);
            },
        );
        if stopped.into_inner() {
            BBUF.with(|s| s.set(pre_buf));
            return false;
        }
    }
    let pre: Option<&[f32]> = if prepack {
        Some(super::aligned(&pre_buf, n_pad * k))
    } else {
        None
    };
    let out = OutPtr(c.as_mut_ptr());
    let c_len = c.len();
    let stopped = AtomicBool::new(false);
    (0..mb * nb)
        .into_par_iter()
        .with_min_len(min_len())
        .for_each_init(
            || Meter::new(stop),
            |meter, tile| {
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
                let (tj, ti) = (tile / mb, tile % mb);
                let (i0, j0) = (ti * mc, tj * nc);
                let i1 = (i0 + mc).min(m);
                let j1 = (j0 + nc).min(n);
                let jn = j1 - j0;
                let jn_pad = jn.div_ceil(nr) * nr;
                let mut bbuf = BBUF.with(|s| s.take());
                let mut cbuf = CBUF.with(|s| s.take());
                // Where this tile's micro-kernels write: C itself, or the scratch tile
                // (row stride `jn_pad`, origin (i0, j0)).
                let (tout, tld, ti0, tj0) = match map {
                    None => (out.get(), ldc, 0, 0),
                    Some(_) => (
                        grow(&mut cbuf, (i1 - i0) * jn_pad).as_mut_ptr(),
                        jn_pad,
                        i0,
                        j0,
                    ),
                };
                for k0 in (0..k).step_by(ks.kc) {
                    let kcur = ks.kc.min(k - k0);
                    let pb: &[f32] = match pre {
                        Some(all) => &all[k0 * n_pad + j0 * kcur..][..jn_pad * kcur],
                        None if direct.is_some() => &[],
                        None => {
                            let pb = grow(&mut bbuf, jn_pad * kcur);
                            b.pack(k0, kcur, j0, jn, nr, pb);
                            pb
                        }
                    };
                    let beta = if k0 == 0 { 0.0 } else { 1.0 };
                    for ib in (i0..i1).step_by(ks.mc) {
                        let ib1 = (ib + ks.mc).min(i1);
                        for j in (j0..j1).step_by(nr) {
                            // One column strip per poll of the run's stop; the scratch
                            // buffers go back to this thread's slots.
                            if meter.tick(((ib1 - ib) * nr * kcur) as u64) {
                                stopped.store(true, Ordering::Relaxed);
                                BBUF.with(|s| s.set(std::mem::take(&mut bbuf)));
                                CBUF.with(|s| s.set(std::mem::take(&mut cbuf)));
                                return;
                            }
                            let nn = nr.min(j1 - j);
                            // The strip of B: a packed panel, or rows read in place.
                            let bp: &[f32] = match direct {
                                Some(_) => &[],
                                None => &pb[(j - j0) * kcur..][..nr * kcur],
                            };
                            for i in (ib..ib1).step_by(mr) {
                                let ap = &pa[k0 * m_pad + (i / mr) * mr * kcur..][..mr * kcur];
                                let mm = mr.min(ib1 - i);
                                let off = (i - ti0) * tld + (j - tj0);
                                debug_assert!(map.is_some() || off + (mm - 1) * ldc + nn <= c_len);
                                // SAFETY: rows i..i+mm, columns j..j+nn of the target are in
                                // bounds (C: checked by the caller, (m-1)·ldc + n ≤ len; the
                                // scratch tile: (i1-i0) rows of jn_pad) and belong to this task
                                // only (tiles partition C); `ap` holds kcur·mr packed floats;
                                // `bp` kcur·nr packed floats of the kernel set's layout, or B's
                                // rows are read in place at buf[offs[kk] + j + q] for
                                // q < nn ≤ n - j, within `buf` (`direct` checked
                                // max(offs) + n ≤ buf.len()); the kernel set is the CPU's.
                                unsafe {
                                    match direct {
                                        Some((rk, (buf, offs))) => rk(
                                            kcur,
                                            ap.as_ptr(),
                                            buf.as_ptr().add(j),
                                            offs[k0..k0 + kcur].as_ptr(),
                                            tout.add(off),
                                            tld,
                                            1.0,
                                            beta,
                                            mm,
                                            nn,
                                        ),
                                        None => micro_tile(
                                            ks,
                                            kcur,
                                            ap,
                                            bp,
                                            tout.add(off),
                                            tld,
                                            1.0,
                                            beta,
                                            mm,
                                            nn,
                                        ),
                                    }
                                };
                            }
                        }
                    }
                }
                BBUF.with(|s| s.set(bbuf));
                match map {
                    None => {
                        if post.any() {
                            for i in i0..i1 {
                                // SAFETY: row i, columns j0..j1 belong to this task's tile of C
                                // and are in bounds ((m-1)·ldc + n ≤ len); no other reference
                                // to them exists.
                                let row = unsafe {
                                    std::slice::from_raw_parts_mut(out.get().add(i * ldc + j0), jn)
                                };
                                post.row(i, j0, row, None);
                            }
                        }
                    }
                    Some(cm) => {
                        for i in i0..i1 {
                            let src = &super::aligned(&cbuf, (i1 - i0) * jn_pad)
                                [(i - i0) * jn_pad..][..jn];
                            let mut j = j0;
                            while j < j1 {
                                let (gr, gc) = (j / cm.pitch, j % cm.pitch);
                                let len = (cm.pitch - gc).min(j1 - j);
                                if gc < cm.width {
                                    let keep = (cm.width - gc).min(len);
                                    let pc = gr * cm.width + gc;
                                    debug_assert!(i * ldc + pc + keep <= c_len);
                                    // SAFETY: physical columns pc..pc+keep of row i are the
                                    // images of logical columns j..j+keep, which lie in this
                                    // task's tile; the map is injective, so no other task
                                    // writes them; (m-1)·ldc + physical n ≤ len (caller).
                                    let row = unsafe {
                                        std::slice::from_raw_parts_mut(
                                            out.get().add(i * ldc + pc),
                                            keep,
                                        )
                                    };
                                    post.row(i, pc, row, Some(&src[j - j0..j - j0 + keep]));
                                }
                                j += len;
                            }
                        }
                    }
                }
                CBUF.with(|s| s.set(cbuf));
            },
        );
    if prepack {
        BBUF.with(|s| s.set(pre_buf));
    }
    !stopped.into_inner()
}

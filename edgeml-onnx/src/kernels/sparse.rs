//! Dense × sparse products for pruned constant weights: `C = alpha·A·B + beta·C` with
//! `A` a dense strided view and `B` a [`SparseB`] (compressed sparse columns, built once
//! at plan time).
//!
//! `A` is copied, 16 rows at a time, into a `k × R` block (row `kk` holds `A[i..i+R, kk]`
//! side by side); each output column `j` then accumulates `w·A[i..i+R, kk]` over the
//! non-zeros `(kk, w)` of `B`'s column `j`, `R` lanes wide, in four interleaved
//! accumulators. A remainder of fewer than 16 rows uses the next power of two for `R`
//! (so a single row, `M = 1`, runs one lane). The portable body is compiled once per
//! ISA with the matching target features (AVX-512F, AVX2+FMA; NEON is aarch64's
//! baseline), so the lane loops are vectorised by the compiler. Columns are split into
//! chunks run with rayon inside a pool with more than one thread (as [`super::sgemm`]).
//!
//! [`spmm_packed_b`] is the same product the other way round, for convolutions:
//! `C = A·B` with the sparse constant on the left (the filters, `A`, stored by rows as
//! the [`SparseB`] of `Aᵀ`) and `B` an im2col matrix that a [`PackB`] source writes in
//! panels of 16 columns. Each such panel already is the `k × 16` block the loop above
//! reads, so the same per-ISA body computes every filter's 16 outputs from it; the
//! output columns are split into tasks of [`TASK_COLS`] run with rayon.
//!
//! Whether a layer should use this kernel at all is [`prefer_sparse`]'s decision.
//!
//! # Numerics
//! Products are accumulated in `f32`, in four partial sums per element (with FMA on SIMD
//! paths), so results differ from [`super::sgemm`] by rounding only. Zeros of `B` are
//! not stored, hence not multiplied: a NaN or infinity of `A` that meets only zero
//! weights leaves the output finite, where a dense product would give NaN. `beta == 0`
//! means "overwrite" (`C` is not read), as in [`super::sgemm`].
#![allow(unsafe_code)]

use super::{
    ColMap, Epilogue, Isa, MatRef, PackB, grow, in_parallel_pool, put_scratch, scale_c,
    take_scratch,
};
use crate::plan::budget::{COPY_UNITS, Meter, Stop};
use crate::{Error, Result};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// `Ok` when `c`, with row stride `ldc`, holds an `m × n` block (`m, n > 0`).
fn check_c(c: &[f32], m: usize, n: usize, ldc: usize) -> Result<()> {
    let need = (m - 1).checked_mul(ldc).and_then(|x| x.checked_add(n));
    if ldc < n || need.is_none_or(|need| c.len() < need) {
        return Err(Error::ShapeMismatch(format!(
            "spmm: output buffer of {} elements with ldc {ldc} cannot hold {m}x{n}",
            c.len()
        )));
    }
    Ok(())
}

/// Rows of `A` per block (the lane count of the widest accumulator).
const BLOCK_ROWS: usize = 16;
/// Output columns per task (a rayon job in a parallel pool) and per stop poll.
const COLS_PER_TASK: usize = 32;
/// Columns of `B` per task of [`spmm_packed_b`] (four panels of [`BLOCK_ROWS`]): packed
/// in one call, so that an im2col source pays its per-row set-up once per 64 columns.
pub(crate) const TASK_COLS: usize = 4 * BLOCK_ROWS;
/// The panel width [`spmm_packed_b`] asks its `B` source for (a source that over-reads
/// past the last column must allow for this many).
pub(crate) const PANEL: usize = BLOCK_ROWS;

/// A constant right operand `B` (`k × n`) in compressed sparse column form: for each
/// column, the row indices and values of its non-zero entries, rows ascending.
#[derive(Debug, Clone)]
pub struct SparseB {
    k: usize,
    n: usize,
    /// Column `j`'s entries are `row_idx[col_ptr[j]..col_ptr[j + 1]]` (and `vals`).
    col_ptr: Vec<usize>,
    row_idx: Vec<u32>,
    vals: Vec<f32>,
}

impl SparseB {
    /// Compresses `b`, keeping the entries that are not `±0.0` (NaN is kept).
    ///
    /// # Errors
    /// [`Error::Unsupported`] when `b` has more than `u32::MAX` rows.
    pub fn from_dense(b: MatRef<'_>) -> Result<Self> {
        if u32::try_from(b.rows).is_err() {
            return Err(Error::Unsupported(format!(
                "sparse weights with {} rows (at most {})",
                b.rows,
                u32::MAX
            )));
        }
        let mut col_ptr = Vec::with_capacity(b.cols + 1);
        let mut row_idx = Vec::new();
        let mut vals = Vec::new();
        col_ptr.push(0);
        for j in 0..b.cols {
            for kk in 0..b.rows {
                let w = b.at(kk, j);
                if w != 0.0 {
                    // In range: checked against u32::MAX above.
                    row_idx.push(kk as u32);
                    vals.push(w);
                }
            }
            col_ptr.push(vals.len());
        }
        Ok(Self {
            k: b.rows,
            n: b.cols,
            col_ptr,
            row_idx,
            vals,
        })
    }

    /// Rows of `B` (the reduction depth).
    pub fn rows(&self) -> usize {
        self.k
    }

    /// Columns of `B`.
    pub fn cols(&self) -> usize {
        self.n
    }

    /// Number of stored (non-zero) entries.
    pub fn nnz(&self) -> usize {
        self.vals.len()
    }
}

/// Whether a `k × n` constant weight with `zeros` zero entries should be multiplied by
/// the sparse kernel ([`spmm`]) rather than the packed dense SGEMM: the one place where
/// the runtime makes that choice ([`crate::SparseMode::Auto`]).
///
/// The rule: at least 80 % zeros. It comes from `cargo bench -p edgeml-benches --bench
/// sparse_gemm` on an AVX-512 Xeon at one thread (BENCHMARKS.md, "Sparse kernels"),
/// where the sparse kernel overtakes the dense one at 67–77 % zeros for `M = 64` rows
/// and for a 1024 × 1024 weight at `M = 1`, and at 86–94 % for weights small enough
/// for the dense GEMV to run from cache (512 × 512 and the digits MLP's 64 × 32 at
/// `M = 1`). The number of rows is not known at plan time, so the threshold sits
/// between the two.
pub fn prefer_sparse(k: usize, n: usize, zeros: usize) -> bool {
    let total = k.saturating_mul(n);
    total > 0 && zeros as f64 >= 0.8 * total as f64
}

/// `C = alpha·A·B + beta·C`, `C` row-major `m × n` with row stride `ldc`, on `isa`
/// (an unavailable ISA falls back to the portable code).
///
/// # Errors
/// [`Error::ShapeMismatch`] when the inner dimensions disagree or `c` is too small.
pub fn spmm(
    isa: Isa,
    alpha: f32,
    a: MatRef<'_>,
    b: &SparseB,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) -> Result<()> {
    spmm_until(isa, alpha, a, b, beta, c, ldc, &Stop::default())
}

/// [`spmm`] within a run: polls `stop` once per task and, when the run was cancelled or
/// its deadline passed, returns the run's typed error with `C` partly computed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spmm_until(
    isa: Isa,
    alpha: f32,
    a: MatRef<'_>,
    b: &SparseB,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    stop: &Stop,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.n);
    if k != b.k {
        return Err(Error::ShapeMismatch(format!(
            "spmm: A is {m}x{k} but B is {}x{n}",
            b.k
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    check_c(c, m, n, ldc)?;
    if k == 0 || alpha == 0.0 || b.nnz() == 0 {
        scale_c(c, m, n, ldc, beta);
        return Ok(());
    }
    let stopped = AtomicBool::new(false);
    let mut scratch = take_scratch();
    let [xt, tile] = &mut scratch;
    let mut result = Ok(());
    for i0 in (0..m).step_by(BLOCK_ROWS) {
        let rows = BLOCK_ROWS.min(m - i0);
        let lanes = rows.next_power_of_two();
        let xt: &[f32] = if lanes == 1 && a.cs == 1 {
            // One row, stored contiguously: it is its own k × 1 block.
            &a.data[i0 * a.rs..][..k]
        } else {
            // A[i0..i0+rows, ..] transposed into k × lanes, padding lanes zero.
            let xt = grow(xt, k * lanes);
            if rows < lanes {
                xt.fill(0.0);
            }
            for (kk, dst) in xt.chunks_exact_mut(lanes).enumerate() {
                for (r, d) in dst[..rows].iter_mut().enumerate() {
                    *d = a.at(i0 + r, kk);
                }
            }
            xt
        };
        let tile = grow(tile, n * lanes);
        match lanes {
            1 => columns::<1>(isa, xt, b, tile, stop, &stopped),
            2 => columns::<2>(isa, xt, b, tile, stop, &stopped),
            4 => columns::<4>(isa, xt, b, tile, stop, &stopped),
            8 => columns::<8>(isa, xt, b, tile, stop, &stopped),
            _ => columns::<BLOCK_ROWS>(isa, xt, b, tile, stop, &stopped),
        }
        if stopped.load(Ordering::Relaxed) {
            result = Err(stop.error(&|| format!("a {m}x{k} by sparse {k}x{n} matrix product")));
            break;
        }
        let c = &mut c[i0 * ldc..];
        for (j, acc) in tile.chunks_exact(lanes).enumerate() {
            for (r, &t) in acc[..rows].iter().enumerate() {
                let o = &mut c[r * ldc + j];
                *o = if beta == 0.0 {
                    alpha * t
                } else {
                    alpha * t + beta * *o
                };
            }
        }
    }
    put_scratch(scratch);
    result
}

/// `C = A·B` for a sparse constant `A` (`m × k`, given as `a_t`, the [`SparseB`] of
/// `Aᵀ`: build it with `SparseB::from_dense(a.t())`) and a dense `B` (`k × n`) that
/// `b` packs on demand (a convolution's im2col matrix), on `isa`. `C` is row-major
/// `m × n` with row stride `ldc` (overwritten, never read); with `map`, `C` holds only
/// the physical columns and the logical columns `map` drops are computed and discarded
/// (as [`super::sgemm_packed_b_mapped`]). `epi(row, first_column, values)` is called
/// on each finished run of a row (physical coordinates), once per element.
///
/// # Numerics
/// As [`spmm`]: `f32` sums over the non-zeros of each row of `A` in four interleaved
/// partial sums, so results differ from the dense [`super::sgemm_packed_b`] by rounding,
/// and `B`'s non-finite values that meet only zero weights do not reach `C`. Each
/// element is computed by one task in a fixed order: results do not depend on the
/// number of threads.
///
/// # Errors
/// [`Error::ShapeMismatch`] when `a_t.rows() != b.rows()` or `c` cannot hold the
/// result; [`Error::InvalidInput`] for a map with `pitch == 0` or `width > pitch`.
pub fn spmm_packed_b(
    isa: Isa,
    a_t: &SparseB,
    b: &dyn PackB,
    c: &mut [f32],
    ldc: usize,
    epi: Option<Epilogue<'_>>,
    map: Option<ColMap>,
) -> Result<()> {
    spmm_packed_b_until(isa, a_t, b, c, ldc, epi, map, None, &Stop::default())
}

/// [`spmm_packed_b`] within a run: polls `stop` once per task and, when the run was
/// cancelled or its deadline passed, returns the run's typed error with `C` partly
/// computed.
///
/// `in_place = Some((base, offs))` says that `B`'s element `(kk, j)` also is
/// `base[offs[kk] + j]` (`offs.len() == k`; an input's rows, or phase planes): panels
/// whose 16-column reads stay inside `base` are then copied from there with
/// fixed-size copies instead of through `b.pack` (same values; the reads past the last
/// column feed discarded lanes).
#[allow(clippy::too_many_arguments)]
pub(crate) fn spmm_packed_b_until(
    isa: Isa,
    a_t: &SparseB,
    b: &dyn PackB,
    c: &mut [f32],
    ldc: usize,
    epi: Option<Epilogue<'_>>,
    map: Option<ColMap>,
    in_place: Option<(&[f32], &[usize])>,
    stop: &Stop,
) -> Result<()> {
    if let Some(cm) = map
        && (cm.pitch == 0 || cm.width > cm.pitch)
    {
        return Err(Error::InvalidInput(format!(
            "spmm: column map {cm:?} needs 0 < width <= pitch"
        )));
    }
    let (m, k, n_log) = (a_t.n, a_t.k, b.cols());
    if b.rows() != k || in_place.is_some_and(|(_, offs)| offs.len() != k) {
        return Err(Error::ShapeMismatch(format!(
            "spmm: sparse A is {m}x{k} but B is {}x{n_log}",
            b.rows()
        )));
    }
    // Physical columns before logical column `j`.
    let phys = |j: usize| map.map_or(j, |cm| cm.physical(j));
    let n = phys(n_log);
    if m == 0 || n == 0 {
        return Ok(());
    }
    check_c(c, m, n, ldc)?;
    // Each task owns the physical columns of its logical ones, in every row of C.
    let tasks = n_log.div_ceil(TASK_COLS);
    let bounds: Vec<usize> = (0..=tasks)
        .map(|t| phys((t * TASK_COLS).min(n_log)))
        .collect();
    let mut parts: Vec<Vec<&mut [f32]>> = (0..tasks).map(|_| Vec::with_capacity(m)).collect();
    for row in c.chunks_mut(ldc).take(m) {
        let mut rest = &mut row[..n];
        for (t, part) in parts.iter_mut().enumerate() {
            let (mine, tail) = rest.split_at_mut(bounds[t + 1] - bounds[t]);
            part.push(mine);
            rest = tail;
        }
    }
    // Rows of B copied straight from where they are when the source allows it, and
    // how far past a row's start the copies may read.
    let in_place = in_place.map(|(base, offs)| {
        let max_off = offs.iter().copied().max().unwrap_or(0);
        (base, offs, base.len().saturating_sub(max_off))
    });
    let stopped = AtomicBool::new(false);
    let task = |meter: &mut Meter<'_>, t: usize, rows: &mut [&mut [f32]]| {
        if stopped.load(Ordering::Relaxed) {
            return false;
        }
        let j0 = t * TASK_COLS;
        let jn = TASK_COLS.min(n_log - j0);
        let panels = jn.div_ceil(PANEL);
        // Direct copies only when every panel's reads stay inside the source (one
        // without slack past its last column packs its last task through `b`).
        let direct = in_place.filter(|&(_, _, reach)| j0 + panels * PANEL <= reach);
        let work = a_t.nnz() * panels * PANEL + k * jn * COPY_UNITS as usize;
        if meter.tick(work as u64) {
            stopped.store(true, Ordering::Relaxed);
            return false;
        }
        let mut scratch = take_scratch();
        let [xt, tile] = &mut scratch;
        let xt = grow(xt, panels * PANEL * k);
        let tile = grow(tile, m * PANEL);
        if a_t.nnz() > 0 {
            match direct {
                // Fixed-size copies of 16 floats (the generic `pack` copies a run of
                // any length per row, a library call each).
                Some((base, offs, _)) => {
                    let (blocks, _) = xt.as_chunks_mut::<PANEL>();
                    for (p, panel) in blocks.chunks_exact_mut(k).enumerate() {
                        let c0 = j0 + p * PANEL;
                        for (dst, &o) in panel.iter_mut().zip(offs) {
                            if let Some(src) = base.get(o + c0..).and_then(|s| s.first_chunk()) {
                                *dst = *src;
                            }
                        }
                    }
                }
                None => b.pack(0, k, j0, jn, PANEL, xt),
            }
        }
        for p in 0..panels {
            let (out, _) = tile.as_chunks_mut::<PANEL>();
            let c0 = j0 + p * PANEL;
            if a_t.nnz() == 0 {
                out.iter_mut().for_each(|o| o.fill(0.0));
            } else {
                let (xs, _) = xt[p * PANEL * k..][..PANEL * k].as_chunks::<PANEL>();
                run_columns::<PANEL>(isa, xs, a_t, 0, out);
            }
            // Logical columns c0..c0 + w of this panel, as runs of kept columns:
            // (first lane, length, physical column relative to the task's first).
            let w = PANEL.min(j0 + jn - c0);
            let mut runs = [(0usize, 0usize, 0usize); PANEL];
            let mut nruns = 0;
            let mut q = 0;
            while q < w {
                let j = c0 + q;
                let len = match map {
                    None => w - q,
                    Some(cm) if j % cm.pitch < cm.width => (cm.width - j % cm.pitch).min(w - q),
                    Some(cm) => {
                        q += (cm.pitch - j % cm.pitch).min(w - q);
                        continue;
                    }
                };
                runs[nruns] = (q, len, phys(j) - bounds[t]);
                nruns += 1;
                q += len;
            }
            for (row, acc) in rows.iter_mut().zip(out.iter()) {
                for &(q, len, at) in &runs[..nruns] {
                    row[at..at + len].copy_from_slice(&acc[q..q + len]);
                }
            }
        }
        put_scratch(scratch);
        if let Some(epi) = epi {
            for (i, row) in rows.iter_mut().enumerate() {
                if !row.is_empty() {
                    epi(i, bounds[t], row);
                }
            }
        }
        true
    };
    if in_parallel_pool() && tasks > 1 {
        parts.par_iter_mut().enumerate().for_each_init(
            || Meter::new(stop),
            |meter, (t, rows)| {
                task(meter, t, rows);
            },
        );
    } else {
        let mut meter = Meter::new(stop);
        for (t, rows) in parts.iter_mut().enumerate() {
            if !task(&mut meter, t, rows) {
                break;
            }
        }
    }
    if stopped.into_inner() {
        return Err(
            stop.error(&|| format!("a sparse {m}x{k} by {k}x{n_log} matrix product (convolution)"))
        );
    }
    Ok(())
}

/// Fills `tile` (`n × R`, column-major by output column) with the products of the
/// `k × R` block `xt` by every column of `b`, in column chunks run with rayon.
fn columns<const R: usize>(
    isa: Isa,
    xt: &[f32],
    b: &SparseB,
    tile: &mut [f32],
    stop: &Stop,
    stopped: &AtomicBool,
) {
    let (xt, _) = xt.as_chunks::<R>();
    let (tile, _) = tile.as_chunks_mut::<R>();
    // One chunk of columns per poll of the run's stop; false when stopped.
    let task = |meter: &mut Meter<'_>, t: usize, out: &mut [[f32; R]]| {
        if stopped.load(Ordering::Relaxed) {
            return false;
        }
        let j0 = t * COLS_PER_TASK;
        let work = (b.col_ptr[j0 + out.len()] - b.col_ptr[j0]) * R;
        if meter.tick(work as u64) {
            stopped.store(true, Ordering::Relaxed);
            return false;
        }
        run_columns::<R>(isa, xt, b, j0, out);
        true
    };
    if in_parallel_pool() {
        tile.par_chunks_mut(COLS_PER_TASK)
            .enumerate()
            .for_each_init(
                || Meter::new(stop),
                |meter, (t, out)| {
                    task(meter, t, out);
                },
            );
    } else {
        let mut meter = Meter::new(stop);
        for (t, out) in tile.chunks_mut(COLS_PER_TASK).enumerate() {
            if !task(&mut meter, t, out) {
                return;
            }
        }
    }
}

/// Dispatches one chunk of columns to the ISA's compilation of [`body`].
fn run_columns<const R: usize>(
    isa: Isa,
    xt: &[[f32; R]],
    b: &SparseB,
    j0: usize,
    out: &mut [[f32; R]],
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if isa.is_available() => {
            // SAFETY: the CPU supports AVX-512F (checked just above); the body is safe
            // Rust with bounds-checked slices.
            unsafe { body_avx512::<R>(xt, b, j0, out) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if isa.is_available() => {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above); the body is safe
            // Rust with bounds-checked slices.
            unsafe { body_avx2::<R>(xt, b, j0, out) }
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => body::<R, true>(xt, b, j0, out),
        _ => body::<R, false>(xt, b, j0, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn body_avx512<const R: usize>(xt: &[[f32; R]], b: &SparseB, j0: usize, out: &mut [[f32; R]]) {
    body::<R, true>(xt, b, j0, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn body_avx2<const R: usize>(xt: &[[f32; R]], b: &SparseB, j0: usize, out: &mut [[f32; R]]) {
    body::<R, true>(xt, b, j0, out)
}

/// `out[jj] = Σ w·xt[kk]` over the non-zeros `(kk, w)` of column `j0 + jj` of `b`, in
/// four interleaved partial sums (`FMA`: fused multiply-add, only where the target has
/// it; elsewhere `mul_add` would be a slow library call).
#[inline(always)]
fn body<const R: usize, const FMA: bool>(
    xt: &[[f32; R]],
    b: &SparseB,
    j0: usize,
    out: &mut [[f32; R]],
) {
    #[inline(always)]
    fn axpy<const R: usize, const FMA: bool>(acc: &mut [f32; R], w: f32, x: &[f32; R]) {
        for (a, &x) in acc.iter_mut().zip(x) {
            *a = if FMA { w.mul_add(x, *a) } else { *a + w * x };
        }
    }
    for (jj, o) in out.iter_mut().enumerate() {
        let j = j0 + jj;
        let (s, e) = (b.col_ptr[j], b.col_ptr[j + 1]);
        let (idx, val) = (&b.row_idx[s..e], &b.vals[s..e]);
        let mut acc = [[0.0f32; R]; 4];
        let (i4, it) = idx.as_chunks::<4>();
        let (v4, vt) = val.as_chunks::<4>();
        for (ik, wk) in i4.iter().zip(v4) {
            for q in 0..4 {
                axpy::<R, FMA>(&mut acc[q], wk[q], &xt[ik[q] as usize]);
            }
        }
        for (&kk, &w) in it.iter().zip(vt) {
            axpy::<R, FMA>(&mut acc[0], w, &xt[kk as usize]);
        }
        for (r, o) in o.iter_mut().enumerate() {
            *o = (acc[0][r] + acc[1][r]) + (acc[2][r] + acc[3][r]);
        }
    }
}

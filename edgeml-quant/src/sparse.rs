//! Sparse INT8 GEMM for pruned constant weights: `C = (A − zA)·(B − zB)` with `B`
//! stored once as compressed sparse columns of its offset-form values `B − zB` (the
//! entries where a weight differs from its zero point), then the same requantization
//! or dequantization as the dense [`crate::gemm`] functions.
//!
//! # Numerics
//! The i32 accumulators are exactly the dense kernels' (all arithmetic wraps modulo
//! 2³², a ring, so the order of the sums does not matter, and an entry equal to its zero
//! point adds `(a − zA)·0 = 0`), and the epilogue is the dense one
//! (`kernels::driver::quant_one` for u8/i8 outputs, `f32(acc + bias)·multiplier` for
//! f32 ones): outputs are bit-identical to [`crate::gemm_i32`], [`crate::gemm_requant`]
//! and [`crate::gemm_f32`] on the same operands, on every kernel path and thread count.
//! The zero point of `A` is taken off each activation as `A` is copied into the
//! kernel's transposed blocks, so no column sums of `B` are needed.
//!
//! # Cost
//! `A` is copied (as i32) 16 rows at a time into `K × 16` blocks, at most 256 rows per
//! pass; each stored weight then costs one multiply-add per row. Output columns are
//! split in chunks of 32 over the call's threads; a run's deadline or cancellation is
//! polled before each chunk, as the dense kernels do. Each stored weight costs one
//! multiply-add per row where the dense VNNI kernel does 64 per instruction, so on
//! `avx512vnni` the dense GEMM stayed faster up to 99 % zeros, while on `avx2` (dense
//! `vpmaddwd` on 16-bit pairs) the sparse product is ahead from 95 % (BENCHMARKS.md,
//! "Sparse INT8 GEMM"). [`prefer_sparse_int8`] turns these measurements into the rule
//! the ONNX operators follow under `edgeml_onnx::SparseMode::Auto`.

use crate::error::{Error, Result};
use crate::gemm::{Dequant, GemmOptions, Requant, ZeroPoints, bias_vec, per_col_f32, quant_bounds};
use crate::kernels::driver::{self, quant_one};
use crate::kernels::sparse::{Csc, columns};
use crate::kernels::{Isa, pack::QElem};
use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use std::sync::Mutex;

/// Rows of `A` per transposed block (the widest lane count).
const BLOCK_ROWS: usize = 16;
/// Rows of `A` copied per pass (bounds the copy to `256·K` i32).
const GROUP_ROWS: usize = 256;
/// Output columns per chunk of work (a task, and a stop poll).
const COLS: usize = 32;

/// Weights (`B`, `K × N`) stored once as compressed sparse columns of `B − zB`: for
/// each column, the rows and values of the entries that differ from the column's zero
/// point.
#[derive(Debug, Clone)]
pub struct SparseB {
    isa: Isa,
    k: usize,
    n: usize,
    col_ptr: Vec<usize>,
    row_idx: Vec<u32>,
    vals: Vec<i16>,
}

/// The zero point of each of `n` columns, as plain integers.
fn zp_cols<T: QElem>(zero_points: ZeroPoints<'_, T>, n: usize) -> Result<Vec<i32>> {
    match zero_points {
        ZeroPoints::PerTensor(z) => Ok(vec![z.to_i32(); n]),
        ZeroPoints::PerColumn(z) if z.len() == n => Ok(z.iter().map(|z| z.to_i32()).collect()),
        ZeroPoints::PerColumn(z) => Err(Error::Shape(format!(
            "{} weight zero points for {n} columns",
            z.len()
        ))),
    }
}

/// How many entries of `b` equal their column's zero point (the entries a [`SparseB`]
/// does not store): what a choice between the sparse and the dense product weighs.
///
/// # Errors
/// [`Error::Shape`] when per-column zero points do not number `N`.
pub fn offset_zeros<T: QElem>(
    b: ArrayView2<'_, T>,
    zero_points: ZeroPoints<'_, T>,
) -> Result<usize> {
    let zb = zp_cols(zero_points, b.ncols())?;
    Ok(b.rows()
        .into_iter()
        .map(|row| {
            row.iter()
                .zip(&zb)
                .filter(|(w, z)| w.to_i32() == **z)
                .count()
        })
        .sum())
}

/// Whether a constant `k × n` INT8 weight with `zeros` entries equal to their zero
/// point ([`offset_zeros`]) should be multiplied by the sparse product rather than the
/// dense GEMM on kernel path `isa`: the rule of `edgeml_onnx::SparseMode::Auto` for the
/// INT8 matrix products.
///
/// The rule: sparse only on [`Isa::Avx2`], and only with at least 95 % zeros. It comes
/// from `cargo bench -p edgeml-benches --bench sparse_int8` at one thread
/// (BENCHMARKS.md, "Sparse INT8 GEMM"): on `avx2` the sparse product took 0.58–0.81 of
/// the dense time at 95 % zeros on the three shapes measured and 0.74–1.36 at 90 %
/// (mixed); on `avx512vnni` it was slower at every share of zeros up to 99 %, and
/// [`Isa::Amx`] (not measured itself) runs the same sparse loop against a dense kernel
/// at least as fast (the tiles, and the `avx512vnni` kernels for the rest). The
/// paths without a measurement (`avxvnni`, `neon`, `neon-dotprod`, `scalar`) stay
/// dense until measured: the crossover depends on the dense kernel (`vpdpbusd` on
/// `avxvnni`, `sdot` on `neon-dotprod`, `smlal` on `neon`, plain Rust on `scalar`), so
/// `avx2`'s is not borrowed.
pub fn prefer_sparse_int8(isa: Isa, k: usize, n: usize, zeros: usize) -> bool {
    let total = (k as u128) * (n as u128);
    // zeros / total ≥ 95 %, exactly, in integers.
    isa == Isa::Avx2 && total > 0 && (zeros as u128) * 100 >= total * 95
}

impl SparseB {
    /// Compresses `b` for the kernel path chosen at run time ([`Isa::selected`]).
    ///
    /// # Errors
    /// [`Error::Shape`] when per-column zero points do not number `N`;
    /// [`Error::Limit`] when `b` has more than `u32::MAX` rows.
    pub fn new<T: QElem>(b: ArrayView2<'_, T>, zero_points: ZeroPoints<'_, T>) -> Result<Self> {
        Self::with_isa(b, zero_points, Isa::selected())
    }

    /// Compresses `b` for a given kernel path (to test or benchmark one path): the
    /// sparse loop is compiled for AVX-512F on the `amx` and `avx512vnni` paths, for
    /// AVX2 on `avxvnni` and `avx2`, and portable elsewhere (NEON is aarch64's baseline).
    ///
    /// # Errors
    /// [`Error::IsaUnavailable`] if this CPU lacks `isa`; otherwise as
    /// [`SparseB::new`].
    pub fn with_isa<T: QElem>(
        b: ArrayView2<'_, T>,
        zero_points: ZeroPoints<'_, T>,
        isa: Isa,
    ) -> Result<Self> {
        if !isa.is_available() {
            return Err(Error::IsaUnavailable(isa.name()));
        }
        let (k, n) = b.dim();
        if u32::try_from(k).is_err() {
            return Err(Error::Limit(format!(
                "sparse weights with {k} rows (at most {})",
                u32::MAX
            )));
        }
        let zb = zp_cols(zero_points, n)?;
        let mut col_ptr = Vec::with_capacity(n + 1);
        let (mut row_idx, mut vals) = (Vec::new(), Vec::new());
        col_ptr.push(0);
        for (j, col) in b.columns().into_iter().enumerate() {
            for (kk, w) in col.iter().enumerate() {
                // In −255..=255: both terms are 8-bit values of one type.
                let v = w.to_i32() - zb[j];
                if v != 0 {
                    // `kk < k ≤ u32::MAX`, checked above.
                    row_idx.push(kk as u32);
                    vals.push(v as i16);
                }
            }
            col_ptr.push(vals.len());
        }
        Ok(SparseB {
            isa,
            k,
            n,
            col_ptr,
            row_idx,
            vals,
        })
    }

    /// The kernel path this product runs on.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Rows of B (the reduction length K).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of B (output channels N).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Stored entries (those that differ from their zero point).
    pub fn nnz(&self) -> usize {
        self.vals.len()
    }

    /// Bytes of compressed storage (6 per stored entry, plus the column pointers).
    pub fn stored_bytes(&self) -> usize {
        self.vals.len() * 6 + self.col_ptr.len() * size_of::<usize>()
    }

    fn csc(&self) -> Csc<'_> {
        Csc {
            col_ptr: &self.col_ptr,
            row_idx: &self.row_idx,
            vals: &self.vals,
        }
    }

    fn check(&self, a: (usize, usize), out: (usize, usize)) -> Result<()> {
        let (m, k) = a;
        if k != self.k {
            return Err(Error::Shape(format!(
                "A is {m}×{k} but B is {}×{}",
                self.k, self.n
            )));
        }
        if out != (m, self.n) {
            return Err(Error::Shape(format!(
                "output is {}×{} but A·B is {m}×{}",
                out.0, out.1, self.n
            )));
        }
        Ok(())
    }
}

/// The shared driver: `out[i, j] = fin(Σ_k (A[i,k] − zA)·(B[k,j] − zB[j]), j)`.
fn run<T: QElem, O: Copy + Send>(
    a: ArrayView2<'_, T>,
    a_zp: T,
    b: &SparseB,
    mut out: ArrayViewMut2<'_, O>,
    opts: &GemmOptions,
    fin: impl Fn(i32, usize) -> O + Sync,
) {
    let (m, k) = a.dim();
    if m == 0 || b.n == 0 {
        return;
    }
    let za = a_zp.to_i32();
    let csc = b.csc();
    let threads = opts.threads();
    // Disjoint column chunks of the output, each taken by one task at a time.
    let chunks: Vec<Mutex<ArrayViewMut2<'_, O>>> = out
        .axis_chunks_iter_mut(Axis(1), COLS)
        .map(Mutex::new)
        .collect();
    let mut xt: Vec<i32> = Vec::new();
    for g0 in (0..m).step_by(GROUP_ROWS) {
        let gm = GROUP_ROWS.min(m - g0);
        // Rows g0..g0+gm as blocks of `lanes` rows transposed to `k × lanes`, the
        // padding lanes 0; block `bi` starts at `bi·16·k`.
        xt.clear();
        xt.resize(gm.div_ceil(BLOCK_ROWS) * BLOCK_ROWS * k, 0);
        let blocks: Vec<(usize, usize, usize)> = (0..gm)
            .step_by(BLOCK_ROWS)
            .map(|i0| {
                let rows = BLOCK_ROWS.min(gm - i0);
                (i0, rows, rows.next_power_of_two())
            })
            .collect();
        for &(i0, rows, lanes) in &blocks {
            let blk = &mut xt[i0 * k..][..k * lanes];
            for r in 0..rows {
                for (kk, v) in a.row(g0 + i0 + r).iter().enumerate() {
                    blk[kk * lanes + r] = v.to_i32() - za;
                }
            }
        }
        let work = (b.nnz() as u64).saturating_mul(gm as u64);
        driver::par_chunks(chunks.len(), threads, 0, work, |range| {
            for c in range {
                let mut o = match chunks[c].lock() {
                    Ok(o) => o,
                    Err(p) => p.into_inner(),
                };
                for &(i0, rows, lanes) in &blocks {
                    let blk = &xt[i0 * k..][..k * lanes];
                    let at = (g0 + i0, rows, c * COLS);
                    match lanes {
                        1 => tile::<1, O>(b.isa, blk, &csc, at, &mut o, &fin),
                        2 => tile::<2, O>(b.isa, blk, &csc, at, &mut o, &fin),
                        4 => tile::<4, O>(b.isa, blk, &csc, at, &mut o, &fin),
                        8 => tile::<8, O>(b.isa, blk, &csc, at, &mut o, &fin),
                        _ => tile::<BLOCK_ROWS, O>(b.isa, blk, &csc, at, &mut o, &fin),
                    }
                }
            }
        });
        if driver::stopped() {
            return;
        }
    }
}

/// One block of `rows ≤ R` rows (starting at output row `i`) by one chunk of columns
/// (starting at `j0`, as many as `o` has): the sums, finished into `o`.
fn tile<const R: usize, O: Copy>(
    isa: Isa,
    blk: &[i32],
    csc: &Csc<'_>,
    (i, rows, j0): (usize, usize, usize),
    o: &mut ArrayViewMut2<'_, O>,
    fin: &impl Fn(i32, usize) -> O,
) {
    let w = o.ncols();
    let mut acc = [[0i32; R]; COLS];
    let (xs, _) = blk.as_chunks::<R>();
    columns::<R>(isa, xs, csc, j0, &mut acc[..w]);
    for (r, mut row) in o.rows_mut().into_iter().skip(i).take(rows).enumerate() {
        for (jj, dst) in row.iter_mut().enumerate() {
            *dst = fin(acc[jj][r], j0 + jj);
        }
    }
}

/// `out = (A − a_zp)·(B − zB)` in i32 (ONNX `MatMulInteger`), wrapping modulo 2³²:
/// [`crate::gemm_i32`] for a [`SparseB`].
///
/// # Errors
/// [`Error::Shape`] if `A` is not `M × K` with `K = b.k()` or `out` is not `M × N`.
pub fn gemm_i32<T: QElem>(
    a: ArrayView2<'_, T>,
    a_zp: T,
    b: &SparseB,
    out: ArrayViewMut2<'_, i32>,
    opts: &GemmOptions,
) -> Result<()> {
    b.check(a.dim(), out.dim())?;
    run(a, a_zp, b, out, opts, |v, _| v);
    Ok(())
}

/// Requantized GEMM, output `u8` or `i8`: [`crate::gemm_requant`] for a [`SparseB`].
///
/// # Errors
/// As [`crate::gemm_requant`].
pub fn gemm_requant<T: QElem, O: QElem>(
    a: ArrayView2<'_, T>,
    a_zp: T,
    b: &SparseB,
    rq: &Requant<'_>,
    out: ArrayViewMut2<'_, O>,
    opts: &GemmOptions,
) -> Result<()> {
    b.check(a.dim(), out.dim())?;
    let mult = per_col_f32(rq.multipliers, b.n, "multipliers")?;
    let bias = bias_vec(rq.bias, b.n)?;
    let (lo, hi) = quant_bounds::<O>(rq)?;
    let zp = rq.zero_point;
    run(a, a_zp, b, out, opts, |v, j| {
        O::from_i32_clamped(quant_one(v, bias[j], mult[j], zp, lo, hi))
    });
    Ok(())
}

/// Dequantized GEMM, `out = f32((A − a_zp)·(B − zB) + bias) · multiplier`:
/// [`crate::gemm_f32`] for a [`SparseB`].
///
/// # Errors
/// As [`crate::gemm_f32`].
pub fn gemm_f32<T: QElem>(
    a: ArrayView2<'_, T>,
    a_zp: T,
    b: &SparseB,
    dq: &Dequant<'_>,
    out: ArrayViewMut2<'_, f32>,
    opts: &GemmOptions,
) -> Result<()> {
    b.check(a.dim(), out.dim())?;
    let mult = per_col_f32(dq.multipliers, b.n, "multipliers")?;
    let bias = bias_vec(dq.bias, b.n)?;
    run(a, a_zp, b, out, opts, |v, j| {
        v.wrapping_add(bias[j]) as f32 * mult[j]
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Auto rule itself: `avx2` from exactly 95 % zeros, every other path dense.
    #[test]
    fn prefer_sparse_int8_is_avx2_from_95_percent_zeros() {
        let (k, n) = (1000, 20); // 20 000 entries: 95 % is 19 000 zeros.
        assert!(prefer_sparse_int8(Isa::Avx2, k, n, 19_000));
        assert!(prefer_sparse_int8(Isa::Avx2, k, n, 19_999));
        assert!(prefer_sparse_int8(Isa::Avx2, k, n, 20_000));
        assert!(!prefer_sparse_int8(Isa::Avx2, k, n, 18_999));
        assert!(!prefer_sparse_int8(Isa::Avx2, k, n, 18_000)); // 90 %
        assert!(!prefer_sparse_int8(Isa::Avx2, k, n, 0));
        // Small weights: 19 of 20 is 95 %, 18 of 20 is not.
        assert!(prefer_sparse_int8(Isa::Avx2, 4, 5, 19));
        assert!(!prefer_sparse_int8(Isa::Avx2, 4, 5, 18));
        // An empty weight has nothing to skip.
        assert!(!prefer_sparse_int8(Isa::Avx2, 0, 7, 0));
        assert!(!prefer_sparse_int8(Isa::Avx2, 7, 0, 0));
        // No overflow on huge shapes.
        assert!(prefer_sparse_int8(Isa::Avx2, usize::MAX, 1, usize::MAX));
        assert!(!prefer_sparse_int8(Isa::Avx2, usize::MAX, 2, usize::MAX));
        for isa in Isa::ALL.into_iter().filter(|&i| i != Isa::Avx2) {
            for zeros in [0, 19_000, 19_800, 20_000] {
                assert!(!prefer_sparse_int8(isa, k, n, zeros), "{isa:?}, {zeros}");
            }
        }
    }
}

//! MatMul (numpy semantics: batched, broadcast, 1-D operands) and Gemm.

use super::{checked_numel, contiguous, input_f32, opt_input_f32, tensor};
use crate::kernels::{self, Isa, Lhs, MatRef, PackedB, Rhs, SparseB};
use crate::op::{BuildContext, Operator};
use crate::ops::attr::{Attrs, shape_mismatch};
use crate::ops::util::broadcast_shapes;
use crate::plan::SparseMode;
use crate::plan::budget::{Meter, Stop};
use crate::{Node, Result, Tensor};
use ndarray::{ArrayD, IxDyn};

#[derive(Debug)]
struct MatMul {
    node: Node,
    isa: Isa,
    /// The right operand packed at build time when it is a constant matrix or vector.
    packed_b: Option<PackedB>,
    /// The right operand compressed at build time instead, when it is a constant
    /// matrix that [`SparseMode::use_sparse`] picks for the sparse kernel.
    sparse_b: Option<SparseB>,
}

/// A constant weight `b` (`k × n`, already transposed as the product reads it)
/// prepared once: compressed when `mode` picks the sparse kernel for it, else packed.
/// `data` holds `b`'s elements (in any order).
fn prepare_b(
    isa: Isa,
    b: MatRef<'_>,
    data: &[f32],
    mode: SparseMode,
) -> Result<(Option<PackedB>, Option<SparseB>)> {
    let zeros = data.iter().filter(|&&w| w == 0.0).count();
    if mode.use_sparse(b.rows(), b.cols(), zeros) {
        Ok((None, Some(SparseB::from_dense(b)?)))
    } else {
        Ok((Some(PackedB::pack(isa, b)), None))
    }
}

pub(super) fn build_matmul(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let isa = kernels::best_isa();
    let (mut packed_b, mut sparse_b) = (None, None);
    if let Some(Some(Tensor::F32(b))) = ctx.constant_inputs.get(1) {
        let data = contiguous(b);
        match b.ndim() {
            1 => packed_b = Some(PackedB::pack(isa, MatRef::row_major(&data, b.len(), 1)?)),
            2 => {
                let v = MatRef::row_major(&data, b.shape()[0], b.shape()[1])?;
                (packed_b, sparse_b) = prepare_b(isa, v, &data, ctx.sparse)?;
            }
            _ => {}
        }
    }
    Ok(Box::new(MatMul {
        node: ctx.node.clone(),
        isa,
        packed_b,
        sparse_b,
    }))
}

/// Flat index into a batch of shape `shape` (right-aligned in `full`) for multi-index `idx`.
fn batch_offset(shape: &[usize], full: &[usize], idx: &[usize]) -> usize {
    let off = full.len() - shape.len();
    let mut flat = 0;
    for (i, &d) in shape.iter().enumerate() {
        let v = if d == 1 { 0 } else { idx[off + i] };
        flat = flat * d + v;
    }
    flat
}

impl Operator for MatMul {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let a = input_f32(node, inputs, 0)?;
        let b = input_f32(node, inputs, 1)?;
        if a.ndim() == 0 || b.ndim() == 0 {
            return Err(shape_mismatch(node, "MatMul operands must have rank >= 1"));
        }
        let (ash, bsh) = (a.shape(), b.shape());
        let (a_batch, m, k) = if ash.len() == 1 {
            (&ash[..0], 1, ash[0])
        } else {
            (
                &ash[..ash.len() - 2],
                ash[ash.len() - 2],
                ash[ash.len() - 1],
            )
        };
        let (b_batch, kb, n) = if bsh.len() == 1 {
            (&bsh[..0], bsh[0], 1)
        } else {
            (
                &bsh[..bsh.len() - 2],
                bsh[bsh.len() - 2],
                bsh[bsh.len() - 1],
            )
        };
        if k != kb {
            return Err(shape_mismatch(
                node,
                format!("inner dimensions disagree: {ash:?} x {bsh:?}"),
            ));
        }
        let batch = broadcast_shapes(node, a_batch, b_batch)?;
        let mut out_shape = batch.clone();
        if ash.len() > 1 {
            out_shape.push(m);
        }
        if bsh.len() > 1 {
            out_shape.push(n);
        }
        let total = checked_numel(node, &out_shape)?;
        let mut out = crate::buffers::take_f32(total);
        if total == 0 {
            return Ok(vec![tensor(node, &out_shape, out)?]);
        }
        let xa = contiguous(a);
        let xb = contiguous(b);
        let nbatch: usize = batch.iter().product();
        let b_batch_len: usize = b_batch.iter().product();
        let a_batch_len: usize = a_batch.iter().product();
        // The run's cancellation and deadline, polled inside each GEMM and, for many
        // small ones, between them.
        let stop = Stop::current();
        if b_batch_len == 1 && a_batch_len == nbatch {
            // One GEMM with A's batch folded into its rows.
            let lhs = MatRef::row_major(&xa, nbatch * m, k)?;
            if let Some(sb) = &self.sparse_b
                && bsh.len() == 2
                && sb.rows() == k
                && sb.cols() == n
            {
                kernels::spmm_until(self.isa, 1.0, lhs, sb, 0.0, &mut out, n, &stop)?;
                return Ok(vec![tensor(node, &out_shape, out)?]);
            }
            let rhs = match &self.packed_b {
                Some(p) => Rhs::Packed(p),
                None => Rhs::View(MatRef::row_major(&xb, k, n)?),
            };
            kernels::sgemm_until(self.isa, 1.0, Lhs::View(lhs), rhs, 0.0, &mut out, n, &stop)?;
            return Ok(vec![tensor(node, &out_shape, out)?]);
        }
        let mut idx = vec![0usize; batch.len()];
        let mut meter = Meter::new(&stop);
        for (bi, o) in out.chunks_mut(m * n).enumerate() {
            if meter.tick((m * n * k) as u64) {
                return Err(stop.error(&|| format!("batch {bi} of {nbatch}")));
            }
            let mut rem = bi;
            for d in (0..batch.len()).rev() {
                idx[d] = rem % batch[d];
                rem /= batch[d];
            }
            let ia = batch_offset(a_batch, &batch, &idx);
            let ib = batch_offset(b_batch, &batch, &idx);
            let lhs = MatRef::row_major(&xa[ia * m * k..][..m * k], m, k)?;
            let rhs = MatRef::row_major(&xb[ib * k * n..][..k * n], k, n)?;
            let (lhs, rhs) = (Lhs::View(lhs), Rhs::View(rhs));
            kernels::sgemm_until(self.isa, 1.0, lhs, rhs, 0.0, o, n, &stop)?;
        }
        Ok(vec![tensor(node, &out_shape, out)?])
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    /// `true` when the constant weight `B` is multiplied with the sparse kernel.
    fn runs_sparse(&self) -> bool {
        self.sparse_b.is_some()
    }
}

#[derive(Debug)]
struct Gemm {
    node: Node,
    isa: Isa,
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
    packed_b: Option<PackedB>,
    /// `B` (as `op(B)`, `k × n`) compressed for the sparse kernel instead of packed.
    sparse_b: Option<SparseB>,
}

pub(super) fn build_gemm(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let node = ctx.node;
    let a = Attrs::new(node);
    let isa = kernels::best_isa();
    let trans_b = a.int("transB", 0)? != 0;
    let (mut packed_b, mut sparse_b) = (None, None);
    if let Some(Some(Tensor::F32(b))) = ctx.constant_inputs.get(1)
        && b.ndim() == 2
    {
        let data = contiguous(b);
        let v = MatRef::row_major(&data, b.shape()[0], b.shape()[1])?;
        (packed_b, sparse_b) = prepare_b(isa, if trans_b { v.t() } else { v }, &data, ctx.sparse)?;
    }
    Ok(Box::new(Gemm {
        node: node.clone(),
        isa,
        alpha: a.float("alpha", 1.0)?,
        beta: a.float("beta", 1.0)?,
        trans_a: a.int("transA", 0)? != 0,
        trans_b,
        packed_b,
        sparse_b,
    }))
}

/// Writes `c` (already broadcast to `[m, n]`) into the row-major `out`: a bias row
/// (`[n]` or `[1, n]`, the common case) is copied row by row, a contiguous `[m, n]`
/// in one copy, anything else element by element.
fn fill_broadcast(out: &mut [f32], c: &ndarray::ArrayViewD<'_, f32>, n: usize) {
    if out.is_empty() || n == 0 {
        return;
    }
    if let Some(all) = c.as_slice() {
        out.copy_from_slice(all);
    } else if c.strides().first() == Some(&0)
        && let Some(row) = c.index_axis(ndarray::Axis(0), 0).as_slice()
    {
        for o in out.chunks_exact_mut(n) {
            o.copy_from_slice(row);
        }
    } else {
        for (o, &v) in out.iter_mut().zip(c.iter()) {
            *o = v;
        }
    }
}

impl Operator for Gemm {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let a = input_f32(node, inputs, 0)?;
        let b = input_f32(node, inputs, 1)?;
        let c = opt_input_f32(node, inputs, 2)?;
        if a.ndim() != 2 || b.ndim() != 2 {
            return Err(shape_mismatch(
                node,
                format!("A {:?} and B {:?} must be 2-D", a.shape(), b.shape()),
            ));
        }
        let xa = contiguous(a);
        let xb = contiguous(b);
        let av = MatRef::row_major(&xa, a.shape()[0], a.shape()[1])?;
        let av = if self.trans_a { av.t() } else { av };
        let bv = MatRef::row_major(&xb, b.shape()[0], b.shape()[1])?;
        let bv = if self.trans_b { bv.t() } else { bv };
        let (m, k, n) = (av.rows(), av.cols(), bv.cols());
        if bv.rows() != k {
            return Err(shape_mismatch(
                node,
                format!(
                    "A {:?} and B {:?} disagree (transA={}, transB={})",
                    a.shape(),
                    b.shape(),
                    self.trans_a,
                    self.trans_b
                ),
            ));
        }
        let total = checked_numel(node, &[m, n])?;
        let mut out = crate::buffers::take_f32(total);
        let mut beta = 0.0;
        if let Some(c) = c
            && self.beta != 0.0
        {
            let cb = c.broadcast(IxDyn(&[m, n])).ok_or_else(|| {
                shape_mismatch(
                    node,
                    format!("C {:?} does not broadcast to [{m}, {n}]", c.shape()),
                )
            })?;
            fill_broadcast(&mut out, &cb, n);
            beta = self.beta;
        }
        if total > 0
            && let Some(sb) = &self.sparse_b
            && sb.rows() == k
            && sb.cols() == n
        {
            let stop = Stop::current();
            kernels::spmm_until(self.isa, self.alpha, av, sb, beta, &mut out, n, &stop)?;
        } else if total > 0 {
            let rhs = match &self.packed_b {
                Some(p) if p.rows() == k && p.cols() == n => Rhs::Packed(p),
                _ => Rhs::View(bv),
            };
            let stop = Stop::current();
            let lhs = Lhs::View(av);
            kernels::sgemm_until(self.isa, self.alpha, lhs, rhs, beta, &mut out, n, &stop)?;
        }
        let arr =
            ArrayD::from_shape_vec(IxDyn(&[m, n]), out).map_err(|e| shape_mismatch(node, e))?;
        Ok(vec![Tensor::F32(arr)])
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    /// `true` when the constant weight `B` is multiplied with the sparse kernel.
    fn runs_sparse(&self) -> bool {
        self.sparse_b.is_some()
    }
}

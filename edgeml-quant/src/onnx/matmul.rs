//! `QLinearMatMul`, `MatMulInteger` and onnxruntime's `MatMulIntegerToFloat`,
//! `DynamicQuantizeMatMul` and `QGemm`, on the exact INT8 GEMM.
//!
//! A: `[..., M, K]`, B: `[..., K, N]` with numpy broadcasting of the batch dimensions (a
//! 1-D operand gains and then loses a unit dimension, as numpy's `matmul`). A 2-D B
//! that is constant at plan time (with a constant zero point) is prepared once: packed
//! for the dense GEMM, or compressed for the sparse product of [`crate::sparse`], whose
//! outputs are bit-identical. `SparseMode::Sparse` always compresses it, `Dense` never;
//! `SparseMode::Auto` (the default) asks [`crate::sparse::prefer_sparse_int8`] with the
//! selected kernel path ([`crate::Isa::selected`], the one both forms are prepared for)
//! and the weight's entries equal to their zero point: sparse on `avx2` from 95 % of
//! them, dense on every other path, where the dense GEMM was faster (VNNI, measured up
//! to 99 %) or no measurement exists (BENCHMARKS.md, "Sparse INT8 GEMM").
//! When B is 2-D, all of A's batch rows go through one GEMM call.

use super::params::{
    Zp, check_count, scalar_scale, scalar_zp, scales, scales_of, zero_points, zero_points_of, zp_as,
};
use super::qdq::dynamic_params;
use super::{gemm_options, get, input, kernel_err};
use crate::sparse::{self, SparseB};
use crate::{Dequant, Isa, PackedB, QElem, Requant, ZeroPoints, gemm_f32, gemm_i32, gemm_requant};
use edgeml_onnx::ops::attr::{Attrs, describe, invalid, unsupported};
use edgeml_onnx::ops::util::broadcast_shapes;
use edgeml_onnx::{BuildContext, Error, Node, Operator, Result, SparseMode, Tensor};
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewMut2, Ix2, IxDyn};

/// Which operator, with its input positions.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// `QLinearMatMul`: a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp.
    QLinear,
    /// `MatMulInteger`: a, b, a_zp, b_zp → i32.
    Integer,
    /// `MatMulIntegerToFloat`: a, b, a_scale, b_scale, a_zp, b_zp, bias → f32.
    ToFloat,
    /// `DynamicQuantizeMatMul`: a (f32), b, b_scale, b_zp, bias → f32.
    Dynamic,
    /// `QGemm`: a, a_scale, a_zp, b, b_scale, b_zp, c, y_scale, y_zp (u8/i8 or f32 out).
    Gemm {
        alpha: f32,
        trans_a: bool,
        trans_b: bool,
    },
}

/// Input positions: `[a, a_scale, a_zp, b, b_scale, b_zp, bias, y_scale, y_zp]`
/// (`usize::MAX` = absent for this operator).
fn positions(kind: Kind) -> [usize; 9] {
    const NO: usize = usize::MAX;
    match kind {
        Kind::QLinear => [0, 1, 2, 3, 4, 5, NO, 6, 7],
        Kind::Integer => [0, NO, 2, 1, NO, 3, NO, NO, NO],
        Kind::ToFloat => [0, 2, 4, 1, 3, 5, 6, NO, NO],
        Kind::Dynamic => [0, NO, NO, 1, 2, 3, 4, NO, NO],
        Kind::Gemm { .. } => [0, 1, 2, 3, 4, 5, 6, 7, 8],
    }
}

const A: usize = 0;
const A_SCALE: usize = 1;
const A_ZP: usize = 2;
const B: usize = 3;
const B_SCALE: usize = 4;
const B_ZP: usize = 5;
const BIAS: usize = 6;
const Y_SCALE: usize = 7;
const Y_ZP: usize = 8;

#[derive(Debug)]
struct QMatMul {
    node: Node,
    kind: Kind,
    pos: [usize; 9],
    /// B (transposed for `QGemm` with `transB`) prepared at plan time, when constant
    /// and 2-D.
    packed: Option<Weights>,
}

/// A 2-D B ready for the kernels: packed for the dense GEMM or compressed for the
/// sparse one.
#[derive(Debug)]
enum Weights {
    Dense(PackedB),
    Sparse(SparseB),
}

impl Weights {
    fn k(&self) -> usize {
        match self {
            Weights::Dense(p) => p.k(),
            Weights::Sparse(s) => s.k(),
        }
    }

    fn n(&self) -> usize {
        match self {
            Weights::Dense(p) => p.n(),
            Weights::Sparse(s) => s.n(),
        }
    }
}

fn build(ctx: &BuildContext<'_>, kind: Kind) -> Result<Box<dyn Operator>> {
    let node = ctx.node.clone();
    let pos = positions(kind);
    let consts: Vec<Option<&Tensor>> = ctx.constant_inputs.clone();
    let b = get(&pos, &consts, B);
    let bzp_given = node.inputs.get(pos[B_ZP]).is_some_and(|s| !s.is_empty());
    let bzp = get(&pos, &consts, B_ZP);
    let trans_b = matches!(kind, Kind::Gemm { trans_b: true, .. });
    let packed = match b {
        Some(b) if b.shape().len() == 2 && (bzp.is_some() || !bzp_given) => {
            let zp = bzp
                .map(|z| zero_points_of(&node, z, pos[B_ZP]))
                .transpose()?;
            Some(pack_b(&node, b, zp.as_ref(), trans_b, ctx.sparse)?)
        }
        _ => None,
    };
    Ok(Box::new(QMatMul {
        node,
        kind,
        pos,
        packed,
    }))
}

pub(super) fn build_qlinear_matmul(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    build(ctx, Kind::QLinear)
}

pub(super) fn build_matmul_integer(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    build(ctx, Kind::Integer)
}

pub(super) fn build_integer_to_float(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    build(ctx, Kind::ToFloat)
}

pub(super) fn build_dynamic_matmul(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    build(ctx, Kind::Dynamic)
}

pub(super) fn build_qgemm(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let a = Attrs::new(ctx.node);
    build(
        ctx,
        Kind::Gemm {
            alpha: a.float("alpha", 1.0)?,
            trans_a: a.int("transA", 0)? != 0,
            trans_b: a.int("transB", 0)? != 0,
        },
    )
}

/// Prepares a 2-D B (`[K, N]`, or `[N, K]` when `trans`) with its zero points: packed
/// for the dense GEMM, or compressed for the sparse product when `mode` is
/// `SparseMode::Sparse`, or `Auto` and [`sparse::prefer_sparse_int8`] says so for the
/// selected kernel path (see the module notes).
fn pack_b(
    node: &Node,
    b: &Tensor,
    zp: Option<&Zp>,
    trans: bool,
    mode: SparseMode,
) -> Result<Weights> {
    fn go<T: QElem>(
        node: &Node,
        b: &ArrayD<T>,
        zp: Option<&Zp>,
        trans: bool,
        mode: SparseMode,
    ) -> Result<Weights> {
        let b2 = b
            .view()
            .into_dimensionality::<Ix2>()
            .map_err(|_| invalid(node, "B must be 2-D"))?;
        let b2 = if trans { b2.reversed_axes() } else { b2 };
        let n = b2.ncols();
        let z: Vec<T> = match zp {
            None => vec![T::from_i32_clamped(0)],
            Some(z) => zp_as::<T>(node, z, "B")?,
        };
        check_count(node, z.len(), n, "B zero points")?;
        let zps = if z.len() == 1 {
            ZeroPoints::PerTensor(z[0])
        } else {
            ZeroPoints::PerColumn(&z)
        };
        let err = |e| kernel_err(node, e);
        let use_sparse = match mode {
            SparseMode::Sparse => true,
            SparseMode::Auto => {
                let zeros = sparse::offset_zeros(b2, zps).map_err(err)?;
                sparse::prefer_sparse_int8(Isa::selected(), b2.nrows(), n, zeros)
            }
            _ => false,
        };
        if use_sparse {
            return SparseB::new(b2, zps).map(Weights::Sparse).map_err(err);
        }
        PackedB::new(b2, zps).map(Weights::Dense).map_err(err)
    }
    match b {
        Tensor::U8(a) => go(node, a, zp, trans, mode),
        Tensor::I8(a) => go(node, a, zp, trans, mode),
        other => Err(unsupported(
            node,
            format!(
                "B of type {:?}: uint8 and int8 are supported",
                other.dtype()
            ),
        )),
    }
}

/// What happens to the i32 accumulators.
enum Epi {
    I32,
    /// Requantize to the zero point's type.
    Quant {
        mult: Vec<f32>,
        bias: Option<Vec<i32>>,
        zp: Zp,
    },
    /// Scale to f32, then add an optional float bias over the last axis.
    F32 {
        mult: Vec<f32>,
        bias: Option<Vec<i32>>,
        fbias: Option<Vec<f32>>,
    },
}

/// An output being filled, one 2-D block at a time.
enum Out {
    I32(ArrayD<i32>),
    U8(ArrayD<u8>),
    I8(ArrayD<i8>),
    F32(ArrayD<f32>),
}

impl QMatMul {
    fn epilogue(&self, inputs: &[Option<&Tensor>], a_scale: f32, n: usize) -> Result<Epi> {
        let node = &self.node;
        if self.kind == Kind::Integer {
            return Ok(Epi::I32);
        }
        let b_scales = scales(node, inputs, self.pos[B_SCALE])?;
        check_count(node, b_scales.len(), n, "B scales")?;
        let alpha = match self.kind {
            Kind::Gemm { alpha, .. } => alpha,
            _ => 1.0,
        };
        if !alpha.is_finite() {
            return Err(invalid(node, format!("alpha = {alpha} must be finite")));
        }
        let y_scale = match get(&self.pos, inputs, Y_SCALE) {
            Some(t) => Some(scalar_scale(
                node,
                &scales_of(node, t, self.pos[Y_SCALE])?,
                "y_scale",
            )?),
            None => None,
        };
        let bias_t = get(&self.pos, inputs, BIAS);
        let (bias, fbias) = match bias_t {
            None => (None, None),
            Some(Tensor::I32(c)) => {
                let c: Vec<i32> = super::params::elements(c);
                check_count(node, c.len(), n, "bias values")?;
                (Some(if c.len() == n { c } else { vec![c[0]; n] }), None)
            }
            Some(Tensor::F32(c)) if self.kind != Kind::QLinear => {
                let c: Vec<f32> = super::params::elements(c);
                check_count(node, c.len(), n, "bias values")?;
                (None, Some(if c.len() == n { c } else { vec![c[0]; n] }))
            }
            Some(other) => {
                return Err(invalid(
                    node,
                    format!("bias of type {:?} is not supported here", other.dtype()),
                ));
            }
        };
        match (self.kind, y_scale) {
            (Kind::QLinear, None) => Err(invalid(node, "y_scale is missing")),
            (Kind::QLinear | Kind::Gemm { .. }, Some(ys)) => {
                let zp = zero_points(node, inputs, self.pos[Y_ZP])?.unwrap_or(Zp::U8(vec![0]));
                if zp.len() != 1 {
                    return Err(unsupported(node, "a per-axis output zero point"));
                }
                let mult = b_scales
                    .iter()
                    .map(|&bs| alpha * a_scale * bs / ys)
                    .collect();
                Ok(Epi::Quant { mult, bias, zp })
            }
            _ => {
                let mult = b_scales.iter().map(|&bs| alpha * a_scale * bs).collect();
                Ok(Epi::F32 { mult, bias, fbias })
            }
        }
    }
}

/// One 2-D product `a · b` into rows `rows` of the output (viewed as `[rows, N]`).
fn block<T: QElem>(
    node: &Node,
    a: ArrayView2<'_, T>,
    a_zp: T,
    b: &Weights,
    epi: &Epi,
    out: &mut Out,
    at: usize,
) -> Result<()> {
    let (m, n) = (a.nrows(), b.n());
    let opts = gemm_options();
    let err = |e| kernel_err(node, e);
    macro_rules! view {
        ($arr:expr) => {{
            let s = $arr
                .as_slice_mut()
                .ok_or_else(|| Error::Internal("output not contiguous".into()))?;
            ArrayViewMut2::from_shape((m, n), &mut s[at * n..(at + m) * n])
                .map_err(|e| Error::Internal(e.to_string()))?
        }};
    }
    match (epi, out) {
        (Epi::I32, Out::I32(o)) => match b {
            Weights::Dense(b) => gemm_i32(a, a_zp, b, view!(o), &opts),
            Weights::Sparse(b) => sparse::gemm_i32(a, a_zp, b, view!(o), &opts),
        }
        .map_err(err),
        (Epi::Quant { mult, bias, zp }, o) => {
            let zp_i = match zp {
                Zp::U8(z) => i32::from(z[0]),
                Zp::I8(z) => i32::from(z[0]),
            };
            let rq = Requant {
                multipliers: mult,
                zero_point: zp_i,
                bias: bias.as_deref(),
                activation: crate::Activation::None,
            };
            match (o, b) {
                (Out::U8(o), Weights::Dense(b)) => gemm_requant(a, a_zp, b, &rq, view!(o), &opts),
                (Out::I8(o), Weights::Dense(b)) => gemm_requant(a, a_zp, b, &rq, view!(o), &opts),
                (Out::U8(o), Weights::Sparse(b)) => {
                    sparse::gemm_requant(a, a_zp, b, &rq, view!(o), &opts)
                }
                (Out::I8(o), Weights::Sparse(b)) => {
                    sparse::gemm_requant(a, a_zp, b, &rq, view!(o), &opts)
                }
                _ => return Err(Error::Internal("output type mismatch".into())),
            }
            .map_err(err)
        }
        (Epi::F32 { mult, bias, .. }, Out::F32(o)) => {
            let dq = Dequant {
                multipliers: mult,
                bias: bias.as_deref(),
            };
            match b {
                Weights::Dense(b) => gemm_f32(a, a_zp, b, &dq, view!(o), &opts),
                Weights::Sparse(b) => sparse::gemm_f32(a, a_zp, b, &dq, view!(o), &opts),
            }
            .map_err(err)
        }
        _ => Err(Error::Internal("output type mismatch".into())),
    }
}

/// Flat index into a batch of shape `dims` for the broadcast index `idx` of `out`.
fn batch_index(idx: &[usize], dims: &[usize]) -> usize {
    let off = idx.len() - dims.len();
    dims.iter().enumerate().fold(0, |acc, (i, &d)| {
        acc * d + if d == 1 { 0 } else { idx[off + i] }
    })
}

impl QMatMul {
    fn run_typed<T: QElem>(
        &self,
        inputs: &[Option<&Tensor>],
        a: &ArrayD<T>,
        a_zp: T,
        a_scale: f32,
    ) -> Result<Tensor> {
        let node = &self.node;
        let trans_a = matches!(self.kind, Kind::Gemm { trans_a: true, .. });
        // A as [..., M, K].
        let mut a = a.view();
        if a.ndim() == 0 {
            return Err(invalid(node, "A must have at least one dimension"));
        }
        let a_vec = a.ndim() == 1;
        if a_vec {
            a = a.insert_axis(ndarray::Axis(0));
        }
        if trans_a {
            if a.ndim() != 2 {
                return Err(invalid(node, "transA needs a 2-D A"));
            }
            a = a.reversed_axes();
        }
        let a = a.as_standard_layout();
        let k = a.shape()[a.ndim() - 1];
        let m = a.shape()[a.ndim() - 2];
        let a_batch = &a.shape()[..a.ndim() - 2];

        // B: packed at plan time, or now.
        let b_t = get(&self.pos, inputs, B).ok_or_else(|| invalid(node, "B is missing"))?;
        let b_vec = b_t.shape().len() == 1;
        let trans_b = matches!(self.kind, Kind::Gemm { trans_b: true, .. });
        let b_zp = zero_points(node, inputs, self.pos[B_ZP])?;
        let (b_batch, n): (Vec<usize>, usize) = if let Some(p) = &self.packed {
            (Vec::new(), p.n())
        } else {
            let s = b_t.shape();
            match s.len() {
                0 => return Err(invalid(node, "B must have at least one dimension")),
                1 => (Vec::new(), 1),
                r if trans_b => {
                    if r != 2 {
                        return Err(invalid(node, "transB needs a 2-D B"));
                    }
                    (Vec::new(), s[0])
                }
                r => (s[..r - 2].to_vec(), s[r - 1]),
            }
        };
        let kb = match &self.packed {
            Some(p) => p.k(),
            None if b_vec => b_t.shape()[0],
            None if trans_b => b_t.shape()[1],
            None => b_t.shape()[b_t.shape().len() - 2],
        };
        if kb != k {
            return Err(Error::ShapeMismatch(format!(
                "{}: A has K = {k} but B has K = {kb}",
                describe(node)
            )));
        }
        let batch = broadcast_shapes(node, a_batch, &b_batch)?;
        let epi = self.epilogue(inputs, a_scale, n)?;
        let nb: usize = batch.iter().product();
        let total = nb
            .checked_mul(m)
            .and_then(|v| v.checked_mul(n))
            .ok_or_else(|| Error::LimitExceeded(format!("{}: output too large", describe(node))))?;
        let mut out_shape = batch.clone();
        out_shape.extend([m, n]);
        let mut out = match &epi {
            Epi::I32 => Out::I32(ArrayD::zeros(IxDyn(&out_shape))),
            Epi::Quant { zp: Zp::U8(_), .. } => Out::U8(ArrayD::zeros(IxDyn(&out_shape))),
            Epi::Quant { zp: Zp::I8(_), .. } => Out::I8(ArrayD::zeros(IxDyn(&out_shape))),
            Epi::F32 { .. } => Out::F32(ArrayD::zeros(IxDyn(&out_shape))),
        };
        if total > 0 {
            let a_flat = a
                .as_slice()
                .ok_or_else(|| Error::Internal("A not contiguous".into()))?;
            let packed_now;
            let b2d = |idx: usize| -> Result<Weights> {
                let bt = match b_t {
                    Tensor::U8(x) => slice_b(x, idx, k, n, b_vec).map(Tensor::U8),
                    Tensor::I8(x) => slice_b(x, idx, k, n, b_vec).map(Tensor::I8),
                    other => {
                        return Err(unsupported(
                            node,
                            format!(
                                "B of type {:?}: uint8 and int8 are supported",
                                other.dtype()
                            ),
                        ));
                    }
                }?;
                pack_b(node, &bt, b_zp.as_ref(), trans_b, SparseMode::Dense)
            };
            if b_batch.is_empty() {
                // One GEMM over every row of A (batches broadcast only from A).
                let p = match &self.packed {
                    Some(p) => p,
                    None => {
                        packed_now = b2d(0)?;
                        &packed_now
                    }
                };
                let rows = nb * m;
                let a2 = ArrayView2::from_shape((rows, k), a_flat)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                block(node, a2, a_zp, p, &epi, &mut out, 0)?;
            } else {
                let mut idx = vec![0usize; batch.len()];
                for bi in 0..nb {
                    let mut rem = bi;
                    for d in (0..batch.len()).rev() {
                        idx[d] = rem % batch[d];
                        rem /= batch[d];
                    }
                    let ai = batch_index(&idx, a_batch);
                    let bidx = batch_index(&idx, &b_batch);
                    let p = b2d(bidx)?;
                    let a2 = ArrayView2::from_shape((m, k), &a_flat[ai * m * k..(ai + 1) * m * k])
                        .map_err(|e| Error::Internal(e.to_string()))?;
                    block(node, a2, a_zp, &p, &epi, &mut out, bi * m)?;
                }
            }
        }
        let mut t = match out {
            Out::I32(o) => Tensor::I32(o),
            Out::U8(o) => Tensor::U8(o),
            Out::I8(o) => Tensor::I8(o),
            Out::F32(mut o) => {
                if let Epi::F32 {
                    fbias: Some(fb), ..
                } = &epi
                    && let Some(s) = o.as_slice_mut()
                {
                    for row in s.chunks_mut(n.max(1)) {
                        row.iter_mut().zip(fb).for_each(|(y, b)| *y += b);
                    }
                }
                Tensor::F32(o)
            }
        };
        // Undo the unit dimensions added for 1-D operands.
        let mut shape = out_shape;
        if b_vec {
            shape.pop();
        }
        if a_vec {
            let l = shape.len() - if b_vec { 1 } else { 2 };
            shape.remove(l);
        }
        if shape.len() != t.shape().len() {
            t = reshape(t, &shape)?;
        }
        Ok(t)
    }
}

fn reshape(t: Tensor, shape: &[usize]) -> Result<Tensor> {
    let e = |e: ndarray::ShapeError| Error::Internal(e.to_string());
    Ok(match t {
        Tensor::I32(a) => Tensor::I32(a.into_shape_with_order(IxDyn(shape)).map_err(e)?),
        Tensor::U8(a) => Tensor::U8(a.into_shape_with_order(IxDyn(shape)).map_err(e)?),
        Tensor::I8(a) => Tensor::I8(a.into_shape_with_order(IxDyn(shape)).map_err(e)?),
        Tensor::F32(a) => Tensor::F32(a.into_shape_with_order(IxDyn(shape)).map_err(e)?),
        other => other,
    })
}

/// Batch `idx` of B as a 2-D `[K, N]` array (a 1-D B is one `[K, 1]` column).
fn slice_b<T: Copy>(b: &ArrayD<T>, idx: usize, k: usize, n: usize, vec: bool) -> Result<ArrayD<T>> {
    let bs = b.as_standard_layout();
    let flat = bs.as_slice().unwrap_or(&[]);
    let (rows, cols) = if vec {
        (k, 1)
    } else if b.ndim() == 2 {
        (b.shape()[0], b.shape()[1])
    } else {
        (k, n)
    };
    let len = rows * cols;
    let part = flat
        .get(idx * len..(idx + 1) * len)
        .ok_or_else(|| Error::Internal("B batch out of range".into()))?;
    Array2::from_shape_vec((rows, cols), part.to_vec())
        .map(|a| a.into_dyn())
        .map_err(|e| Error::Internal(e.to_string()))
}

impl Operator for QMatMul {
    fn runs_sparse(&self) -> bool {
        matches!(self.packed, Some(Weights::Sparse(_)))
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let pos = &self.pos;
        let a_t = input(node, inputs, pos[A])?;
        if self.kind == Kind::Dynamic {
            let Tensor::F32(x) = a_t else {
                return Err(invalid(node, "A must be float32"));
            };
            let xs = x.as_standard_layout();
            let (s, z) = dynamic_params(node, xs.as_slice().unwrap_or(&[]))?;
            let q = super::qdq::quantize_tensor(node, x, &[s], &Zp::U8(vec![z]), 1)?;
            let Tensor::U8(q) = q else {
                return Err(Error::Internal("dynamic quantization gave no u8".into()));
            };
            return Ok(vec![self.run_typed::<u8>(inputs, &q, z, s)?]);
        }
        let a_scale = if pos[A_SCALE] == usize::MAX {
            1.0
        } else {
            scalar_scale(node, &scales(node, inputs, pos[A_SCALE])?, "a_scale")?
        };
        let a_zp = zero_points(node, inputs, pos[A_ZP])?;
        let y = match a_t {
            Tensor::U8(a) => {
                let z = scalar_zp::<u8>(node, a_zp.as_ref(), "A")?;
                self.run_typed(inputs, a, z, a_scale)?
            }
            Tensor::I8(a) => {
                let z = scalar_zp::<i8>(node, a_zp.as_ref(), "A")?;
                self.run_typed(inputs, a, z, a_scale)?
            }
            other => {
                return Err(unsupported(
                    node,
                    format!(
                        "A of type {:?}: uint8 and int8 are supported",
                        other.dtype()
                    ),
                ));
            }
        };
        Ok(vec![y])
    }
}

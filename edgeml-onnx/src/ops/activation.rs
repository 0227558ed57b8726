//! Float unary math and activations, `PRelu`, `Clip`, `Softmax`, `LogSoftmax`.
//!
//! Float-only operators accept `f32` (and `f16`/`f64`, computed in `f32`/`f64`).
//! NaN propagates as IEEE arithmetic says; `Relu(NaN) = NaN`, `Clip(NaN) = NaN`.

use super::num::{Num, zip_bcast};
use super::util::{Elem, dtype_err, input, map_split, slim, sum_f64, to_f32_vec};
use crate::ops::attr::{Attrs, describe, norm_axis};
use crate::{BuildContext, Error, Node, Operator, Registry, Result, Tensor, with_num};
use edgeml_core::{DType, f16};
use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;
use std::sync::Arc;

type F = Arc<dyn Fn(f64) -> f64 + Send + Sync>;
/// A vectorized `f32` map from a source slice into a destination of the same length.
type MapF32 = Arc<dyn Fn(&[f32], &mut [f32]) + Send + Sync>;

/// `erf` with absolute error below 2e-7 (series near 0, rational `erfc` elsewhere).
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x.abs() < 0.5 {
        // Maclaurin series: 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1)).
        let x2 = x * x;
        let mut term = x;
        let mut sum = x;
        for n in 1..12 {
            term *= -x2 / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        return sum * std::f64::consts::FRAC_2_SQRT_PI;
    }
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    if x >= 0.0 { 1.0 - erfc } else { erfc - 1.0 }
}

/// `Relu` in place over `f32`: `x ≤ 0 → +0`, NaN stays NaN (the same results as the
/// `Relu` operator); a branch-free loop the compiler vectorises.
pub(crate) fn relu_in_place(v: &mut [f32]) {
    // A select (always store) rather than a conditional store: this form compiles to
    // compare + blend vectors; `if x <= 0 { x = 0 }` stays a mispredicting branch.
    for x in v {
        *x = if *x <= 0.0 { 0.0 } else { *x };
    }
}

/// A float unary operator: the function is applied in `f64` and rounded, except that on
/// `f32` tensors most run the vectorized `f32` kernels of [`crate::kernels::vmath`]
/// (see [`fast_f32`]; within the few ulp of the `f64` result stated there, or exact).
struct FloatMap {
    node: Node,
    f: F,
    /// The vectorized `f32` kernel, for the operators that have one.
    fast: Option<MapF32>,
}

impl std::fmt::Debug for FloatMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FloatMap")
            .field("node", &self.node.op_type)
            .finish()
    }
}

impl Operator for FloatMap {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let t = input(&self.node, inputs, 0)?;
        let f = &self.f;
        let out = match t {
            Tensor::F32(a) => match (&self.fast, a.as_standard_layout().as_slice()) {
                (Some(k), Some(src)) => {
                    let mut dst = crate::buffers::take_f32_overwritten(src.len());
                    map_split(src, &mut dst, &**k);
                    Tensor::F32(
                        ArrayD::from_shape_vec(a.raw_dim(), dst)
                            .map_err(|e| Error::InvalidInput(e.to_string()))?,
                    )
                }
                _ => Tensor::F32(a.mapv(|x| f(x as f64) as f32)),
            },
            Tensor::F64(a) => Tensor::F64(a.mapv(|x| f(x))),
            Tensor::F16(a) => Tensor::F16(a.mapv(|x| f16::from_f64(f(x.to_f64())))),
            other => {
                return Err(dtype_err(
                    &self.node,
                    0,
                    other.dtype(),
                    &[DType::F32, DType::F64, DType::F16],
                ));
            }
        };
        Ok(vec![out])
    }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// The function of a float unary op, from its attributes.
fn float_fn(node: &Node, opset: i64) -> Result<Option<F>> {
    let a = Attrs::new(node);
    let f: F = match node.op_type.as_str() {
        "Sqrt" => Arc::new(f64::sqrt),
        "Exp" => Arc::new(f64::exp),
        "Log" => Arc::new(f64::ln),
        "Reciprocal" => Arc::new(|x| 1.0 / x),
        "Floor" => Arc::new(f64::floor),
        "Ceil" => Arc::new(f64::ceil),
        "Round" => Arc::new(f64::round_ties_even),
        "Erf" => Arc::new(erf),
        "Sin" => Arc::new(f64::sin),
        "Cos" => Arc::new(f64::cos),
        "Tan" => Arc::new(f64::tan),
        "Atan" => Arc::new(f64::atan),
        "Sigmoid" => Arc::new(sigmoid),
        "Tanh" => Arc::new(f64::tanh),
        "Softplus" => Arc::new(softplus),
        "Softsign" => Arc::new(|x| x / (1.0 + x.abs())),
        "Mish" => Arc::new(|x| x * softplus(x).tanh()),
        "LeakyRelu" => {
            let al = a.float("alpha", 0.01)? as f64;
            Arc::new(move |x| if x < 0.0 { al * x } else { x })
        }
        "Elu" => {
            let al = a.float("alpha", 1.0)? as f64;
            Arc::new(move |x| if x < 0.0 { al * (x.exp() - 1.0) } else { x })
        }
        "Celu" => {
            let al = a.float("alpha", 1.0)? as f64;
            Arc::new(move |x| x.max(0.0) + (al * ((x / al).exp() - 1.0)).min(0.0))
        }
        "Selu" => {
            let al = a.float("alpha", 1.673_263_2)? as f64;
            let g = a.float("gamma", 1.050_701)? as f64;
            Arc::new(move |x| {
                if x <= 0.0 {
                    g * al * (x.exp() - 1.0)
                } else {
                    g * x
                }
            })
        }
        "ThresholdedRelu" => {
            let al = a.float("alpha", 1.0)? as f64;
            Arc::new(move |x| if x > al { x } else { 0.0 })
        }
        "HardSigmoid" => {
            let al = a.float("alpha", 0.2)? as f64;
            let be = a.float("beta", 0.5)? as f64;
            Arc::new(move |x| (al * x + be).clamp(0.0, 1.0))
        }
        "HardSwish" => Arc::new(|x| x * (x / 6.0 + 0.5).clamp(0.0, 1.0)),
        "Gelu" => match a.string("approximate", "none")?.as_str() {
            "none" => Arc::new(|x| 0.5 * x * (1.0 + erf(x * std::f64::consts::FRAC_1_SQRT_2))),
            "tanh" => Arc::new(|x| {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044_715 * x * x * x)).tanh())
            }),
            other => {
                return Err(crate::ops::attr::invalid(
                    node,
                    format!("unknown approximate={other:?}"),
                ));
            }
        },
        _ => return Ok(None),
    };
    let _ = opset;
    Ok(Some(f))
}

const FLOAT_OPS: &[(&str, i64)] = &[
    ("Sqrt", 1),
    ("Exp", 1),
    ("Log", 1),
    ("Reciprocal", 1),
    ("Floor", 1),
    ("Ceil", 1),
    ("Round", 11),
    ("Erf", 9),
    ("Sin", 7),
    ("Cos", 7),
    ("Tan", 7),
    ("Atan", 7),
    ("Sigmoid", 1),
    ("Tanh", 1),
    ("Softplus", 1),
    ("Softsign", 1),
    ("Mish", 18),
    ("LeakyRelu", 1),
    ("Elu", 1),
    ("Celu", 12),
    ("Selu", 1),
    ("ThresholdedRelu", 10),
    ("HardSigmoid", 1),
    ("HardSwish", 14),
    ("Gelu", 20),
];

#[derive(Debug)]
struct PRelu {
    node: Node,
}

impl Operator for PRelu {
    #[allow(clippy::absurd_extreme_comparisons)] // unsigned types: slope never applies
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(&self.node, inputs, 0)?;
        let s = input(&self.node, inputs, 1)?;
        let out = with_num!(x.dtype(), T => {
            let xa = T::get(x).ok_or_else(|| dtype_err(&self.node, 0, x.dtype(), &[]))?;
            let sa = T::get(s).ok_or_else(|| dtype_err(&self.node, 1, s.dtype(), &[x.dtype()]))?;
            let y = zip_bcast(&self.node, xa, sa, |v, k| if v < T::ZERO { T::mul(v, k) } else { v })?;
            if y.shape() != xa.shape() {
                return Err(Error::ShapeMismatch(format!(
                    "{}: slope {:?} does not broadcast to input {:?}",
                    describe(&self.node), sa.shape(), xa.shape()
                )));
            }
            Ok(T::wrap(y))
        })?;
        Ok(vec![out])
    }
}

#[derive(Debug)]
struct Clip {
    node: Node,
    /// Attribute bounds (opset < 11).
    attr: Option<(f32, f32)>,
}

impl Operator for Clip {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(&self.node, inputs, 0)?;
        let bound = |i: usize| -> Result<Option<f64>> {
            match inputs.get(i).copied().flatten() {
                None => Ok(None),
                Some(t) if t.len() == 1 => with_num!(t.dtype(), T => {
                    Ok(T::get(t).and_then(|a| a.iter().next().map(|v| Elem::to_f64(*v))))
                }),
                Some(t) => Err(Error::InvalidInput(format!(
                    "{}: bound {i} must be a scalar, found shape {:?}",
                    describe(&self.node),
                    t.shape()
                ))),
            }
        };
        let (lo, hi) = match self.attr {
            Some((lo, hi)) => (Some(lo as f64), Some(hi as f64)),
            None => (bound(1)?, bound(2)?),
        };
        let out = with_num!(x.dtype(), T => {
            let a = T::get(x).ok_or_else(|| dtype_err(&self.node, 0, x.dtype(), &[]))?;
            let lo = lo.map(T::from_f64);
            let hi = hi.map(T::from_f64);
            Ok(T::wrap(a.mapv(|v| {
                let mut v = v;
                if let Some(l) = lo && v < l { v = l; }
                if let Some(h) = hi && v > h { v = h; }
                v
            })))
        })?;
        Ok(vec![out])
    }
}

#[derive(Debug)]
struct Softmax {
    node: Node,
    axis: i64,
    /// Opset < 13: flatten to 2-D at `axis` and normalize each row.
    coerce_2d: bool,
    log: bool,
}

/// Softmax (or log-softmax) over each contiguous row of `n` values (the last-axis case,
/// e.g. attention scores), compiled for the best ISA: the maximum and the `f64` sum are
/// taken in 16 and 8 lanes, `exp` is [`crate::kernels::vmath::exp`] inlined.
struct SoftmaxRows<'a> {
    data: &'a mut [f32],
    n: usize,
    log: bool,
}

impl crate::kernels::IsaBody for SoftmaxRows<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        use crate::kernels::vmath::exp;
        for row in self.data.chunks_exact_mut(self.n) {
            let mut lanes = [f32::NEG_INFINITY; 16];
            let mut chunks = row.chunks_exact(16);
            for c in &mut chunks {
                for (l, &v) in lanes.iter_mut().zip(c) {
                    *l = l.max(v);
                }
            }
            let m = chunks
                .remainder()
                .iter()
                .chain(&lanes)
                .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let s = if self.log {
                sum_f64(row, |v| f64::from(exp(v - m)))
            } else {
                row.iter_mut().for_each(|v| *v = exp(*v - m));
                sum_f64(row, f64::from)
            };
            if self.log {
                let ls = s.ln() as f32;
                row.iter_mut().for_each(|v| *v = (*v - m) - ls);
            } else {
                let r = (1.0 / s) as f32;
                row.iter_mut().for_each(|v| *v *= r);
            }
        }
    }
}

/// Softmax (or log-softmax) over the rows of a `[n, inner]` block, independently
/// for each of the `inner` columns: the maximum is subtracted, `exp` runs vectorized
/// over contiguous rows ([`crate::kernels::vmath::exp_in_place`]), sums are kept in
/// f64. `inner == 1` is [`SoftmaxRows`].
fn softmax_block(blk: &mut [f32], inner: usize, log: bool) {
    use crate::kernels::vmath::exp_in_place;
    let mut m = vec![f32::NEG_INFINITY; inner];
    for row in blk.chunks_exact(inner) {
        for (m, &v) in m.iter_mut().zip(row) {
            *m = m.max(v);
        }
    }
    let mut s = vec![0.0f64; inner];
    let mut e = vec![0.0f32; inner];
    for row in blk.chunks_exact_mut(inner) {
        for (v, &m) in row.iter_mut().zip(&m) {
            *v -= m;
        }
        e.copy_from_slice(row);
        exp_in_place(&mut e);
        for (s, &v) in s.iter_mut().zip(&e) {
            *s += f64::from(v);
        }
        if !log {
            row.copy_from_slice(&e);
        }
    }
    for row in blk.chunks_exact_mut(inner) {
        for (v, &s) in row.iter_mut().zip(&s) {
            if log {
                *v -= s.ln() as f32;
            } else {
                *v *= (1.0 / s) as f32;
            }
        }
    }
}

impl Operator for Softmax {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let t = input(&self.node, inputs, 0)?;
        let (shape, data): (Vec<usize>, Vec<f32>) =
            (t.shape().to_vec(), to_f32_vec(&self.node, t)?);
        let rank = shape.len().max(1);
        let axis = norm_axis(&self.node, self.axis, rank)?.min(shape.len());
        let (n, inner) = if self.coerce_2d {
            (shape[axis..].iter().product(), 1usize)
        } else if shape.is_empty() {
            (1, 1)
        } else {
            (shape[axis], shape[axis + 1..].iter().product())
        };
        let mut out = data;
        if n > 0 && inner == 1 {
            let log = self.log;
            // Whole rows per piece; each row is computed the same way however split.
            let rows = out.len() / n;
            if rows > 1 && out.len() >= 1 << 15 && crate::kernels::in_parallel_pool() {
                let piece = rows.div_ceil(2 * rayon::current_num_threads()) * n;
                out.par_chunks_mut(piece).for_each(|data| {
                    crate::kernels::on_best_isa(SoftmaxRows { data, n, log });
                });
            } else {
                crate::kernels::on_best_isa(SoftmaxRows {
                    data: &mut out,
                    n,
                    log,
                });
            }
        } else if n > 0 && inner > 0 {
            for blk in out.chunks_exact_mut(n * inner) {
                softmax_block(blk, inner, self.log);
            }
        }
        let a = ArrayD::from_shape_vec(IxDyn(&shape), out)
            .map_err(|e| Error::ShapeMismatch(format!("{}: {e}", describe(&self.node))))?;
        Ok(vec![match t.dtype() {
            DType::F64 => Tensor::F64(a.mapv(|v| v as f64)),
            DType::F16 => Tensor::F16(a.mapv(f16::from_f32)),
            _ => Tensor::F32(a),
        }])
    }
}

/// The vectorized `f32` kernel of a float unary operator, if it has one:
/// - exact (bit-identical to rounding the `f64` function, as one correctly rounded `f32`
///   operation is): `Sqrt`, `Reciprocal`, `Floor`, `Ceil`, `Round`, `LeakyRelu`,
///   `ThresholdedRelu`;
/// - within a few ulp ([`crate::kernels::vmath`] states each bound): `Exp`, `Log`,
///   `Sigmoid`, `Tanh`, `Erf`, `Softplus`, `Mish`, `Elu`, `Selu`, `Celu`, `HardSigmoid`,
///   `HardSwish`, `Gelu` (both forms).
fn fast_f32(node: &Node) -> Result<Option<MapF32>> {
    use crate::kernels::vmath;
    let a = Attrs::new(node);
    let f: MapF32 = match node.op_type.as_str() {
        "Exp" => Arc::new(vmath::exp_into),
        "Sigmoid" => Arc::new(vmath::sigmoid_into),
        "Tanh" => Arc::new(vmath::tanh_into),
        "HardSwish" => Arc::new(vmath::hardswish_into),
        "Log" => Arc::new(vmath::ln_into),
        "Erf" => Arc::new(vmath::erf_into),
        "Softplus" => Arc::new(vmath::softplus_into),
        "Mish" => Arc::new(vmath::mish_into),
        "Sqrt" => Arc::new(vmath::sqrt_into),
        "Reciprocal" => Arc::new(vmath::reciprocal_into),
        "Floor" => Arc::new(vmath::floor_into),
        "Ceil" => Arc::new(vmath::ceil_into),
        "Round" => Arc::new(vmath::round_into),
        "Gelu" => match a.string("approximate", "none")?.as_str() {
            "tanh" => Arc::new(vmath::gelu_tanh_into),
            _ => Arc::new(vmath::gelu_into),
        },
        "LeakyRelu" => {
            let al = a.float("alpha", 0.01)?;
            Arc::new(move |s, d| vmath::leaky_relu_into(s, d, al))
        }
        "ThresholdedRelu" => {
            let al = a.float("alpha", 1.0)?;
            Arc::new(move |s, d| vmath::thresholded_relu_into(s, d, al))
        }
        "Elu" => {
            let al = a.float("alpha", 1.0)?;
            Arc::new(move |s, d| vmath::elu_into(s, d, al))
        }
        "Selu" => {
            let al = a.float("alpha", 1.673_263_2)?;
            let g = a.float("gamma", 1.050_701)?;
            Arc::new(move |s, d| vmath::selu_into(s, d, al, g))
        }
        "Celu" => {
            let al = a.float("alpha", 1.0)?;
            Arc::new(move |s, d| vmath::celu_into(s, d, al))
        }
        "HardSigmoid" => {
            let al = a.float("alpha", 0.2)?;
            let be = a.float("beta", 0.5)?;
            Arc::new(move |s, d| vmath::hard_sigmoid_into(s, d, al, be))
        }
        _ => return Ok(None),
    };
    Ok(Some(f))
}

/// Registers the float unary operators and activations.
pub fn register(r: &mut Registry) {
    for &(name, since) in FLOAT_OPS {
        r.register("", name, since, i64::MAX, |c: &BuildContext<'_>| {
            let f = float_fn(c.node, c.opset)?.ok_or_else(|| {
                crate::ops::attr::unsupported(c.node, "no float function for this operator")
            })?;
            Ok(Box::new(FloatMap {
                node: slim(c.node),
                f,
                fast: fast_f32(c.node)?,
            }) as Box<dyn Operator>)
        });
    }
    r.register("", "PRelu", 1, i64::MAX, |c: &BuildContext<'_>| {
        Ok(Box::new(PRelu { node: slim(c.node) }) as Box<dyn Operator>)
    });
    r.register("", "Clip", 1, i64::MAX, |c: &BuildContext<'_>| {
        let a = Attrs::new(c.node);
        let attr = if c.opset < 11 {
            Some((a.float("min", f32::MIN)?, a.float("max", f32::MAX)?))
        } else {
            None
        };
        Ok(Box::new(Clip {
            node: slim(c.node),
            attr,
        }) as Box<dyn Operator>)
    });
    for (name, log) in [("Softmax", false), ("LogSoftmax", true)] {
        r.register("", name, 1, i64::MAX, move |c: &BuildContext<'_>| {
            let coerce_2d = c.opset < 13;
            let axis = Attrs::new(c.node).int("axis", if coerce_2d { 1 } else { -1 })?;
            Ok(Box::new(Softmax {
                node: slim(c.node),
                axis,
                coerce_2d,
                log,
            }) as Box<dyn Operator>)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::erf;

    #[test]
    fn erf_matches_known_values() {
        // Values from Abramowitz & Stegun table 7.1.
        for (x, want) in [
            (0.0, 0.0),
            (0.1, 0.112_462_916),
            (0.5, 0.520_499_878),
            (1.0, 0.842_700_793),
            (2.0, 0.995_322_265),
            (-1.5, -0.966_105_146),
        ] {
            assert!((erf(x) - want).abs() < 2e-7, "erf({x}) = {}", erf(x));
        }
    }
}

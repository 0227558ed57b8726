//! `QuantizeLinear`, `DequantizeLinear` and `DynamicQuantizeLinear`.

use super::input;
use super::params::{Zp, check_count, scales, zero_points, zero_points_of, zp_as};
use crate::QElem;
use edgeml_onnx::ops::attr::{Attrs, describe, invalid, norm_axis, unsupported};
use edgeml_onnx::{BuildContext, Error, Node, Operator, Result, Tensor};
use ndarray::{ArrayD, IxDyn};

/// Reads the attributes common to Q and DQ: `axis` (default 1) and `block_size`.
fn axis_attr(node: &Node) -> Result<i64> {
    let a = Attrs::new(node);
    if a.int("block_size", 0)? != 0 {
        return Err(unsupported(
            node,
            "blocked quantization (block_size > 0) is not supported",
        ));
    }
    a.int("axis", 1)
}

/// `(outer, channels, inner)` of `shape` around `axis` when `n` parameters are per-axis
/// (`n > 1`), or `(1, 1, len)` for per-tensor parameters.
fn split(node: &Node, shape: &[usize], axis: i64, n: usize, what: &str) -> Result<[usize; 3]> {
    let len: usize = shape.iter().product();
    if n == 1 {
        return Ok([1, 1, len]);
    }
    let ax = norm_axis(node, axis, shape.len())?;
    check_count(node, n, shape[ax], what)?;
    let outer = shape[..ax].iter().product();
    let inner = shape[ax + 1..].iter().product();
    Ok([outer, shape[ax], inner])
}

/// `QuantizeLinear`.
#[derive(Debug)]
struct Quantize {
    node: Node,
    axis: i64,
    /// Output type when the zero point is omitted (u8, or opset 21's `output_dtype`).
    default_signed: bool,
}

pub(super) fn build_quantize(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let node = ctx.node.clone();
    let a = Attrs::new(&node);
    if a.has("saturate") && a.int("saturate", 1)? != 1 {
        // `saturate` only concerns float8 outputs, which are refused below anyway.
        return Err(unsupported(
            &node,
            "saturate = 0 applies to float8 outputs only",
        ));
    }
    let default_signed = match a.int("output_dtype", 0)? {
        0 | 2 => false,
        3 => true,
        other => {
            return Err(unsupported(
                &node,
                format!("output_dtype {other}: only uint8 (2) and int8 (3) outputs are supported"),
            ));
        }
    };
    Ok(Box::new(Quantize {
        axis: axis_attr(&node)?,
        default_signed,
        node,
    }))
}

/// `round_half_even(x / s)` clamped to `[lo − z, hi − z]`, plus `z`, as MLAS computes
/// it (division, clamp in float, round to nearest even); NaN gives the lowest value.
///
/// The clamp is written as selects (`v >= lo` is false for NaN, which becomes `lo`) and
/// the rounding reads the bits of `v + 1.5·2²³` (exact for the clamped `|v| ≤ 510`): the
/// same integers as `round_even_small`, in a form the compiler vectorizes.
#[inline(always)]
fn quantize_one<O: QElem>(x: f32, s: f32, z: i32) -> O {
    let (lo, hi) = O::RANGE;
    let (lo, hi) = ((lo - z) as f32, (hi - z) as f32);
    let v = x / s;
    let v = if v >= lo { v } else { lo };
    let v = if v > hi { hi } else { v };
    O::from_i32_clamped((v + 12_582_912.0).to_bits() as i32 - 0x4B40_0000 + z)
}

/// `v.round_ties_even() as i32` for `|v| < 2^22`, as the sum with `1.5 · 2^23` rounds it
/// in the default rounding mode: two additions that vectorize, where
/// `round_ties_even` is a library call on baseline x86-64.
#[inline(always)]
pub(super) fn round_even_small(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    ((v + MAGIC) - MAGIC) as i32
}

/// Applies `f(value, scale, zero point)` to every element of `x` with per-tensor (one
/// value) or per-axis (one per slice along `axis`) scales and zero points.
fn map_per_axis<X: Copy, Y: edgeml_onnx::buffers::Pooled>(
    node: &Node,
    x: &ArrayD<X>,
    scales: &[f32],
    zps: &[i32],
    axis: i64,
    f: impl Fn(X, f32, i32) -> Y,
) -> Result<ArrayD<Y>> {
    let n = scales.len().max(zps.len());
    if scales.len() != zps.len() && scales.len() != 1 && zps.len() != 1 {
        return Err(Error::ShapeMismatch(format!(
            "{}: {} scales and {} zero points",
            describe(node),
            scales.len(),
            zps.len()
        )));
    }
    let [outer, c, inner] = split(node, x.shape(), axis, n, "scale/zero point")?;
    let xs = x.as_standard_layout();
    let xs = xs.as_slice().unwrap_or(&[]);
    // Every element is written below; a pooled block saves the zero fill. An indexed
    // loop over two slices vectorizes where `extend` over a mapped iterator does not.
    let mut out = edgeml_onnx::buffers::take_overwritten::<Y>(xs.len());
    for o in 0..outer {
        for ch in 0..c {
            let s = scales[if scales.len() == 1 { 0 } else { ch }];
            let z = zps[if zps.len() == 1 { 0 } else { ch }];
            let base = (o * c + ch) * inner;
            edgeml_onnx::kernels::on_best_isa(MapSlice {
                out: &mut out[base..base + inner],
                xs: &xs[base..base + inner],
                s,
                z,
                f: &f,
            });
        }
    }
    ArrayD::from_shape_vec(IxDyn(x.shape()), out).map_err(|e| Error::Internal(e.to_string()))
}

/// `out[i] = f(xs[i], s, z)`, compiled for the CPU's best ISA (through
/// `edgeml_onnx::kernels::on_best_isa`): 16 lanes with AVX-512 where the default
/// x86-64 target has 4. The functions passed are `#[inline(always)]` or small closures,
/// inlined into the ISA's copy of the loop.
struct MapSlice<'a, X, Y, F> {
    out: &'a mut [Y],
    xs: &'a [X],
    s: f32,
    z: i32,
    f: &'a F,
}

impl<X: Copy, Y, F: Fn(X, f32, i32) -> Y> edgeml_onnx::kernels::IsaBody for MapSlice<'_, X, Y, F> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let (s, z, f) = (self.s, self.z, self.f);
        for (y, &v) in self.out.iter_mut().zip(self.xs) {
            *y = f(v, s, z);
        }
    }
}

fn quantize_typed<O: QElem>(
    node: &Node,
    x: &ArrayD<f32>,
    scales: &[f32],
    zps: &[O],
    axis: i64,
) -> Result<ArrayD<O>> {
    let zps: Vec<i32> = zps.iter().map(|z| z.to_i32()).collect();
    map_per_axis(node, x, scales, &zps, axis, quantize_one::<O>)
}

/// Quantizes `x` (f32) with per-tensor or per-axis parameters into a tensor of the zero
/// point's type (u8 or i8).
pub(super) fn quantize_tensor(
    node: &Node,
    x: &ArrayD<f32>,
    scales: &[f32],
    zp: &Zp,
    axis: i64,
) -> Result<Tensor> {
    Ok(match zp {
        Zp::U8(z) => Tensor::U8(quantize_typed(node, x, scales, z, axis)?),
        Zp::I8(z) => Tensor::I8(quantize_typed(node, x, scales, z, axis)?),
    })
}

impl Operator for Quantize {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let x = input(node, inputs, 0)?;
        let owned;
        let x = match x {
            Tensor::F32(a) => a,
            Tensor::F16(a) => {
                owned = a.mapv(|v| v.to_f32());
                &owned
            }
            other => {
                return Err(Error::InvalidInput(format!(
                    "{}: input 0 must be float32 (or float16), found {:?}",
                    describe(node),
                    other.dtype()
                )));
            }
        };
        let s = scales(node, inputs, 1)?;
        let zp = zero_points(node, inputs, 2)?.unwrap_or(if self.default_signed {
            Zp::I8(vec![0])
        } else {
            Zp::U8(vec![0])
        });
        Ok(vec![quantize_tensor(node, x, &s, &zp, self.axis)?])
    }
}

/// `DequantizeLinear`.
#[derive(Debug)]
struct Dequantize {
    node: Node,
    axis: i64,
}

pub(super) fn build_dequantize(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    Ok(Box::new(Dequantize {
        axis: axis_attr(ctx.node)?,
        node: ctx.node.clone(),
    }))
}

fn dequantize_typed<T: Copy + Into<i64>>(
    node: &Node,
    x: &ArrayD<T>,
    scales: &[f32],
    zps: &[i32],
    axis: i64,
) -> Result<ArrayD<f32>> {
    // (x − z) is exact in i64; its f32 conversion rounds only beyond 2^24, as
    // onnxruntime's int32 path does.
    map_per_axis(node, x, scales, zps, axis, |v: T, s, z| {
        (v.into() - i64::from(z)) as f32 * s
    })
}

impl Operator for Dequantize {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let x = input(node, inputs, 0)?;
        let s = scales(node, inputs, 1)?;
        let zt = inputs.get(2).copied().flatten();
        let zps: Vec<i32> = match (x, zt) {
            (Tensor::U8(_), Some(z)) => zp_as::<u8>(node, &zero_points_of(node, z, 2)?, "x")?
                .iter()
                .map(|&v| v.into())
                .collect(),
            (Tensor::I8(_), Some(z)) => zp_as::<i8>(node, &zero_points_of(node, z, 2)?, "x")?
                .iter()
                .map(|&v| v.into())
                .collect(),
            (Tensor::I32(_), Some(Tensor::I32(z))) => {
                if z.iter().any(|&v| v != 0) {
                    return Err(invalid(node, "an int32 input needs a zero point of 0"));
                }
                vec![0; z.len().max(1)]
            }
            (_, None) => vec![0],
            (x, Some(z)) => {
                return Err(invalid(
                    node,
                    format!(
                        "zero point of type {:?} for an input of type {:?}",
                        z.dtype(),
                        x.dtype()
                    ),
                ));
            }
        };
        let y = match x {
            Tensor::U8(a) => dequantize_typed(node, a, &s, &zps, self.axis)?,
            Tensor::I8(a) => dequantize_typed(node, a, &s, &zps, self.axis)?,
            Tensor::I32(a) => dequantize_typed(node, a, &s, &zps, self.axis)?,
            other => {
                return Err(unsupported(
                    node,
                    format!(
                        "input of type {:?}: uint8, int8 and int32 are supported",
                        other.dtype()
                    ),
                ));
            }
        };
        Ok(vec![Tensor::F32(y)])
    }
}

/// `DynamicQuantizeLinear`: u8 with the range of `x` widened to include 0.
#[derive(Debug)]
struct Dynamic {
    node: Node,
}

pub(super) fn build_dynamic(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    Ok(Box::new(Dynamic {
        node: ctx.node.clone(),
    }))
}

/// The u8 scale and zero point that `DynamicQuantizeLinear` derives from `x`, as the
/// ONNX reference and onnxruntime compute them: the range `[min(x, 0), max(x, 0)]`,
/// `scale = (max − min) / 255` (1 when the range is empty), `zero_point =
/// round_half_even(clamp(−min / scale, 0, 255))`.
///
/// # Errors
/// A NaN or infinite element (onnxruntime would return a NaN scale).
pub(super) fn dynamic_params(node: &Node, x: &[f32]) -> Result<(f32, u8)> {
    let (mut lo, mut hi) = (0.0f32, 0.0f32);
    for &v in x {
        if !v.is_finite() {
            return Err(Error::InvalidInput(format!(
                "{}: cannot quantize a tensor holding {v}",
                describe(node)
            )));
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let scale = if hi == lo { 1.0 } else { (hi - lo) / 255.0 };
    let zp = (0.0 - lo / scale).clamp(0.0, 255.0).round_ties_even() as u8;
    Ok((scale, zp))
}

impl Operator for Dynamic {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let Tensor::F32(x) = input(node, inputs, 0)? else {
            return Err(invalid(node, "input 0 must be float32"));
        };
        let xs = x.as_standard_layout();
        let (scale, zp) = dynamic_params(node, xs.as_slice().unwrap_or(&[]))?;
        let y = quantize_typed::<u8>(node, x, &[scale], &[zp], 1)?;
        Ok(vec![
            Tensor::U8(y),
            Tensor::F32(ArrayD::from_elem(IxDyn(&[]), scale)),
            Tensor::U8(ArrayD::from_elem(IxDyn(&[]), zp)),
        ])
    }
}

//! Reading and validating quantization parameters (scales, zero points, axes).

use super::input;
use crate::QElem;
use edgeml_onnx::ops::attr::{describe, invalid, unsupported};
use edgeml_onnx::{Error, Node, Result, Tensor};

/// Scales from input `i`: `f32` (or `f16`), one value or one per channel, each finite
/// and positive.
pub(super) fn scales(node: &Node, inputs: &[Option<&Tensor>], i: usize) -> Result<Vec<f32>> {
    scales_of(node, input(node, inputs, i)?, i)
}

/// The elements of `a` in logical order: one copy for a contiguous array (every
/// tensor the runtime hands an operator), the element iterator otherwise.
pub(super) fn elements<T: Clone>(a: &ndarray::ArrayD<T>) -> Vec<T> {
    a.as_slice()
        .map_or_else(|| a.iter().cloned().collect(), <[T]>::to_vec)
}

/// [`scales`] for a tensor already in hand (input `i` of `node`).
pub(super) fn scales_of(node: &Node, t: &Tensor, i: usize) -> Result<Vec<f32>> {
    let v: Vec<f32> = match t {
        Tensor::F32(a) => elements(a),
        Tensor::F16(a) => a.iter().map(|v| v.to_f32()).collect(),
        other => {
            return Err(Error::InvalidInput(format!(
                "{}: scale (input {i}) must be float32, found {:?}",
                describe(node),
                other.dtype()
            )));
        }
    };
    if t.shape().len() > 1 {
        return Err(invalid(
            node,
            format!(
                "scale (input {i}) must be a scalar or 1-D, found shape {:?}",
                t.shape()
            ),
        ));
    }
    if v.is_empty() {
        return Err(invalid(node, format!("scale (input {i}) is empty")));
    }
    if let Some(s) = v.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(Error::InvalidInput(format!(
            "{}: scale (input {i}) = {s} must be finite and positive",
            describe(node)
        )));
    }
    Ok(v)
}

/// A zero-point tensor of a u8 or i8 type.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Zp {
    /// Unsigned 8-bit.
    U8(Vec<u8>),
    /// Signed 8-bit.
    I8(Vec<i8>),
}

impl Zp {
    /// Number of zero points.
    pub(super) fn len(&self) -> usize {
        match self {
            Zp::U8(v) => v.len(),
            Zp::I8(v) => v.len(),
        }
    }
}

/// Zero points from optional input `i`: `None` when omitted. Must be u8 or i8, a scalar
/// or 1-D.
pub(super) fn zero_points(node: &Node, inputs: &[Option<&Tensor>], i: usize) -> Result<Option<Zp>> {
    let Some(t) = inputs.get(i).copied().flatten() else {
        return Ok(None);
    };
    zero_points_of(node, t, i).map(Some)
}

/// [`zero_points`] for a tensor already in hand.
pub(super) fn zero_points_of(node: &Node, t: &Tensor, i: usize) -> Result<Zp> {
    if t.shape().len() > 1 {
        return Err(invalid(
            node,
            format!(
                "zero point (input {i}) must be a scalar or 1-D, found shape {:?}",
                t.shape()
            ),
        ));
    }
    let zp = match t {
        Tensor::U8(a) => Zp::U8(elements(a)),
        Tensor::I8(a) => Zp::I8(elements(a)),
        other => {
            return Err(unsupported(
                node,
                format!(
                    "zero point (input {i}) of type {:?}: only uint8 and int8 are supported",
                    other.dtype()
                ),
            ));
        }
    };
    if zp.len() == 0 {
        return Err(invalid(node, format!("zero point (input {i}) is empty")));
    }
    Ok(zp)
}

/// The zero points as `T`, which must be their type (`what` names the pairing).
pub(super) fn zp_as<T: QElem>(node: &Node, zp: &Zp, what: &str) -> Result<Vec<T>> {
    let v: Option<Vec<T>> = match zp {
        Zp::U8(v) if !T::SIGNED => Some(v.iter().map(|&x| T::from_i32_clamped(x.into())).collect()),
        Zp::I8(v) if T::SIGNED => Some(v.iter().map(|&x| T::from_i32_clamped(x.into())).collect()),
        _ => None,
    };
    v.ok_or_else(|| {
        invalid(
            node,
            format!(
                "{what}: zero point type differs from the data type {}",
                T::NAME
            ),
        )
    })
}

/// A scalar (per-tensor) zero point of type `T`, or `T`'s zero when omitted.
pub(super) fn scalar_zp<T: QElem>(node: &Node, zp: Option<&Zp>, what: &str) -> Result<T> {
    match zp {
        None => Ok(T::from_i32_clamped(0)),
        Some(z) => {
            let v = zp_as::<T>(node, z, what)?;
            if v.len() != 1 {
                return Err(unsupported(
                    node,
                    format!(
                        "{what}: {} zero points; only a per-tensor zero point is supported",
                        v.len()
                    ),
                ));
            }
            Ok(v[0])
        }
    }
}

/// The one scale of a per-tensor parameter.
pub(super) fn scalar_scale(node: &Node, s: &[f32], what: &str) -> Result<f32> {
    match s {
        [v] => Ok(*v),
        _ => Err(invalid(
            node,
            format!("{what} must be a single value, found {}", s.len()),
        )),
    }
}

/// Checks that `n` per-axis parameters fit extent `dim` (1 means per-tensor).
pub(super) fn check_count(node: &Node, n: usize, dim: usize, what: &str) -> Result<()> {
    if n == 1 || n == dim {
        Ok(())
    } else {
        Err(Error::ShapeMismatch(format!(
            "{}: {n} values of {what} for an axis of extent {dim}",
            describe(node)
        )))
    }
}

//! Quantization math: scales and zero points from real ranges, quantization of
//! weights and biases — the numerics of onnxruntime's quantizer
//! (`onnxruntime.quantization.quant_utils.compute_scale_zp`, `quantize_data`,
//! `quantize_bias_static`) and of the ONNX `QuantizeLinear` operator.
//!
//! For a real range `[rmin, rmax]` and an integer range `[qmin, qmax]`:
//! 1. the range is widened to include 0 (`rmin = min(rmin, 0)`, `rmax = max(rmax, 0)`),
//!    so that 0.0 is exactly representable (zero padding, ReLU outputs);
//! 2. symmetric quantization uses `[-m, m]` with `m = max(|rmin|, |rmax|)`;
//! 3. `scale = (rmax - rmin) / (qmax - qmin)`, computed in `f64` and stored as `f32`;
//!    a scale below `f32::MIN_POSITIVE` (a constant-zero tensor) becomes `1.0` with
//!    zero point 0, as onnxruntime does;
//! 4. the zero point is `round(qmin - rmin / scale)`, or `round((qmin + qmax) / 2)`
//!    when symmetric (0 for i8/i16, 128 for u8, 32768 for u16), rounding half to even.
//!
//! Integer ranges: u8 `[0, 255]`, i8 `[-128, 127]`, u16 `[0, 65535]`,
//! i16 `[-32768, 32767]`; symmetric i8/i16 use `[-127, 127]`/`[-32767, 32767]`;
//! `reduce_range` (for CPUs whose u8×i8 products would overflow 16 bits) uses
//! u8 `[0, 127]`, i8 `[-64, 64]`, u16 `[0, 32767]`, i16 `[-16384, 16384]`.
//!
//! Quantizing a value is `saturate(round_half_to_even(x / scale) + zero_point)` with
//! the division in `f32`, as the ONNX `QuantizeLinear` definition says.

use crate::{Error, Result};
use edgeml_core::{DType, QuantParams};
use ndarray::{ArrayD, ArrayViewD, Axis};

/// The integer range `[qmin, qmax]` used for `qtype` (see the [module](self) docs).
///
/// # Errors
/// [`Error::Invalid`] if `qtype` is not one of `U8`, `I8`, `U16`, `I16`.
pub fn qrange(qtype: DType, symmetric: bool, reduce_range: bool) -> Result<(i32, i32)> {
    Ok(match (qtype, reduce_range, symmetric) {
        (DType::U8, true, _) => (0, 127),
        (DType::I8, true, _) => (-64, 64),
        (DType::U16, true, _) => (0, 32767),
        (DType::I16, true, _) => (-16384, 16384),
        (DType::I8, false, true) => (-127, 127),
        (DType::I16, false, true) => (-32767, 32767),
        (DType::U8, false, _) => (0, 255),
        (DType::I8, false, false) => (-128, 127),
        (DType::U16, false, _) => (0, 65535),
        (DType::I16, false, false) => (-32768, 32767),
        _ => {
            return Err(Error::Invalid(format!(
                "{qtype} is not a quantization type (u8, i8, u16, i16)"
            )));
        }
    })
}

/// `(scale, zero_point)` for the real range `[rmin, rmax]` and the integer range
/// `[qmin, qmax]` (which must contain 0), as onnxruntime's `compute_scale_zp`.
fn scale_zp(rmin: f32, rmax: f32, qmin: i32, qmax: i32, symmetric: bool) -> (f32, i32) {
    let mut lo = rmin.min(0.0);
    let mut hi = rmax.max(0.0);
    if symmetric {
        let m = lo.abs().max(hi.abs());
        lo = -m;
        hi = m;
    }
    let scale = (f64::from(hi) - f64::from(lo)) / (f64::from(qmax) - f64::from(qmin));
    if scale < f64::from(f32::MIN_POSITIVE) {
        return (1.0, 0);
    }
    let zp = if symmetric {
        ((f64::from(qmin) + f64::from(qmax)) / 2.0).round_ties_even()
    } else {
        (f64::from(qmin) - f64::from(lo) / scale).round_ties_even()
    };
    // In range by construction (lo <= 0 <= hi); the clamp only guards rounding.
    (scale as f32, (zp as i32).clamp(qmin, qmax))
}

fn check_range(rmin: f32, rmax: f32) -> Result<()> {
    if !(rmin.is_finite() && rmax.is_finite()) {
        return Err(Error::NonFinite(format!("range [{rmin}, {rmax}]")));
    }
    if rmin > rmax {
        return Err(Error::Invalid(format!(
            "range [{rmin}, {rmax}]: rmin > rmax"
        )));
    }
    Ok(())
}

fn core_err(e: edgeml_core::Error) -> Error {
    Error::Invalid(e.to_string())
}

/// Per-tensor parameters for the real range `[rmin, rmax]`, as onnxruntime's
/// `compute_scale_zp` with `get_qmin_qmax_for_qType(qtype, reduce_range, symmetric)`.
///
/// ```
/// use edgeml_core::DType;
/// let p = edgeml_quant::math::compute_scale_zp(-1.0, 3.0, DType::U8, false, false)?;
/// assert_eq!(p.zero_points(), &[64]); // round(0 - (-1) / (4 / 255)) = round(63.75)
/// assert!((p.scales()[0] - 4.0 / 255.0).abs() < 1e-9);
/// # Ok::<(), edgeml_quant::Error>(())
/// ```
///
/// # Errors
/// [`Error::NonFinite`] for a NaN or infinite bound, [`Error::Invalid`] for
/// `rmin > rmax` or a `qtype` that is not u8/i8/u16/i16.
pub fn compute_scale_zp(
    rmin: f32,
    rmax: f32,
    qtype: DType,
    symmetric: bool,
    reduce_range: bool,
) -> Result<QuantParams> {
    check_range(rmin, rmax)?;
    let (qmin, qmax) = qrange(qtype, symmetric, reduce_range)?;
    let (s, z) = scale_zp(rmin, rmax, qmin, qmax, symmetric);
    QuantParams::per_tensor(s, z, qtype).map_err(core_err)
}

/// Per-axis parameters: one [`compute_scale_zp`] per slice of `data` along `axis`
/// (`data`'s own min and max in each slice), as onnxruntime quantizes per-channel
/// weights.
///
/// # Errors
/// [`Error::Invalid`] if `axis` is outside `data`'s rank or `data` has an empty
/// axis; [`Error::NonFinite`] if a value is NaN or infinite; as [`compute_scale_zp`].
pub fn per_axis_params(
    data: ArrayViewD<'_, f32>,
    axis: usize,
    qtype: DType,
    symmetric: bool,
    reduce_range: bool,
) -> Result<QuantParams> {
    if axis >= data.ndim() || data.is_empty() {
        return Err(Error::Invalid(format!(
            "per-axis parameters on axis {axis} of a tensor of shape {:?}",
            data.shape()
        )));
    }
    let (qmin, qmax) = qrange(qtype, symmetric, reduce_range)?;
    let mut scales = Vec::with_capacity(data.len_of(Axis(axis)));
    let mut zps = Vec::with_capacity(scales.capacity());
    for slice in data.axis_iter(Axis(axis)) {
        let (lo, hi) = finite_min_max(slice.iter().copied())?;
        let (s, z) = scale_zp(lo, hi, qmin, qmax, symmetric);
        scales.push(s);
        zps.push(z);
    }
    QuantParams::per_axis(scales, zps, axis, qtype).map_err(core_err)
}

/// Per-tensor parameters from `data`'s own min and max.
///
/// # Errors
/// [`Error::NonFinite`] if a value is NaN or infinite; as [`compute_scale_zp`].
pub fn per_tensor_params(
    data: ArrayViewD<'_, f32>,
    qtype: DType,
    symmetric: bool,
    reduce_range: bool,
) -> Result<QuantParams> {
    let (lo, hi) = finite_min_max(data.iter().copied())?;
    compute_scale_zp(lo, hi, qtype, symmetric, reduce_range)
}

/// Min and max of `values` (`(0, 0)` when empty), refusing non-finite values.
fn finite_min_max(values: impl Iterator<Item = f32>) -> Result<(f32, f32)> {
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for v in values {
        if !v.is_finite() {
            return Err(Error::NonFinite(format!("value {v}")));
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    Ok(if lo > hi { (0.0, 0.0) } else { (lo, hi) })
}

/// `saturate(round_half_to_even(x / scale) + zero_point)` into `[qmin, qmax]`.
#[inline]
fn quantize_one(x: f32, scale: f32, zp: i32, qmin: i32, qmax: i32) -> i32 {
    let q = f64::from((x / scale).round_ties_even()) + f64::from(zp);
    q.clamp(f64::from(qmin), f64::from(qmax)) as i32
}

/// Quantizes `data` with `params` (per-tensor, or per-axis along `params.axis()`),
/// saturating to the full range of `params.qtype()`. Values are returned as `i32`;
/// they fit the quantized type.
///
/// # Errors
/// [`Error::NonFinite`] if a value is NaN or infinite; [`Error::Shape`] if per-axis
/// parameters do not fit `data`'s shape.
pub fn quantize(data: ArrayViewD<'_, f32>, params: &QuantParams) -> Result<ArrayD<i32>> {
    params
        .check_shape(data.shape())
        .map_err(|e| Error::Shape(e.to_string()))?;
    let (qmin, qmax) = qrange(params.qtype(), false, false)?;
    let mut out = ArrayD::<i32>::zeros(data.raw_dim());
    let per_channel = |c: usize| {
        let i = if params.is_per_tensor() { 0 } else { c };
        (params.scales()[i], params.zero_points()[i])
    };
    match params.axis() {
        None => {
            let (s, z) = per_channel(0);
            for (o, &x) in out.iter_mut().zip(data.iter()) {
                if !x.is_finite() {
                    return Err(Error::NonFinite(format!("value {x}")));
                }
                *o = quantize_one(x, s, z, qmin, qmax);
            }
        }
        Some(axis) => {
            for (c, (mut o, d)) in out
                .axis_iter_mut(Axis(axis))
                .zip(data.axis_iter(Axis(axis)))
                .enumerate()
            {
                let (s, z) = per_channel(c);
                for (o, &x) in o.iter_mut().zip(d.iter()) {
                    if !x.is_finite() {
                        return Err(Error::NonFinite(format!("value {x}")));
                    }
                    *o = quantize_one(x, s, z, qmin, qmax);
                }
            }
        }
    }
    Ok(out)
}

/// A quantized bias: int32 values and their parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedBias {
    /// `round_half_to_even(bias / scale)`, saturated to the int32 range.
    pub values: Vec<i32>,
    /// Scale `input_scale · weight_scale` (per channel when the weight is), zero point 0,
    /// type `I32`.
    pub params: QuantParams,
    /// How many values saturated (a bias too large for the product scale).
    pub saturated: usize,
}

/// Quantizes the bias of a Conv/Gemm/MatMul to int32 with
/// `scale = input_scale · weight_scale` (an `f32` product, per output channel for
/// per-axis weights) and zero point 0, as onnxruntime's `quantize_bias_static`: the
/// division is done in `f64`, rounded half to even and saturated to the int32 range.
///
/// onnxruntime can also enlarge a weight scale so that a huge bias does not saturate;
/// edgeml does not (yet): it saturates and reports the count in
/// [`QuantizedBias::saturated`].
///
/// # Errors
/// [`Error::NonFinite`] for a NaN or infinite bias value or `input_scale`;
/// [`Error::Shape`] if per-axis weight parameters do not have one entry per bias
/// value; [`Error::Invalid`] if a product scale underflows to 0.
pub fn quantize_bias(
    bias: &[f32],
    input_scale: f32,
    weight: &QuantParams,
) -> Result<QuantizedBias> {
    if !(input_scale.is_finite() && input_scale > 0.0) {
        return Err(Error::NonFinite(format!("input scale {input_scale}")));
    }
    let ws = weight.scales();
    if ws.len() != 1 && ws.len() != bias.len() {
        return Err(Error::Shape(format!(
            "{} bias values for {} weight scales",
            bias.len(),
            ws.len()
        )));
    }
    let scales: Vec<f32> = ws.iter().map(|&w| input_scale * w).collect();
    if scales.iter().any(|&s| !(s > 0.0 && s.is_finite())) {
        return Err(Error::Invalid(format!(
            "bias scale input_scale {input_scale} × weight scales underflows or overflows"
        )));
    }
    let mut saturated = 0;
    let mut values = Vec::with_capacity(bias.len());
    for (c, &b) in bias.iter().enumerate() {
        if !b.is_finite() {
            return Err(Error::NonFinite(format!("bias[{c}] = {b}")));
        }
        let s = scales[if scales.len() == 1 { 0 } else { c }];
        let r = (f64::from(b) / f64::from(s)).round_ties_even();
        let lim = (f64::from(i32::MIN), f64::from(i32::MAX));
        if r < lim.0 || r > lim.1 {
            saturated += 1;
        }
        values.push(r.clamp(lim.0, lim.1) as i32);
    }
    let n = scales.len();
    let params = if weight.is_per_tensor() {
        QuantParams::per_tensor(scales[0], 0, DType::I32)
    } else {
        // The bias is 1-D: its channels are along axis 0.
        QuantParams::per_axis(scales, vec![0; n], 0, DType::I32)
    }
    .map_err(core_err)?;
    Ok(QuantizedBias {
        values,
        params,
        saturated,
    })
}

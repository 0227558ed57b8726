//! Quantization parameters.

use crate::{DType, Error, Result};
use alloc::{format, vec, vec::Vec};

/// Affine quantization parameters: `real = (q - zero_point) * scale`.
///
/// Either per-tensor (one scale and zero point, `axis == None`) or per-axis (one pair per
/// slice along `axis`, as ONNX `QuantizeLinear` with `axis` and TFLite per-channel
/// quantization). The quantized type is one of `I8`, `U8`, `I16`, `U16` or `I32` (the
/// last for int32 biases, whose zero point is 0).
///
/// Construction validates everything: scales finite and positive, zero points inside the
/// quantized type's range, per-axis lists of equal, non-zero length.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct QuantParams {
    scales: Vec<f32>,
    zero_points: Vec<i32>,
    axis: Option<usize>,
    qtype: DType,
}

impl QuantParams {
    /// Per-tensor parameters.
    ///
    /// # Errors
    /// [`Error::InvalidQuantParams`] if `scale` is not finite and positive, if `qtype` is
    /// not a quantized integer type or if `zero_point` is outside its range.
    pub fn per_tensor(scale: f32, zero_point: i32, qtype: DType) -> Result<Self> {
        Self::new(vec![scale], vec![zero_point], None, qtype)
    }

    /// Per-axis parameters, one `(scale, zero_point)` per slice along `axis`.
    ///
    /// # Errors
    /// As [`QuantParams::per_tensor`], for every entry, plus
    /// [`Error::LengthMismatch`] when the lists differ in length or are empty.
    pub fn per_axis(
        scales: Vec<f32>,
        zero_points: Vec<i32>,
        axis: usize,
        qtype: DType,
    ) -> Result<Self> {
        Self::new(scales, zero_points, Some(axis), qtype)
    }

    fn new(
        scales: Vec<f32>,
        zero_points: Vec<i32>,
        axis: Option<usize>,
        qtype: DType,
    ) -> Result<Self> {
        let (lo, hi) = qtype.quant_range().ok_or_else(|| {
            Error::InvalidQuantParams(format!("{qtype} is not a quantized integer type"))
        })?;
        if scales.len() != zero_points.len() || scales.is_empty() {
            return Err(Error::LengthMismatch {
                scales: scales.len(),
                zero_points: zero_points.len(),
            });
        }
        if axis.is_none() && scales.len() != 1 {
            return Err(Error::InvalidQuantParams(format!(
                "per-tensor parameters need exactly one scale, got {}",
                scales.len()
            )));
        }
        for (i, &s) in scales.iter().enumerate() {
            if !(s.is_finite() && s > 0.0) {
                return Err(Error::InvalidQuantParams(format!(
                    "scale[{i}] = {s} must be finite and positive"
                )));
            }
        }
        for (i, &z) in zero_points.iter().enumerate() {
            if i64::from(z) < lo || i64::from(z) > hi {
                return Err(Error::InvalidQuantParams(format!(
                    "zero_point[{i}] = {z} is outside the {qtype} range [{lo}, {hi}]"
                )));
            }
        }
        Ok(Self {
            scales,
            zero_points,
            axis,
            qtype,
        })
    }

    /// The scales (one for per-tensor parameters).
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// The zero points (one for per-tensor parameters).
    pub fn zero_points(&self) -> &[i32] {
        &self.zero_points
    }

    /// The quantization axis, `None` for per-tensor parameters.
    pub fn axis(&self) -> Option<usize> {
        self.axis
    }

    /// The quantized element type.
    pub fn qtype(&self) -> DType {
        self.qtype
    }

    /// Whether these are per-tensor parameters.
    pub fn is_per_tensor(&self) -> bool {
        self.axis.is_none()
    }

    /// Number of channels: 1 for per-tensor parameters.
    pub fn len(&self) -> usize {
        self.scales.len()
    }

    /// Always `false`: validated parameters have at least one channel.
    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// Checks that per-axis parameters fit a tensor of the given shape: `axis` is inside
    /// the shape and the channel count equals `shape[axis]`.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] or [`Error::InvalidQuantParams`] naming the mismatch.
    pub fn check_shape(&self, shape: &[usize]) -> Result<()> {
        if let Some(axis) = self.axis {
            let Some(&d) = shape.get(axis) else {
                return Err(Error::InvalidQuantParams(format!(
                    "axis {axis} is outside a tensor of rank {}",
                    shape.len()
                )));
            };
            if d != self.scales.len() {
                return Err(Error::InvalidQuantParams(format!(
                    "{} per-axis parameters for axis {axis} of extent {d}",
                    self.scales.len()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn validates_scales_and_zero_points() {
        assert!(QuantParams::per_tensor(0.1, 0, DType::I8).is_ok());
        assert!(QuantParams::per_tensor(0.1, -128, DType::I8).is_ok());
        assert!(QuantParams::per_tensor(0.1, 128, DType::I8).is_err());
        assert!(QuantParams::per_tensor(0.1, -1, DType::U8).is_err());
        for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            let e = QuantParams::per_tensor(bad, 0, DType::U8).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
        }
        assert!(QuantParams::per_tensor(1.0, 0, DType::F32).is_err());
    }

    #[test]
    fn per_axis_lengths_and_shapes() {
        let e = QuantParams::per_axis(vec![1.0, 2.0], vec![0], 0, DType::I8).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
        assert!(QuantParams::per_axis(vec![], vec![], 0, DType::I8).is_err());
        let p = QuantParams::per_axis(vec![1.0, 2.0], vec![0, 0], 1, DType::I8).unwrap();
        assert!(p.check_shape(&[3, 2]).is_ok());
        assert!(p.check_shape(&[3, 3]).is_err());
        assert!(p.check_shape(&[3]).is_err());
        assert!(!p.is_per_tensor());
        assert_eq!(p.len(), 2);
    }
}

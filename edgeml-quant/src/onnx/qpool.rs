//! onnxruntime's `com.microsoft` `QLinearAveragePool`: `x, x_scale, x_zero_point,
//! y_scale, y_zero_point` (per-tensor, one u8 or i8 type), the attributes of the
//! standard `AveragePool` (`kernel_shape`, `strides`, `pads`, `auto_pad`, `ceil_mode`,
//! `count_include_pad`) and `channels_last`.
//!
//! Numerics, as onnxruntime's kernel computes them: each input code is dequantized to
//! `f32`, the window is averaged in `f32` by the float `AveragePool` (same windows,
//! padding and divisor), and the average is quantized,
//! `saturate(round_half_even(avg / y_scale) + y_zp)`. A different summation order can
//! move a result lying within an ulp of a rounding tie by one step.

use super::input;
use super::params::{scalar_scale, scalar_zp, scales, zero_points};
use super::qelementwise::requant;
use crate::QElem;
use edgeml_onnx::ops::attr::{Attrs, invalid, unsupported};
use edgeml_onnx::{BuildContext, Error, Node, Operator, Result, Tensor};
use ndarray::ArrayD;

/// The opset of the standard `AveragePool` whose semantics `QLinearAveragePool` has.
const FLOAT_OPSET: i64 = 19;

/// `QLinearAveragePool` over the float `AveragePool`.
#[derive(Debug)]
struct QAvgPool {
    node: Node,
    channels_last: bool,
    inner: Box<dyn Operator>,
}

/// Builds `QLinearAveragePool`.
pub(super) fn build_qlinear_average_pool(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let node = ctx.node;
    let channels_last = Attrs::new(node).int("channels_last", 0)? != 0;
    if Attrs::new(node).has("dilations") {
        return Err(unsupported(node, "dilations (QLinearAveragePool has none)"));
    }
    let mut float = node.clone();
    float.op_type = "AveragePool".into();
    float.domain = String::new();
    float.inputs.truncate(1);
    float.attributes.retain(|(k, _)| k != "channels_last");
    let reg = edgeml_onnx::ops::default_registry();
    let f = reg
        .lookup("", "AveragePool", FLOAT_OPSET)
        .ok_or_else(|| unsupported(node, "no float AveragePool"))?;
    let inner = f.build(&BuildContext::new(&float, FLOAT_OPSET, vec![None]))?;
    Ok(Box::new(QAvgPool {
        node: node.clone(),
        channels_last,
        inner,
    }))
}

impl QAvgPool {
    fn go<T: QElem>(&self, inputs: &[Option<&Tensor>], x: &ArrayD<T>) -> Result<ArrayD<T>> {
        let node = &self.node;
        let sx = scalar_scale(node, &scales(node, inputs, 1)?, "x_scale")?;
        let zx = scalar_zp::<T>(node, zero_points(node, inputs, 2)?.as_ref(), "x")?.to_i32();
        let sy = scalar_scale(node, &scales(node, inputs, 3)?, "y_scale")?;
        let zy = scalar_zp::<T>(node, zero_points(node, inputs, 4)?.as_ref(), "y")?.to_i32();
        if x.ndim() < 3 {
            return Err(invalid(
                node,
                format!("input of rank {} (at least 3)", x.ndim()),
            ));
        }
        let mut fx = x.mapv(|v| sx * (v.to_i32() - zx) as f32);
        let n = fx.ndim();
        if self.channels_last {
            // NHWC → NCHW for the float operator, and back below.
            let mut perm: Vec<usize> = vec![0, n - 1];
            perm.extend(1..n - 1);
            fx = fx.permuted_axes(perm).as_standard_layout().into_owned();
        }
        let ft = Tensor::F32(fx);
        let mut out = self.inner.run(&[Some(&ft)])?;
        let Some(Tensor::F32(y)) = out.pop() else {
            return Err(Error::Internal(
                "float AveragePool gave no f32 output".into(),
            ));
        };
        let y = if self.channels_last {
            let mut perm: Vec<usize> = vec![0];
            perm.extend(2..n);
            perm.push(1);
            y.permuted_axes(perm).as_standard_layout().into_owned()
        } else {
            y
        };
        Ok(y.mapv(|v| requant::<T>(v, sy, zy)))
    }
}

impl Operator for QAvgPool {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        Ok(vec![match input(node, inputs, 0)? {
            Tensor::U8(x) => Tensor::U8(self.go(inputs, x)?),
            Tensor::I8(x) => Tensor::I8(self.go(inputs, x)?),
            other => return Err(invalid(node, format!("input of type {:?}", other.dtype()))),
        }])
    }
}

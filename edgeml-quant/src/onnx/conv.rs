//! `QLinearConv` and `ConvInteger` (1-D and 2-D) on the exact INT8 convolutions.

use super::params::{
    Zp, check_count, scalar_scale, scalar_zp, scales, zero_points, zero_points_of, zp_as,
};
use super::{gemm_options, get, input, kernel_err};
use crate::{
    Activation, ConvParams, PackedConv, QElem, Requant, ZeroPoints, conv_integer, qlinear_conv,
};
use edgeml_onnx::ops::attr::{Attrs, describe, invalid, unsupported};
use edgeml_onnx::ops::nn::{AutoPad, ConvAttrs, Window};
use edgeml_onnx::{BuildContext, Error, Node, Operator, Result, Tensor};
use ndarray::{ArrayD, ArrayView4, ArrayViewMut4, Ix4, IxDyn};

/// Input positions `[x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, bias]`.
const QLINEAR: [usize; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
const INTEGER: [usize; 9] = [0, NO, 2, 1, NO, 3, NO, NO, NO];
const NO: usize = usize::MAX;
const X: usize = 0;
const X_SCALE: usize = 1;
const X_ZP: usize = 2;
const W: usize = 3;
const W_SCALE: usize = 4;
const W_ZP: usize = 5;
const Y_SCALE: usize = 6;
const Y_ZP: usize = 7;
const BIAS: usize = 8;

#[derive(Debug)]
struct QConv {
    node: Node,
    pos: [usize; 9],
    /// `group` and `kernel_shape`, read as the float `Conv` reads them.
    conv: ConvAttrs,
    /// Fused activation (set by [`super::fuse_qdq`] through the `edgeml_activation`
    /// attribute of an `com.edgeml` node; standard nodes have none).
    activation: Fused,
    /// Weights packed at plan time, with the input extents they were packed for.
    packed: Option<(PackedConv, Vec<usize>)>,
}

/// A fused activation, in real terms.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fused {
    None,
    Relu,
}

fn build(ctx: &BuildContext<'_>, pos: [usize; 9]) -> Result<Box<dyn Operator>> {
    let node = ctx.node.clone();
    let conv = ConvAttrs::from_node(&node)?;
    let activation = match Attrs::new(&node).string("activation", "")?.as_str() {
        "" => Fused::None,
        "Relu" if node.domain == "com.edgeml" => Fused::Relu,
        other => return Err(unsupported(&node, format!("activation {other:?}"))),
    };
    let mut op = QConv {
        node,
        pos,
        conv,
        activation,
        packed: None,
    };
    let c = &ctx.constant_inputs;
    let wzp_given = op.node.inputs.get(pos[W_ZP]).is_some_and(|s| !s.is_empty());
    if let Some(w) = get(&pos, c, W) {
        if wzp_given && get(&pos, c, W_ZP).is_none() {
            return Ok(Box::new(op));
        }
        let wzp = get(&pos, c, W_ZP)
            .map(|z| zero_points_of(&op.node, z, pos[W_ZP]))
            .transpose()?;
        // Spatial rank decides 1-D vs 2-D; pads are resolved per input size at run time,
        // except for explicit pads, which do not depend on it.
        if let Some(p) = op.static_params(w)? {
            op.packed = Some((op.pack(w, wzp.as_ref(), p)?, Vec::new()));
        }
    }
    Ok(Box::new(op))
}

pub(super) fn build_qlinear_conv(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    build(ctx, QLINEAR)
}

pub(super) fn build_conv_integer(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    build(ctx, INTEGER)
}

/// Weights as 4-D `[C_out, C_in/g, kH, kW]` (1-D kernels gain `kH = 1`).
fn w4<T: Copy>(node: &Node, w: &ArrayD<T>) -> Result<ArrayD<T>> {
    match w.ndim() {
        4 => Ok(w.clone()),
        3 => Ok(w.clone().insert_axis(ndarray::Axis(2))),
        r => Err(unsupported(
            node,
            format!("{r}-D weights: 1-D and 2-D convolutions are supported"),
        )),
    }
}

impl QConv {
    fn window(&self, w_spatial: &[usize]) -> Result<Window> {
        self.conv.window(&self.node, w_spatial)
    }

    /// Conv parameters when they do not depend on the input size (no `auto_pad`).
    fn static_params(&self, w: &Tensor) -> Result<Option<ConvParams>> {
        // SAME_* pads depend on the input size; an unknown mode fails in `window` at run.
        let ap = match AutoPad::from_node(&self.node) {
            Ok(ap @ (AutoPad::NotSet | AutoPad::Valid)) => ap,
            _ => return Ok(None),
        };
        let sp = &w.shape()[2.min(w.shape().len())..];
        let win = self.window(sp)?;
        // With explicit pads, a zero-extent-free dummy input resolves them unchanged.
        let big: Vec<usize> = sp.iter().map(|&k| k.max(1) * 4 + 64).collect();
        let [_, begin, _] = win.resolve(&self.node, &big)?;
        // The end pads as given (zeros when absent or VALID).
        let end: Vec<usize> = match ap {
            AutoPad::Valid => vec![0; sp.len()],
            _ => win.pads()[sp.len()..].to_vec(),
        };
        Ok(Some(self.params(&win, &begin, &end)))
    }

    fn params(&self, win: &Window, begin: &[usize], end: &[usize]) -> ConvParams {
        let two = |v: &[usize], fill: usize| -> [usize; 2] {
            if v.len() == 1 {
                [fill, v[0]]
            } else {
                [v[0], v[1]]
            }
        };
        let b = two(begin, 0);
        let e = two(end, 0);
        ConvParams {
            group: self.conv.group(),
            strides: two(win.strides(), 1),
            pads: [b[0], b[1], e[0], e[1]],
            dilations: two(win.dilations(), 1),
        }
    }

    fn pack(&self, w: &Tensor, zp: Option<&Zp>, p: ConvParams) -> Result<PackedConv> {
        let node = &self.node;
        fn go<T: QElem>(
            node: &Node,
            w: &ArrayD<T>,
            zp: Option<&Zp>,
            p: ConvParams,
        ) -> Result<PackedConv> {
            let w = w4(node, w)?;
            let w = w
                .view()
                .into_dimensionality::<Ix4>()
                .map_err(|_| invalid(node, "weights must be 3-D or 4-D"))?;
            let c_out = w.shape()[0];
            let z: Vec<T> = match zp {
                None => vec![T::from_i32_clamped(0)],
                Some(z) => zp_as::<T>(node, z, "W")?,
            };
            check_count(node, z.len(), c_out, "weight zero points")?;
            let zps = if z.len() == 1 {
                ZeroPoints::PerTensor(z[0])
            } else {
                ZeroPoints::PerColumn(&z)
            };
            PackedConv::new(w, zps, p).map_err(|e| kernel_err(node, e))
        }
        match w {
            Tensor::U8(a) => go(node, a, zp, p),
            Tensor::I8(a) => go(node, a, zp, p),
            other => Err(unsupported(
                node,
                format!(
                    "weights of type {:?}: uint8 and int8 are supported",
                    other.dtype()
                ),
            )),
        }
    }

    fn run_typed<T: QElem>(
        &self,
        inputs: &[Option<&Tensor>],
        x: &ArrayD<T>,
        x_zp: T,
    ) -> Result<Tensor> {
        let node = &self.node;
        let w = get(&self.pos, inputs, W).ok_or_else(|| invalid(node, "W is missing"))?;
        let sp_rank = w.shape().len().saturating_sub(2);
        if x.ndim() != sp_rank + 2 || !(1..=2).contains(&sp_rank) {
            return Err(Error::ShapeMismatch(format!(
                "{}: input of shape {:?} for weights of shape {:?}",
                describe(node),
                x.shape(),
                w.shape()
            )));
        }
        let built;
        let packed = match &self.packed {
            Some((p, _)) => p,
            None => {
                let win = self.window(&w.shape()[2..])?;
                let [_, begin, end] = win.resolve(node, &x.shape()[2..])?;
                let p = self.params(&win, &begin, &end);
                let wzp = zero_points(node, inputs, self.pos[W_ZP])?;
                built = self.pack(w, wzp.as_ref(), p)?;
                &built
            }
        };
        // The input as 4-D NCHW (1-D gains H = 1).
        let x4 = if x.ndim() == 3 {
            x.view().insert_axis(ndarray::Axis(2))
        } else {
            x.view()
        };
        let x4: ArrayView4<'_, T> = x4
            .into_dimensionality::<Ix4>()
            .map_err(|_| invalid(node, "input must be 3-D or 4-D"))?;
        let (n, _, h, wd) = x4.dim();
        let (oh, ow) = packed.output_hw(h, wd).map_err(|e| kernel_err(node, e))?;
        let c_out = w.shape()[0];
        let shape4 = [n, c_out, oh, ow];
        let out_shape: Vec<usize> = if x.ndim() == 3 {
            vec![n, c_out, ow]
        } else {
            shape4.to_vec()
        };
        let opts = gemm_options();
        let err = |e| kernel_err(node, e);
        if self.pos[Y_SCALE] == NO {
            let mut y = ndarray::Array4::<i32>::zeros(shape4);
            conv_integer(x4, x_zp, packed, y.view_mut(), &opts).map_err(err)?;
            return Ok(Tensor::I32(reshape(y.into_dyn(), &out_shape)?));
        }
        let x_scale = scalar_scale(node, &scales(node, inputs, self.pos[X_SCALE])?, "x_scale")?;
        let w_scales = scales(node, inputs, self.pos[W_SCALE])?;
        check_count(node, w_scales.len(), c_out, "weight scales")?;
        let y_scale = scalar_scale(node, &scales(node, inputs, self.pos[Y_SCALE])?, "y_scale")?;
        let y_zp = zero_points(node, inputs, self.pos[Y_ZP])?.unwrap_or(Zp::U8(vec![0]));
        let bias: Option<Vec<i32>> = match get(&self.pos, inputs, BIAS) {
            None => None,
            Some(Tensor::I32(b)) => {
                if b.len() != c_out {
                    return Err(Error::ShapeMismatch(format!(
                        "{}: {} bias values for {c_out} output channels",
                        describe(node),
                        b.len()
                    )));
                }
                Some(super::params::elements(b))
            }
            Some(other) => {
                return Err(invalid(
                    node,
                    format!("bias must be int32, found {:?}", other.dtype()),
                ));
            }
        };
        let mult = crate::multipliers(x_scale, &w_scales, y_scale);
        let activation = match self.activation {
            Fused::None => Activation::None,
            Fused::Relu => Activation::Relu,
        };
        macro_rules! go {
            ($t:ty, $z:expr, $wrap:path) => {{
                let mut y = super::overwritten::<$t, _>(ndarray::Dim(shape4))?;
                let rq = Requant {
                    multipliers: &mult,
                    zero_point: i32::from($z),
                    bias: bias.as_deref(),
                    activation,
                };
                let yv: ArrayViewMut4<'_, $t> = y.view_mut();
                qlinear_conv(x4, x_zp, packed, &rq, yv, &opts).map_err(err)?;
                $wrap(reshape(y.into_dyn(), &out_shape)?)
            }};
        }
        Ok(match y_zp {
            Zp::U8(z) if z.len() == 1 => go!(u8, z[0], Tensor::U8),
            Zp::I8(z) if z.len() == 1 => go!(i8, z[0], Tensor::I8),
            _ => return Err(unsupported(node, "a per-axis output zero point")),
        })
    }
}

fn reshape<T>(a: ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>> {
    a.into_shape_with_order(IxDyn(shape))
        .map_err(|e| Error::Internal(e.to_string()))
}

impl Operator for QConv {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let x = input(node, inputs, self.pos[X])?;
        let zp = zero_points(node, inputs, self.pos[X_ZP])?;
        let y = match x {
            Tensor::U8(a) => self.run_typed(inputs, a, scalar_zp::<u8>(node, zp.as_ref(), "x")?)?,
            Tensor::I8(a) => self.run_typed(inputs, a, scalar_zp::<i8>(node, zp.as_ref(), "x")?)?,
            other => {
                return Err(unsupported(
                    node,
                    format!(
                        "input of type {:?}: uint8 and int8 are supported",
                        other.dtype()
                    ),
                ));
            }
        };
        Ok(vec![y])
    }
}

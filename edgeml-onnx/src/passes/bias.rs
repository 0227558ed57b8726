//! `Conv` + constant per-channel `Mul` / `Add` → `Conv` with scaled weights / a bias.

use super::{OfConstant, Pass, of_constant};
use crate::{Model, Result, Tensor};
use ndarray::{ArrayD, IxDyn};

/// Folds an `Add` of a constant per-channel `f32` bias (shape `[M]` broadcast along
/// the channel axis, e.g. `[1, M, 1, 1]`, or a single value) into the `Conv` (constant
/// `f32` weights) that feeds only it: the `Conv` gets bias `B + c` and writes the
/// `Add`'s output. What exporters such as paddle2onnx write for a biased convolution;
/// onnxruntime's `ConvAddFusion` does the same. A following `BatchNormalization` can
/// then be folded too.
#[derive(Debug, Clone, Copy, Default)]
pub struct FuseConvAddBias;

impl Pass for FuseConvAddBias {
    fn name(&self) -> &'static str {
        "fuse-conv-add-bias"
    }

    fn run(&self, model: &mut Model) -> Result<usize> {
        let mut done = 0;
        let mut k = 0;
        while k < model.graph.nodes.len() {
            let Some((p, conv_in, bias)) = rewrite(model, k) else {
                k += 1;
                continue;
            };
            let g = &mut model.graph;
            let add_out = g.nodes[k].outputs[0].clone();
            let base = format!("{}_bias", g.nodes[p].name_or_output());
            let name = g.fresh_name(&base);
            let m = bias.len();
            let b = ArrayD::from_shape_vec(IxDyn(&[m]), bias)
                .map_err(|e| crate::Error::Internal(format!("folding a Conv bias: {e}")))?;
            g.set_initializer(&name, Tensor::F32(b));
            let mut conv = g.nodes[p].clone();
            conv.inputs = conv_in;
            conv.inputs.truncate(2);
            conv.inputs.push(name);
            conv.outputs = vec![add_out];
            g.replace_node(p, conv)?;
            g.remove_node(k)?;
            done += 1;
        }
        super::list_initializers_as_inputs(model);
        Ok(done)
    }
}

/// The per-output-channel values of a constant `c` combined element-wise with the
/// output of a `Conv` with `m` output channels and weights of rank `rank`: `m` values
/// when `c` broadcasts along the channel axis only (`[M]` as `[1, M, 1, 1]`,
/// `[M, 1, 1]`, …) or is a single value; `None` when it would change the output's
/// shape or vary along another axis.
fn per_channel(c: &ArrayD<f32>, m: usize, rank: usize) -> Option<Vec<f32>> {
    if c.ndim() > rank || c.is_empty() || m == 0 {
        return None;
    }
    let mut dims = vec![1usize; rank - c.ndim()];
    dims.extend_from_slice(c.shape());
    let channel = dims[1] == m;
    if dims[0] != 1 || dims[2..].iter().any(|&d| d != 1) || !(channel || dims[1] == 1) {
        return None;
    }
    let cv: Vec<f32> = c.iter().copied().collect();
    Some(
        (0..m)
            .map(|o| if channel { cv[o] } else { cv[0] })
            .collect(),
    )
}

/// For `Add` node `k`: the index of the `Conv` it folds into, that `Conv`'s inputs and
/// the new bias; `None` when the rewrite does not apply.
fn rewrite(model: &Model, k: usize) -> Option<(usize, Vec<String>, Vec<f32>)> {
    let OfConstant {
        producer: p,
        constant,
        consts,
    } = of_constant(model, k, "Add", "Conv")?;
    let conv = &model.graph.nodes[p];
    if conv.inputs.len() < 2 {
        return None;
    }
    let w = consts.get(conv.inputs[1].as_str())?.as_f32()?;
    let m = *w.shape().first()?;
    let c = per_channel(consts.get(constant)?.as_f32()?, m, w.ndim())?;
    let old: Vec<f32> = match conv.inputs.get(2).filter(|n| !n.is_empty()) {
        None => vec![0.0; m],
        Some(n) => {
            let b = consts.get(n.as_str())?.as_f32()?;
            if b.ndim() != 1 || b.len() != m {
                return None;
            }
            b.iter().copied().collect()
        }
    };
    let bias = (0..m).map(|o| old[o] + c[o]).collect();
    Some((p, conv.inputs.clone(), bias))
}

/// Folds a `Mul` by a constant per-channel `f32` scale (shape `[M]` broadcast along the
/// channel axis, e.g. `[1, M, 1, 1]`, or a single finite value) into the `Conv`
/// (constant `f32` weights and bias) that feeds only it: the `Conv` gets weights
/// `W[o]·s[o]` and bias `B[o]·s[o]` (each product computed in `f64` and rounded once)
/// and writes the `Mul`'s output. Exact up to float rounding (the scale is applied to
/// each weight instead of to each sum); onnxruntime's `ConvMulFusion` and onnxslim do
/// the same. Caffe-style exports write a BatchNormalization as such a `Mul` and an
/// `Add`, which [`FuseConvAddBias`] then folds.
#[derive(Debug, Clone, Copy, Default)]
pub struct FuseConvMul;

impl Pass for FuseConvMul {
    fn name(&self) -> &'static str {
        "fuse-conv-mul"
    }

    fn run(&self, model: &mut Model) -> Result<usize> {
        let mut done = 0;
        let mut k = 0;
        while k < model.graph.nodes.len() {
            let Some((p, w, bias)) = rewrite_mul(model, k) else {
                k += 1;
                continue;
            };
            let g = &mut model.graph;
            let mul_out = g.nodes[k].outputs[0].clone();
            let base = g.nodes[p].name_or_output().to_owned();
            let wn = g.fresh_name(&format!("{base}_W_scaled"));
            g.set_initializer(&wn, Tensor::F32(w));
            let mut conv = g.nodes[p].clone();
            conv.inputs.truncate(2);
            conv.inputs[1] = wn;
            if let Some(bias) = bias {
                let bn = g.fresh_name(&format!("{base}_B_scaled"));
                let m = bias.len();
                let b = ArrayD::from_shape_vec(IxDyn(&[m]), bias)
                    .map_err(|e| crate::Error::Internal(format!("scaling a Conv bias: {e}")))?;
                g.set_initializer(&bn, Tensor::F32(b));
                conv.inputs.push(bn);
            }
            conv.outputs = vec![mul_out];
            g.replace_node(p, conv)?;
            g.remove_node(k)?;
            done += 1;
        }
        super::list_initializers_as_inputs(model);
        Ok(done)
    }
}

/// For `Mul` node `k`: the index of the `Conv` it folds into, the scaled weights and
/// the scaled bias (if the `Conv` has one); `None` when the rewrite does not apply.
fn rewrite_mul(model: &Model, k: usize) -> Option<(usize, ArrayD<f32>, Option<Vec<f32>>)> {
    let OfConstant {
        producer: p,
        constant,
        consts,
    } = of_constant(model, k, "Mul", "Conv")?;
    let conv = &model.graph.nodes[p];
    if conv.inputs.len() < 2 {
        return None;
    }
    let w = consts.get(conv.inputs[1].as_str())?.as_f32()?;
    let m = *w.shape().first()?;
    let s = per_channel(consts.get(constant)?.as_f32()?, m, w.ndim())?;
    if s.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let bias = match conv.inputs.get(2).filter(|n| !n.is_empty()) {
        None => None,
        Some(n) => {
            let b = consts.get(n.as_str())?.as_f32()?;
            if b.ndim() != 1 || b.len() != m {
                return None;
            }
            Some(
                b.iter()
                    .zip(&s)
                    .map(|(&b, &s)| (f64::from(b) * f64::from(s)) as f32)
                    .collect(),
            )
        }
    };
    let a: Vec<f64> = s.iter().map(|&v| f64::from(v)).collect();
    Some((p, super::bn::scale_axis(w, 0, &a), bias))
}

//! BatchNormalization (inference), LayerNormalization and InstanceNormalization.

use super::{checked_numel, contiguous, input_f32, opt_input_f32, tensor};
use crate::op::{BuildContext, Operator};
use crate::ops::attr::{Attrs, shape_mismatch, unsupported};
use crate::{Node, Result, Tensor};
use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

/// Per-channel `y = a·x + b` folded from scale, bias, mean and variance.
fn fold_bn(
    node: &Node,
    scale: &ArrayD<f32>,
    bias: &ArrayD<f32>,
    mean: &ArrayD<f32>,
    var: &ArrayD<f32>,
    eps: f32,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let c = scale.len();
    for (name, t) in [("scale", scale), ("B", bias), ("mean", mean), ("var", var)] {
        if t.ndim() != 1 || t.len() != c {
            return Err(shape_mismatch(
                node,
                format!("{name} has shape {:?}, expected [{c}]", t.shape()),
            ));
        }
    }
    let mut a = Vec::with_capacity(c);
    let mut b = Vec::with_capacity(c);
    for i in 0..c {
        let inv = 1.0 / ((var[[i]] as f64) + eps as f64).sqrt();
        let ai = scale[[i]] as f64 * inv;
        a.push(ai as f32);
        b.push((bias[[i]] as f64 - mean[[i]] as f64 * ai) as f32);
    }
    Ok((a, b))
}

#[derive(Debug)]
struct BatchNorm {
    node: Node,
    eps: f32,
    folded: Option<(Vec<f32>, Vec<f32>)>,
}

pub(super) fn build_batch_norm(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let node = ctx.node;
    let a = Attrs::new(node);
    if ctx.opset >= 14 && a.int("training_mode", 0)? != 0 {
        return Err(unsupported(
            node,
            "training_mode = 1 (only inference is supported)",
        ));
    }
    if ctx.opset < 9 && a.int("spatial", 1)? == 0 {
        return Err(unsupported(node, "spatial = 0"));
    }
    if node.outputs.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(unsupported(
            node,
            "training outputs (running mean/var) are not produced in inference",
        ));
    }
    let eps = a.float("epsilon", 1e-5)?;
    let consts: Vec<Option<&ArrayD<f32>>> = (1..5)
        .map(|i| {
            ctx.constant_inputs
                .get(i)
                .copied()
                .flatten()
                .and_then(Tensor::as_f32)
        })
        .collect();
    let folded = match consts.as_slice() {
        [Some(s), Some(b), Some(m), Some(v)] => Some(fold_bn(node, s, b, m, v, eps)?),
        _ => None,
    };
    Ok(Box::new(BatchNorm {
        node: node.clone(),
        eps,
        folded,
    }))
}

/// Applies `y = a[c]·x + b[c]` over `[N, C, rest…]`.
fn per_channel_affine(x: &[f32], c: usize, inner: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut out = crate::buffers::take_f32(x.len());
    if inner == 0 || c == 0 {
        return out;
    }
    let par_min = crate::kernels::min_len_for(out.len());
    out.par_chunks_mut(inner)
        .zip(x.par_chunks(inner))
        .enumerate()
        .with_min_len(par_min)
        .for_each(|(p, (o, xi))| {
            let ch = p % c;
            let (av, bv) = (a[ch], b[ch]);
            for (y, &v) in o.iter_mut().zip(xi) {
                *y = av * v + bv;
            }
        });
    out
}

impl Operator for BatchNorm {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let x = input_f32(node, inputs, 0)?;
        let owned;
        let (a, b) = match &self.folded {
            Some(f) => f,
            None => {
                let p: Vec<_> = (1..5)
                    .map(|i| input_f32(node, inputs, i))
                    .collect::<Result<_>>()?;
                owned = fold_bn(node, p[0], p[1], p[2], p[3], self.eps)?;
                &owned
            }
        };
        if x.ndim() < 2 || x.shape()[1] != a.len() {
            return Err(shape_mismatch(
                node,
                format!("input {:?} does not have {} channels", x.shape(), a.len()),
            ));
        }
        let inner: usize = x.shape()[2..].iter().product();
        let out = per_channel_affine(&contiguous(x), a.len(), inner, a, b);
        Ok(vec![tensor(node, x.shape(), out)?])
    }
}

#[derive(Debug)]
struct InstanceNorm {
    node: Node,
    eps: f32,
}

pub(super) fn build_instance_norm(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    Ok(Box::new(InstanceNorm {
        node: ctx.node.clone(),
        eps: Attrs::new(ctx.node).float("epsilon", 1e-5)?,
    }))
}

/// Mean and `1/sqrt(var + eps)` of `x`, accumulated in f64.
fn moments(x: &[f32], eps: f32) -> (f64, f64) {
    let n = x.len().max(1) as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, 1.0 / (var + eps as f64).sqrt())
}

impl Operator for InstanceNorm {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let x = input_f32(node, inputs, 0)?;
        let scale = input_f32(node, inputs, 1)?;
        let bias = input_f32(node, inputs, 2)?;
        if x.ndim() < 3 {
            return Err(shape_mismatch(
                node,
                format!("input {:?} must have rank >= 3", x.shape()),
            ));
        }
        let c = x.shape()[1];
        if scale.shape() != [c] || bias.shape() != [c] {
            return Err(shape_mismatch(
                node,
                format!(
                    "scale {:?} / B {:?} must be [{c}]",
                    scale.shape(),
                    bias.shape()
                ),
            ));
        }
        let inner: usize = x.shape()[2..].iter().product();
        let xs = contiguous(x);
        let (sc, bi) = (contiguous(scale), contiguous(bias));
        let mut out = vec![0.0f32; xs.len()];
        if inner > 0 {
            let par_min = crate::kernels::min_len_for(out.len());
            out.par_chunks_mut(inner)
                .zip(xs.par_chunks(inner))
                .enumerate()
                .with_min_len(par_min)
                .for_each(|(p, (o, xi))| {
                    let ch = p % c;
                    let (mean, inv) = moments(xi, self.eps);
                    let a = sc[ch] as f64 * inv;
                    let b = bi[ch] as f64 - mean * a;
                    for (y, &v) in o.iter_mut().zip(xi) {
                        *y = (a * v as f64 + b) as f32;
                    }
                });
        }
        Ok(vec![tensor(node, x.shape(), out)?])
    }
}

#[derive(Debug)]
struct LayerNorm {
    node: Node,
    axis: i64,
    eps: f32,
}

pub(super) fn build_layer_norm(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let node = ctx.node;
    let a = Attrs::new(node);
    Ok(Box::new(LayerNorm {
        node: node.clone(),
        axis: a.int("axis", -1)?,
        eps: a.float("epsilon", 1e-5)?,
    }))
}

impl Operator for LayerNorm {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let x = input_f32(node, inputs, 0)?;
        let scale = input_f32(node, inputs, 1)?;
        let bias = opt_input_f32(node, inputs, 2)?;
        let r = x.ndim() as i64;
        let axis = if self.axis < 0 {
            self.axis + r
        } else {
            self.axis
        };
        if !(0..r).contains(&axis) {
            return Err(shape_mismatch(
                node,
                format!("axis {} out of range for rank {r}", self.axis),
            ));
        }
        let axis = axis as usize;
        let norm_shape = &x.shape()[axis..];
        let inner: usize = norm_shape.iter().product();
        let outer: usize = x.shape()[..axis].iter().product();
        let expand = |t: &ArrayD<f32>, name: &str| -> Result<Vec<f32>> {
            t.broadcast(IxDyn(norm_shape))
                .map(|v| v.iter().copied().collect())
                .ok_or_else(|| {
                    shape_mismatch(
                        node,
                        format!(
                            "{name} {:?} does not broadcast to {norm_shape:?}",
                            t.shape()
                        ),
                    )
                })
        };
        let sc = expand(scale, "Scale")?;
        let bi = bias.map(|b| expand(b, "B")).transpose()?;
        let xs = contiguous(x);
        let mut out = vec![0.0f32; xs.len()];
        let mut means = vec![0.0f32; outer];
        let mut invs = vec![0.0f32; outer];
        if inner > 0 {
            let par_min = crate::kernels::min_len_for(out.len());
            out.par_chunks_mut(inner)
                .zip(xs.par_chunks(inner))
                .zip(means.par_iter_mut().zip(invs.par_iter_mut()))
                .with_min_len(par_min)
                .for_each(|((o, xi), (mo, io))| {
                    let (mean, inv) = moments(xi, self.eps);
                    *mo = mean as f32;
                    *io = inv as f32;
                    for (j, (y, &v)) in o.iter_mut().zip(xi).enumerate() {
                        let z = ((v as f64 - mean) * inv) as f32 * sc[j];
                        *y = match &bi {
                            Some(b) => z + b[j],
                            None => z,
                        };
                    }
                });
        }
        let mut stat_shape = x.shape()[..axis].to_vec();
        stat_shape.resize(x.ndim(), 1);
        checked_numel(node, &stat_shape)?;
        Ok(vec![
            tensor(node, x.shape(), out)?,
            tensor(node, &stat_shape, means)?,
            tensor(node, &stat_shape, invs)?,
        ])
    }
}

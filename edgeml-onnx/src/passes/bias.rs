//! `Conv` + constant per-channel `Add` → `Conv` with a bias.

use super::{AddOfConstant, Pass, add_of_constant};
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

/// For `Add` node `k`: the index of the `Conv` it folds into, that `Conv`'s inputs and
/// the new bias; `None` when the rewrite does not apply.
fn rewrite(model: &Model, k: usize) -> Option<(usize, Vec<String>, Vec<f32>)> {
    let AddOfConstant {
        producer: p,
        constant,
        consts,
    } = add_of_constant(model, k, "Conv")?;
    let conv = &model.graph.nodes[p];
    if conv.inputs.len() < 2 {
        return None;
    }
    let c = consts.get(constant)?;
    let w = consts.get(conv.inputs[1].as_str())?.as_f32()?;
    let c = c.as_f32()?;
    let (m, rank) = (*w.shape().first()?, w.ndim());
    if c.ndim() > rank || c.is_empty() {
        return None;
    }
    let mut dims = vec![1usize; rank - c.ndim()];
    dims.extend_from_slice(c.shape());
    let per_channel = dims[1] == m && m > 0;
    if dims[0] != 1 || dims[2..].iter().any(|&d| d != 1) || !(per_channel || dims[1] == 1) {
        return None;
    }
    let cv: Vec<f32> = c.iter().copied().collect();
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
    let bias = (0..m)
        .map(|o| old[o] + if per_channel { cv[o] } else { cv[0] })
        .collect();
    Some((p, conv.inputs.clone(), bias))
}

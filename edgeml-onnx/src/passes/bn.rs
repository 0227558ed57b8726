//! BatchNormalization folding into the layer before it.

use super::{Pass, constants, default_domain};
use crate::{Attribute, Dim, Model, Node, Result, Tensor};
use ndarray::{ArrayD, Axis, IxDyn};

/// The per-channel factors of an inference BatchNormalization applied to `y + bias`:
/// `a = scale / sqrt(var + eps)` (in `f64`) and the folded bias
/// `(bias − mean)·a + beta` (a missing bias counts as zeros). All slices have the
/// channel count as length.
pub(crate) fn bn_coefficients(
    scale: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
    bias: Option<&[f32]>,
) -> (Vec<f64>, Vec<f32>) {
    let m = scale.len();
    let mut a = Vec::with_capacity(m);
    let mut new_b = Vec::with_capacity(m);
    for c in 0..m {
        let ac = f64::from(scale[c]) / (f64::from(var[c]) + eps).sqrt();
        let bc = bias.map_or(0.0, |v| f64::from(v[c]));
        a.push(ac);
        new_b.push(((bc - f64::from(mean[c])) * ac + f64::from(beta[c])) as f32);
    }
    (a, new_b)
}

/// `w` with every element of index `c` along `axis` multiplied by `a[c]` (in `f64`,
/// rounded once). `a` must have `w.shape()[axis]` entries.
pub(crate) fn scale_axis(w: &ArrayD<f32>, axis: usize, a: &[f64]) -> ArrayD<f32> {
    let mut out = w.clone();
    for (lane, &ac) in out.axis_iter_mut(Axis(axis)).zip(a) {
        let mut lane = lane;
        lane.mapv_inplace(|x| (f64::from(x) * ac) as f32);
    }
    out
}

/// Grouped `ConvTranspose` weights `w` (`[C_in, M / group, …]`) with output channel
/// `g·(M / group) + j` (lane `j` of the rows of group `g`) multiplied by `a` of that
/// channel (in `f64`, rounded once).
fn scale_grouped_transpose(w: &ArrayD<f32>, group: usize, a: &[f64]) -> ArrayD<f32> {
    let mut out = w.clone();
    let rows = w.shape()[0] / group;
    let per = w.shape()[1];
    for (c, mut row) in out.axis_iter_mut(Axis(0)).enumerate() {
        let g = c / rows.max(1);
        for (j, lane) in row.axis_iter_mut(Axis(0)).enumerate() {
            let ac = a[g * per + j];
            let mut lane = lane;
            lane.mapv_inplace(|x| (f64::from(x) * ac) as f32);
        }
    }
    out
}

fn vec1(t: Option<&Tensor>, m: usize) -> Option<Vec<f32>> {
    let a = t?.as_f32()?;
    (a.ndim() == 1 && a.len() == m).then(|| a.iter().copied().collect())
}

/// A rewrite: the new layer node (writing the BatchNormalization's output) and the
/// new weight and bias initializers (base names).
struct Folded {
    node: Node,
    weight: (String, ArrayD<f32>),
    bias: (String, Vec<f32>),
}

/// Folds an inference-mode `BatchNormalization` (constant `f32` `scale`, `B`, `mean`,
/// `var`; the optional training outputs unused) into the layer before it: the `Conv`,
/// `ConvTranspose` (any `group`), `Gemm` or `MatMul` (constant 2-D `B`, 2-D `A`; it
/// becomes a `Gemm`) that feeds only it, when that layer's weights (and bias, if any)
/// are constant `f32`: `W' = W·a`, `B' = (B − mean)·a + beta` with
/// `a = scale / sqrt(var + eps)`, computed in `f64` — the same code folds batch
/// norms into convolutions when a plan is built. The folded layer writes the BatchNormalization's output.
///
/// Otherwise, a BatchNormalization whose output only a `Conv` reads is folded into
/// that `Conv` where this is exact (`group` 1 and no padding, since padding adds zeros
/// after the normalization): `W'[o, c, …] = W[o, c, …]·a[c]` and
/// `B'[o] = B[o] + Σ_{c, …} W[o, c, …]·(beta − mean·a)[c]`.
///
/// The old weights are left to [`super::EliminateDeadCode`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FoldBatchNorm;

impl Pass for FoldBatchNorm {
    fn name(&self) -> &'static str {
        "fold-batchnorm"
    }

    fn run(&self, model: &mut Model) -> Result<usize> {
        let opset = model.opset("").unwrap_or(0);
        let mut types = None;
        let mut done = 0;
        let mut k = 0;
        while k < model.graph.nodes.len() {
            let bn = &model.graph.nodes[k];
            if !(default_domain(bn) && bn.op_type == "BatchNormalization") {
                k += 1;
                continue;
            }
            // Whether `v` is 2-D: `Gemm` and `Flatten` always write 2-D values, else
            // what inference knows.
            let rank2 = |m: &Model, v: &str, types: &mut Option<_>| -> bool {
                let by_op = m.graph.nodes.iter().any(|n| {
                    default_domain(n)
                        && matches!(n.op_type.as_str(), "Gemm" | "Flatten")
                        && n.outputs.first().is_some_and(|o| o == v)
                });
                if by_op {
                    return true;
                }
                let t: &std::collections::HashMap<String, crate::InputType> =
                    types.get_or_insert_with(|| super::infer_value_types(m).unwrap_or_default());
                t.get(v)
                    .and_then(|t| t.shape.as_ref())
                    .is_some_and(|s: &Vec<Dim>| s.len() == 2)
            };
            let folded = fold_one(model, k, opset, &mut |m, v| rank2(m, v, &mut types))
                .or_else(|| fold_before(model, k, opset));
            let Some((p, f)) = folded else {
                k += 1;
                continue;
            };
            let g = &mut model.graph;
            let wn = g.fresh_name(&f.weight.0);
            g.set_initializer(&wn, Tensor::F32(f.weight.1));
            let bn_name = g.fresh_name(&f.bias.0);
            let m = f.bias.1.len();
            let b = ArrayD::from_shape_vec(IxDyn(&[m]), f.bias.1)
                .map_err(|e| crate::Error::Internal(format!("folding BatchNormalization: {e}")))?;
            g.set_initializer(&bn_name, Tensor::F32(b));
            let mut node = f.node;
            node.inputs[1] = wn;
            node.inputs[2] = bn_name;
            g.replace_node(p, node)?;
            g.remove_node(k)?;
            types = None;
            done += 1;
        }
        super::list_initializers_as_inputs(model);
        Ok(done)
    }
}

/// Whether one of `bn`'s optional training outputs (running mean and variance, saved
/// statistics) is read.
fn training_outputs_used(bn: &Node, ix: &crate::GraphIndex) -> bool {
    bn.outputs
        .iter()
        .skip(1)
        .any(|o| !o.is_empty() && ix.uses(o) > 0)
}

/// The parameters (`scale`, `B`, `mean`, `var`, as `f32` vectors of one length) and
/// `epsilon` of an inference-mode BatchNormalization; `None` when `bn` is not one or
/// `konst` does not know its parameters. Whether its training outputs are read is the
/// caller's check.
fn inference_bn<'t>(
    bn: &Node,
    konst: &dyn Fn(&str) -> Option<&'t Tensor>,
    opset: i64,
) -> Option<(Vec<Vec<f32>>, f64)> {
    if bn.inputs.len() != 5
        || bn.outputs.first().is_none_or(String::is_empty)
        || (opset >= 14 && bn.int_attr("training_mode", 0) != 0)
        || (opset < 9 && bn.int_attr("spatial", 1) == 0)
        || (opset < 7 && bn.int_attr("is_test", 0) == 0)
    {
        return None;
    }
    let scale = konst(&bn.inputs[1])?.as_f32()?;
    let m = scale.len();
    if scale.ndim() != 1 || m == 0 {
        return None;
    }
    let p4: Vec<Vec<f32>> = bn.inputs[1..5]
        .iter()
        .map(|n| vec1(konst(n), m))
        .collect::<Option<_>>()?;
    Some((p4, f64::from(bn.float_attr("epsilon", 1e-5))))
}

/// The rewrite of BatchNormalization node `k` into the `Conv` that is the only reader
/// of its output, when that is exact: `group` 1 and no padding (padding would add
/// zeros after the normalization, not before), constant `f32` weights. With
/// `a = scale / sqrt(var + eps)` and `s = B − mean·a` per input channel:
/// `W'[o, c, …] = W[o, c, …]·a[c]`, `B'[o] = B[o] + Σ_{c, …} W[o, c, …]·s[c]`.
fn fold_before(model: &Model, k: usize, opset: i64) -> Option<(usize, Folded)> {
    let g = &model.graph;
    let bn = &g.nodes[k];
    let ix = g.index();
    if training_outputs_used(bn, &ix) {
        return None;
    }
    let consts = constants(g, model.ir_version);
    let (p4, eps) = inference_bn(bn, &|n| consts.get(n).copied(), opset)?;
    let m = p4[0].len();
    let y = &bn.outputs[0];
    let [c] = ix.consumers(y) else {
        return None;
    };
    let conv = &g.nodes[*c];
    let pads_zero = match conv.attr("pads") {
        None => true,
        Some(Attribute::Ints(p)) => p.iter().all(|&v| v == 0),
        Some(_) => false,
    };
    let auto_pad_ok = match conv.attr("auto_pad") {
        None => true,
        Some(Attribute::String(s)) => s == b"NOTSET" || s == b"VALID",
        Some(_) => false,
    };
    if ix.is_output(y)
        || !default_domain(conv)
        || conv.op_type != "Conv"
        || conv.outputs.len() != 1
        || conv.inputs.len() < 2
        || conv.inputs[0] != *y
        || conv.inputs[1..].contains(y)
        || conv.int_attr("group", 1) != 1
        || !pads_zero
        || !auto_pad_ok
    {
        return None;
    }
    let w = consts.get(conv.inputs[1].as_str())?.as_f32()?;
    if w.ndim() < 3 || w.shape()[1] != m {
        return None;
    }
    let out_ch = w.shape()[0];
    let bias = match conv.inputs.get(2).filter(|n| !n.is_empty()) {
        None => vec![0.0; out_ch],
        Some(n) => vec1(consts.get(n.as_str()).copied(), out_ch)?,
    };
    let (a, shift) = bn_coefficients(&p4[0], &p4[1], &p4[2], &p4[3], eps, None);
    let new_w = scale_axis(w, 1, &a);
    let per = w.len() / (out_ch * m).max(1);
    let wv: Vec<f32> = w.iter().copied().collect();
    let new_b: Vec<f32> = (0..out_ch)
        .map(|o| {
            let mut acc = f64::from(bias[o]);
            for (ci, &sc) in shift.iter().enumerate() {
                let start = (o * m + ci) * per;
                let taps: f64 = wv[start..start + per].iter().map(|&x| f64::from(x)).sum();
                acc += taps * f64::from(sc);
            }
            acc as f32
        })
        .collect();
    let mut node = conv.clone();
    node.inputs = vec![bn.inputs[0].clone(), String::new(), String::new()];
    let base = if conv.name.is_empty() {
        conv.outputs[0].clone()
    } else {
        conv.name.clone()
    };
    Some((
        *c,
        Folded {
            node,
            weight: (format!("{base}_W_bnfolded"), new_w),
            bias: (format!("{base}_B_bnfolded"), new_b),
        },
    ))
}

/// The rewrite of BatchNormalization node `k`, with the index of the layer it folds
/// into; `None` when it does not apply.
fn fold_one(
    model: &Model,
    k: usize,
    opset: i64,
    rank2: &mut dyn FnMut(&Model, &str) -> bool,
) -> Option<(usize, Folded)> {
    let g = &model.graph;
    let bn = &g.nodes[k];
    let ix = g.index();
    let x = bn.inputs.first()?;
    let p = ix.producer(x)?;
    if ix.uses(x) != 1 || training_outputs_used(bn, &ix) {
        return None;
    }
    let layer = &g.nodes[p];
    let consts = constants(g, model.ir_version);
    let (node, new_w, new_b) =
        fold_into_layer(layer, bn, opset, &|n| consts.get(n).copied(), &mut |v| {
            rank2(model, v)
        })?;
    let base = if layer.name.is_empty() {
        bn.outputs[0].clone()
    } else {
        layer.name.clone()
    };
    Some((
        p,
        Folded {
            node,
            weight: (format!("{base}_W_bnfolded"), new_w),
            bias: (format!("{base}_B_bnfolded"), new_b),
        },
    ))
}

/// Folds the inference-mode BatchNormalization `bn` into `layer`, the `Conv`,
/// `ConvTranspose`, `Gemm` or `MatMul` whose output it alone reads (the caller's check),
/// with constants as `konst` knows them and `rank2` telling whether a value is 2-D (for
/// `MatMul`, which becomes a `Gemm`). Returns the rewritten layer, writing `bn`'s output,
/// with its weight and bias inputs (1 and 2) left for the caller to name, and the new
/// weight and bias; `None` when the folding does not apply. One implementation for
/// [`FoldBatchNorm`] (constants: the initializers) and the planner's convolution chains
/// (constants: everything known at plan time, folded values included).
pub(crate) fn fold_into_layer<'t>(
    layer: &Node,
    bn: &Node,
    opset: i64,
    konst: &dyn Fn(&str) -> Option<&'t Tensor>,
    rank2: &mut dyn FnMut(&str) -> bool,
) -> Option<(Node, ArrayD<f32>, Vec<f32>)> {
    let (p4, eps) = inference_bn(bn, konst, opset)?;
    let m = p4[0].len();
    if !default_domain(layer) || layer.outputs.len() != 1 || layer.inputs.len() < 2 {
        return None;
    }
    let mut node = layer.clone();
    node.outputs = vec![bn.outputs[0].clone()];
    let w = konst(&layer.inputs[1])?.as_f32()?;
    let bias_name = layer.inputs.get(2).filter(|n| !n.is_empty());
    let (axis, bias, group) = match layer.op_type.as_str() {
        "Conv" | "ConvTranspose" => {
            let axis = usize::from(layer.op_type == "ConvTranspose");
            // ConvTranspose weights are [C_in, M / group, …]: output channel
            // `g·(M / group) + j` reads lane j of group g's input rows.
            let group = if axis == 1 {
                usize::try_from(layer.int_attr("group", 1)).ok()?
            } else {
                1
            };
            if w.ndim() < 3
                || group == 0
                || w.shape()[axis].checked_mul(group) != Some(m)
                || w.shape()[0] % group != 0
            {
                return None;
            }
            let bias = match bias_name {
                None => None,
                Some(n) => Some(vec1(konst(n), m)?),
            };
            (axis, bias, group)
        }
        "Gemm" => {
            let trans_b = layer.int_attr("transB", 0) != 0;
            let axis = if trans_b { 0 } else { 1 };
            if w.ndim() != 2 || w.shape()[axis] != m || layer.inputs.len() > 3 {
                return None;
            }
            let beta = layer.float_attr("beta", 1.0);
            let bias = match bias_name {
                None => None,
                Some(n) => {
                    let c = konst(n)?.as_f32()?;
                    let v: Vec<f32> = match c.shape() {
                        [] | [1] | [1, 1] => vec![*c.iter().next()?; m],
                        [n] | [1, n] if *n == m => c.iter().copied().collect(),
                        _ => return None,
                    };
                    Some(v.into_iter().map(|x| beta * x).collect())
                }
            };
            node.attributes.retain(|(n, _)| n != "beta");
            node.attributes
                .push(("beta".to_owned(), Attribute::Float(1.0)));
            (axis, bias, 1)
        }
        "MatMul" => {
            if opset < 7 || w.ndim() != 2 || w.shape()[1] != m || !rank2(&layer.inputs[0]) {
                return None;
            }
            node.op_type = "Gemm".to_owned();
            node.attributes.clear();
            (1, None, 1)
        }
        _ => return None,
    };
    let (a, new_b) = bn_coefficients(&p4[0], &p4[1], &p4[2], &p4[3], eps, bias.as_deref());
    let new_w = if group > 1 {
        scale_grouped_transpose(w, group, &a)
    } else {
        scale_axis(w, axis, &a)
    };
    node.inputs.truncate(2);
    node.inputs.push(String::new());
    Some((node, new_w, new_b))
}

//! Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization", §4.1) of
//! `Conv → [Relu] → Conv` pairs.
//!
//! For output channel `i` of the first convolution, `r1_i = max|W1[i, ..]|` and, for
//! input channel `i` of the second, `r2_i = max|W2[:, i, ..]|`; with
//! `s_i = sqrt(r1_i · r2_i) / r2_i`, row `i` of `W1` and `b1[i]` are divided by `s_i` and
//! column `i` of `W2` is multiplied by it, so both ranges become `sqrt(r1_i · r2_i)`.
//! `Relu(x / s) = Relu(x) / s` for `s > 0`, so the float model computes the same
//! function up to rounding. Pairs qualify when both are ungrouped `Conv`s of the default
//! domain with constant f32 weights (and bias) read by no other node, the first one's
//! output (or its `Relu`'s) feeds only the second and is no graph output. Channels with
//! a zero range keep `s_i = 1`. Chains are equalized pair by pair in graph order, once.

use super::{NodeRef, int_attr, node_ref};
use crate::{Error, Result};
use edgeml_onnx::{Model, Node, Tensor};
use ndarray::{ArrayD, Axis};

/// The nodes reading `value`.
fn readers<'a>(model: &'a Model, value: &str) -> Vec<(usize, &'a Node)> {
    model
        .graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.inputs.iter().any(|v| v == value))
        .collect()
}

fn is_output(model: &Model, value: &str) -> bool {
    model.graph.outputs.iter().any(|o| o.name == value)
}

/// A constant f32 initializer read by exactly one node input.
fn own_weight<'a>(model: &'a Model, name: &str) -> Option<&'a ArrayD<f32>> {
    let reads: usize = model
        .graph
        .nodes
        .iter()
        .map(|n| n.inputs.iter().filter(|v| *v == name).count())
        .sum();
    (reads == 1 && !is_output(model, name))
        .then(|| model.graph.initializer(name)?.as_f32())
        .flatten()
}

fn plain_conv(n: &Node) -> bool {
    n.op_type == "Conv" && n.domain.is_empty() && int_attr(n, "group", 1) == 1
}

/// The second node of the pair starting at node `i`, if it qualifies.
fn partner(model: &Model, i: usize) -> Option<usize> {
    let g = &model.graph;
    let n = &g.nodes[i];
    if !plain_conv(n) || n.outputs.len() != 1 {
        return None;
    }
    let w1 = own_weight(model, n.inputs.get(1)?)?;
    if let Some(b) = n.inputs.get(2).filter(|b| !b.is_empty()) {
        let b = own_weight(model, b)?;
        if b.ndim() != 1 || b.len() != w1.shape()[0] {
            return None;
        }
    }
    let mut y = &n.outputs[0];
    let mut next = match readers(model, y).as_slice() {
        [(j, m)] if !is_output(model, y) => (*j, *m),
        _ => return None,
    };
    if next.1.op_type == "Relu" && next.1.domain.is_empty() && next.1.outputs.len() == 1 {
        y = &next.1.outputs[0];
        next = match readers(model, y).as_slice() {
            [(j, m)] if !is_output(model, y) => (*j, *m),
            _ => return None,
        };
    }
    let (j, m) = next;
    if !plain_conv(m) || m.inputs.first() != Some(y) {
        return None;
    }
    let w2 = own_weight(model, m.inputs.get(1)?)?;
    (w2.ndim() == w1.ndim() && w2.shape().get(1) == w1.shape().first()).then_some(j)
}

fn max_abs<'a>(v: impl Iterator<Item = &'a f32>) -> f32 {
    v.fold(0.0f32, |m, x| m.max(x.abs()))
}

fn weight_mut<'a>(model: &'a mut Model, name: &str) -> Result<&'a mut ArrayD<f32>> {
    match model.graph.initializers.iter_mut().find(|(n, _)| n == name) {
        Some((_, Tensor::F32(a))) => Ok(a),
        _ => Err(Error::Invalid(format!("weight {name:?} vanished"))),
    }
}

/// Equalizes every qualifying `Conv → [Relu] → Conv` pair of `model` (see the module
/// documentation) and returns the pairs, first node first.
///
/// # Errors
/// [`Error::NonFinite`] for a NaN or infinite weight of a qualifying pair.
pub(super) fn run(model: &mut Model) -> Result<Vec<(NodeRef, NodeRef)>> {
    let mut pairs = Vec::new();
    for i in 0..model.graph.nodes.len() {
        let Some(j) = partner(model, i) else {
            continue;
        };
        let (n1, n2) = (model.graph.nodes[i].clone(), model.graph.nodes[j].clone());
        let (w1, w2) = (&n1.inputs[1], &n2.inputs[1]);
        let a = weight_mut(model, w1)?.clone();
        let b = weight_mut(model, w2)?.clone();
        if let Some(bad) = a.iter().chain(b.iter()).find(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "weight of {} or {} holds {bad}",
                node_ref(&n1).name,
                node_ref(&n2).name
            )));
        }
        let s: Vec<f32> = a
            .axis_iter(Axis(0))
            .zip(b.axis_iter(Axis(1)))
            .map(|(row, col)| {
                let (r1, r2) = (max_abs(row.iter()), max_abs(col.iter()));
                if r1 > 0.0 && r2 > 0.0 {
                    ((f64::from(r1) * f64::from(r2)).sqrt() / f64::from(r2)) as f32
                } else {
                    1.0
                }
            })
            .collect();
        for (mut row, &si) in weight_mut(model, w1)?.axis_iter_mut(Axis(0)).zip(&s) {
            row.mapv_inplace(|v| v / si);
        }
        if let Some(bn) = n1.inputs.get(2).filter(|b| !b.is_empty()) {
            for (v, &si) in weight_mut(model, bn)?.iter_mut().zip(&s) {
                *v /= si;
            }
        }
        for (mut col, &si) in weight_mut(model, w2)?.axis_iter_mut(Axis(1)).zip(&s) {
            col.mapv_inplace(|v| v * si);
        }
        pairs.push((node_ref(&n1), node_ref(&n2)));
    }
    Ok(pairs)
}

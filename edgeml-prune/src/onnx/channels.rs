//! Structured removal of output channels along simple chains (see the module docs of
//! [`crate::onnx`]).

use super::{Layer, int_attr, weight_mut};
use edgeml_onnx::{Graph, Node, Tensor};
use ndarray::Axis;

/// Ops that act on each channel independently and keep the channel axis.
pub(super) const CHANNELWISE: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Clip",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "Softplus",
    "Softsign",
    "Mish",
    "Identity",
    "Dropout",
    "Neg",
    "Abs",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "LpPool",
];

/// Indices of the nodes that read `value`.
pub(super) fn consumers(g: &Graph, value: &str) -> Vec<usize> {
    g.nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.inputs.iter().any(|i| i == value))
        .map(|(i, _)| i)
        .collect()
}

/// How many nodes read `name` (an initializer sliced must belong to one node only).
fn uses(g: &Graph, name: &str) -> usize {
    g.nodes
        .iter()
        .map(|n| n.inputs.iter().filter(|i| *i == name).count())
        .sum()
}

/// Whether `name` can be sliced: read by one node only and not a graph input (an
/// initializer listed as an input can be overridden at run time, with its shape).
pub(super) fn private(g: &Graph, name: &str) -> bool {
    uses(g, name) == 1 && !g.inputs.iter().any(|i| i.name == name)
}

/// Whether no other prunable layer lies downstream of `l`.
pub(super) fn is_last(g: &Graph, layers: &[Layer], l: &Layer) -> bool {
    let mut seen = vec![false; g.nodes.len()];
    let mut stack = vec![l.node];
    while let Some(i) = stack.pop() {
        for out in &g.nodes[i].outputs {
            for c in consumers(g, out) {
                if !seen[c] {
                    seen[c] = true;
                    if layers.iter().any(|x| x.node == c) {
                        return false;
                    }
                    stack.push(c);
                }
            }
        }
    }
    true
}

/// One initializer to slice: `(name, axis, keep flags along the axis)`.
type Cut = (String, usize, Vec<bool>);

/// Plans the cuts for a per-channel initializer input `name` of `n` on a tensor whose
/// channel axis is `from_end` axes from the end, or refuses.
fn per_channel(g: &Graph, name: &str, from_end: usize, keep: &[bool]) -> Result<Cut, String> {
    let t = g
        .initializer(name)
        .ok_or_else(|| format!("`{name}` is not an initializer"))?;
    let s = t.shape();
    let c = keep.len();
    if s.is_empty() || s.iter().product::<usize>() == 1 {
        return Err(format!("`{name}` broadcasts over channels"));
    }
    let ok = s.len() >= from_end
        && s[s.len() - from_end] == c
        && s.iter()
            .enumerate()
            .all(|(i, &d)| i == s.len() - from_end || d == 1);
    if !ok || !matches!(t, Tensor::F32(_)) || !private(g, name) {
        return Err(format!(
            "`{name}` (shape {s:?}) is not a per-channel f32 tensor of this chain only"
        ));
    }
    Ok((name.to_owned(), s.len() - from_end, keep.to_vec()))
}

/// The cut of the next layer's input channels, if `n` is a layer that can take it.
fn terminal(
    g: &Graph,
    n: &Node,
    v: &str,
    keep: &[bool],
    spatial: usize,
) -> Option<Result<Cut, String>> {
    let w = n.inputs.get(1)?;
    if n.inputs.first().map(String::as_str) != Some(v) {
        return None;
    }
    let t = g.initializer(w)?;
    let in_axis = match n.op_type.as_str() {
        "Conv" if int_attr(n, "group", 1) == 1 && spatial > 0 => 1,
        "Gemm" if int_attr(n, "transA", 0) == 0 && spatial == 0 => {
            usize::from(int_attr(n, "transB", 0) != 0)
        }
        "MatMul" if t.shape().len() == 2 && spatial == 0 => 0,
        _ => return None,
    };
    if !private(g, w) || !matches!(t, Tensor::F32(_)) || t.shape().get(in_axis) != Some(&keep.len())
    {
        return Some(Err(format!(
            "next layer's weight `{w}` is shared, a graph input, not f32 or of another width"
        )));
    }
    Some(Ok((w.clone(), in_axis, keep.to_vec())))
}

/// The next layer after a `Flatten` of a conv output: `Gemm`/`MatMul` whose input
/// features are `C·S` blocks, one per channel.
fn after_flatten(g: &Graph, n: &Node, keep: &[bool]) -> Result<(Cut, usize), String> {
    let out = n.outputs.first().cloned().unwrap_or_default();
    if int_attr(n, "axis", 1) != 1 {
        return Err("Flatten with axis != 1".into());
    }
    let cs = consumers(g, &out);
    let [next] = cs.as_slice() else {
        return Err("Flatten output has several consumers".into());
    };
    let next_i = *next;
    let next = &g.nodes[next_i];
    let c = keep.len();
    let w = next.inputs.get(1).cloned().unwrap_or_default();
    let axis = match next.op_type.as_str() {
        "Gemm" if int_attr(next, "transA", 0) == 0 => usize::from(int_attr(next, "transB", 0) != 0),
        "MatMul" => 0,
        op => return Err(format!("Flatten feeds {op}")),
    };
    let k = g
        .initializer(&w)
        .and_then(|t| t.shape().get(axis).copied())
        .unwrap_or(0);
    if k == 0
        || !k.is_multiple_of(c)
        || !private(g, &w)
        || !matches!(g.initializer(&w), Some(Tensor::F32(_)))
    {
        return Err(format!(
            "weight `{w}` after Flatten does not have C·S private f32 features"
        ));
    }
    let s = k / c;
    Ok(((w, axis, (0..k).map(|f| keep[f / s]).collect()), next_i))
}

/// Removes the output channels of `l` where `keep` is false, when its output chain is
/// simple; returns how many were removed with a note when their constant output could
/// not be folded into the next layer, or why nothing was changed.
pub(super) fn remove_output_channels(
    g: &mut Graph,
    l: &Layer,
    keep: &[bool],
) -> Result<(usize, Option<String>), String> {
    let removed = keep.iter().filter(|&&k| !k).count();
    if removed == 0 {
        return Ok((0, None));
    }
    if removed == keep.len() {
        return Err("every channel is pruned".into());
    }
    let node = &g.nodes[l.node];
    if !private(g, &l.weight) {
        return Err("its weight is shared or a graph input".into());
    }
    let w_rank = g.initializer(&l.weight).map_or(0, |t| t.shape().len());
    // Conv outputs are [N, C, spatial...]; Gemm/MatMul outputs [.., C].
    let (spatial, mut cuts): (usize, Vec<Cut>) = match node.op_type.as_str() {
        "Conv" if int_attr(node, "group", 1) == 1 => {
            (w_rank - 2, vec![(l.weight.clone(), 0, keep.to_vec())])
        }
        "Conv" => return Err("grouped or depthwise conv".into()),
        "Gemm" | "MatMul" => (0, vec![(l.weight.clone(), l.perm[0], keep.to_vec())]),
        op => return Err(format!("{op} output channels are not removed")),
    };
    let from_end = spatial + 1;
    if let Some(b) = node.inputs.get(2).filter(|b| !b.is_empty()) {
        cuts.push(per_channel(g, b, 1, keep)?);
    }
    let mut v = node.outputs.first().cloned().unwrap_or_default();
    let mut stale = vec![v.clone()];
    let mut chain = Vec::new();
    let term = loop {
        if g.outputs.iter().any(|o| o.name == v) {
            return Err(format!("`{v}` is a graph output"));
        }
        let cs = consumers(g, &v);
        let [c] = cs.as_slice() else {
            return Err(format!(
                "`{v}` has {} consumers (residual or branch)",
                cs.len()
            ));
        };
        let n = &g.nodes[*c];
        if let Some(cut) = terminal(g, n, &v, keep, spatial) {
            cuts.push(cut?);
            break *c;
        }
        let op = n.op_type.as_str();
        if op == "Flatten" && spatial > 0 {
            let (cut, next) = after_flatten(g, n, keep)?;
            cuts.push(cut);
            break next;
        }
        chain.push(*c);
        if matches!(op, "Add" | "Mul" | "Sub" | "Div") && n.inputs.len() == 2 {
            let other = if n.inputs[0] == v {
                &n.inputs[1]
            } else {
                &n.inputs[0]
            };
            if g.initializer(other).is_none() {
                return Err(format!(
                    "{op} joins `{v}` with `{other}` (residual coupling: use structured \
                     pruning of coupled groups)"
                ));
            }
            cuts.push(per_channel(g, other, from_end, keep)?);
            v = n.outputs.first().cloned().unwrap_or_default();
            stale.push(v.clone());
            continue;
        }
        if n.inputs.first() != Some(&v) {
            return Err(format!("`{v}` is not the first input of {op}"));
        }
        match op {
            "BatchNormalization" if n.outputs.iter().skip(1).all(String::is_empty) => {
                for p in n.inputs.iter().skip(1) {
                    cuts.push(per_channel(g, p, 1, keep)?);
                }
            }
            _ if CHANNELWISE.contains(&op) && n.outputs.iter().skip(1).all(String::is_empty) => {
                if op == "PRelu" {
                    cuts.push(per_channel(g, &n.inputs[1], from_end, keep)?);
                }
            }
            _ => {
                return Err(format!(
                    "{op} after the layer is not followed (structured pruning of coupled groups may)"
                ));
            }
        }
        v = n.outputs.first().cloned().unwrap_or_default();
        stale.push(v.clone());
    };
    let feat_axis = cuts.last().map_or(0, |c| c.1);
    let note = super::fold::fold_removed(g, l.node, &chain, term, feat_axis, keep)
        .err()
        .map(|why| format!("removed; their constant output was dropped: {why}"));
    for (name, axis, k) in cuts {
        let idx: Vec<usize> = (0..k.len()).filter(|&i| k[i]).collect();
        if let Some(a) = weight_mut(g, &name) {
            *a = a.select(Axis(axis), &idx);
        }
    }
    g.value_info.retain(|vi| !stale.contains(&vi.name));
    Ok((removed, note))
}

//! Folding the constant output of removed channels into the next layer's bias.
//!
//! A pruned output channel has all-zero weights, so the producer writes a constant into
//! it (its bias, or 0) at every position; channel-wise ops keep it constant. Removing
//! the channel drops that constant's contribution to the next layer, so it is added to
//! the next layer's bias instead, and the smaller model computes what the zeroed one
//! did. Where it cannot be folded exactly (a padded next conv, an op that is not
//! evaluated here, a `MatMul` without a bias `Add`), the channels are still removed and
//! the report's note says that their constant output was dropped.

use super::channels::{consumers, private};
use super::int_attr;
use edgeml_onnx::{Attribute, Graph, Node, Tensor};
use ndarray::{ArrayD, IxDyn};

fn float_attr(n: &Node, name: &str, default: f32) -> f32 {
    match n.attr(name) {
        Some(Attribute::Float(f)) => *f,
        _ => default,
    }
}

/// The values of an `f32` initializer, flattened.
fn values(g: &Graph, name: &str) -> Result<Vec<f32>, String> {
    match g.initializer(name) {
        Some(Tensor::F32(a)) => Ok(a.iter().copied().collect()),
        _ => Err(format!("`{name}` is not an f32 initializer")),
    }
}

/// Per-channel values of `name` (one per channel, or one broadcast to all).
fn per_channel(g: &Graph, name: &str, c: usize) -> Result<Vec<f32>, String> {
    let v = values(g, name)?;
    match v.len() {
        1 => Ok(vec![v[0]; c]),
        n if n == c => Ok(v),
        n => Err(format!("`{name}` has {n} values for {c} channels")),
    }
}

/// Each output channel of the producer when its weights are all zero.
fn producer_constant(g: &Graph, p: &Node, c: usize) -> Result<Vec<f32>, String> {
    let bias = p.inputs.get(2).filter(|b| !b.is_empty());
    match (p.op_type.as_str(), bias) {
        (_, None) | ("MatMul", _) => Ok(vec![0.0; c]),
        ("Gemm", Some(b)) => {
            let beta = float_attr(p, "beta", 1.0);
            Ok(per_channel(g, b, c)?.iter().map(|x| beta * x).collect())
        }
        (_, Some(b)) => per_channel(g, b, c),
    }
}

fn zero_pads(n: &Node) -> bool {
    let pads = match n.attr("pads") {
        Some(Attribute::Ints(p)) => p.iter().all(|&x| x == 0),
        _ => true,
    };
    let auto = match n.attr("auto_pad") {
        Some(Attribute::String(s)) => s == b"NOTSET" || s == b"VALID",
        _ => true,
    };
    pads && auto
}

/// Applies chain node `n` (reading value `v`) to the per-channel constants `a`.
fn step(g: &Graph, n: &Node, v: &str, a: &mut [f32]) -> Result<(), String> {
    let c = a.len();
    let op = n.op_type.as_str();
    let input = |i: usize| n.inputs.get(i).filter(|s| !s.is_empty());
    match op {
        "BatchNormalization" => {
            let eps = float_attr(n, "epsilon", 1e-5);
            let p: Vec<Vec<f32>> = (1..5)
                .map(|i| per_channel(g, input(i).map_or("", |s| s.as_str()), c))
                .collect::<Result<_, _>>()?;
            for (i, x) in a.iter_mut().enumerate() {
                *x = (*x - p[2][i]) / (p[3][i] + eps).sqrt() * p[0][i] + p[1][i];
            }
        }
        "Add" | "Sub" | "Mul" | "Div" => {
            let first = n.inputs[0] == v;
            let p = per_channel(g, &n.inputs[usize::from(first)], c)?;
            for (x, &q) in a.iter_mut().zip(&p) {
                let (l, r) = if first { (*x, q) } else { (q, *x) };
                *x = match op {
                    "Add" => l + r,
                    "Sub" => l - r,
                    "Mul" => l * r,
                    _ => l / r,
                };
            }
        }
        "Relu" => a.iter_mut().for_each(|x| *x = x.max(0.0)),
        "LeakyRelu" => {
            let alpha = float_attr(n, "alpha", 0.01);
            a.iter_mut()
                .for_each(|x| *x = if *x < 0.0 { alpha * *x } else { *x });
        }
        "Sigmoid" => a.iter_mut().for_each(|x| *x = 1.0 / (1.0 + (-*x).exp())),
        "Tanh" => a.iter_mut().for_each(|x| *x = x.tanh()),
        "Neg" => a.iter_mut().for_each(|x| *x = -*x),
        "Abs" => a.iter_mut().for_each(|x| *x = x.abs()),
        "Clip" => {
            let bound = |i: usize, attr: &str, d: f32| match input(i) {
                Some(name) => per_channel(g, name, 1).map(|v| v[0]),
                None => Ok(float_attr(n, attr, d)),
            };
            let (lo, hi) = (bound(1, "min", f32::MIN)?, bound(2, "max", f32::MAX)?);
            a.iter_mut().for_each(|x| *x = x.max(lo).min(hi));
        }
        "Identity" | "Dropout" | "MaxPool" | "GlobalAveragePool" | "GlobalMaxPool" => {}
        "AveragePool" if zero_pads(n) || int_attr(n, "count_include_pad", 0) == 0 => {}
        _ => return Err(format!("{op} is not evaluated")),
    }
    Ok(())
}

/// Adds `contrib` (one value per output of `term`) to `term`'s bias, creating it when
/// the op allows.
fn absorb(g: &mut Graph, term: usize, contrib: &[f64]) -> Result<(), String> {
    let n = &g.nodes[term];
    let bias = n.inputs.get(2).filter(|b| !b.is_empty()).cloned();
    let (scale, bias) = match n.op_type.as_str() {
        "Conv" => (1.0, bias),
        "Gemm" => {
            let beta = f64::from(float_attr(n, "beta", 1.0));
            if beta == 0.0 {
                return Err("the next Gemm has beta = 0".into());
            }
            (f64::from(float_attr(n, "alpha", 1.0)) / beta, bias)
        }
        _ => {
            let out = n.outputs.first().cloned().unwrap_or_default();
            let cs = consumers(g, &out);
            let add = match cs.as_slice() {
                [i] if g.nodes[*i].op_type == "Add" && g.nodes[*i].inputs.len() == 2 => *i,
                _ => return Err("the next MatMul has no bias Add".into()),
            };
            let a = &g.nodes[add];
            let other = if a.inputs[0] == out {
                &a.inputs[1]
            } else {
                &a.inputs[0]
            };
            (1.0, Some(other.clone()))
        }
    };
    match bias {
        Some(b) => {
            if !private(g, &b) {
                return Err(format!("bias `{b}` is shared or a graph input"));
            }
            let Some((_, Tensor::F32(t))) = g.initializers.iter_mut().find(|(x, _)| *x == b) else {
                return Err(format!("bias `{b}` is not an f32 initializer"));
            };
            if t.len() != contrib.len() {
                return Err(format!("bias `{b}` does not have one value per output"));
            }
            for (x, &d) in t.iter_mut().zip(contrib) {
                *x = (f64::from(*x) + scale * d) as f32;
            }
        }
        None => {
            let w = n.inputs.get(1).cloned().unwrap_or_default();
            let mut name = format!("{w}_folded_bias");
            while g
                .nodes
                .iter()
                .any(|m| m.inputs.contains(&name) || m.outputs.contains(&name))
                || g.initializer(&name).is_some()
            {
                name.push('_');
            }
            let v: Vec<f32> = contrib.iter().map(|&d| (scale * d) as f32).collect();
            let t = ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).map_err(|e| e.to_string())?;
            g.initializers.push((name.clone(), Tensor::F32(t)));
            g.nodes[term].inputs.truncate(2);
            g.nodes[term].inputs.push(name);
        }
    }
    Ok(())
}

/// Folds the constant output of the removed channels (`keep[c] == false`) of
/// `producer`, carried through the `chain` nodes, into the bias of the next layer
/// `term`, whose weight has its input features on `feat_axis` (`S` per channel). Must
/// run before any slicing.
pub(super) fn fold_removed(
    g: &mut Graph,
    producer: usize,
    chain: &[usize],
    term: usize,
    feat_axis: usize,
    keep: &[bool],
) -> Result<(), String> {
    let c = keep.len();
    let mut a = producer_constant(g, &g.nodes[producer], c)?;
    let mut v = g.nodes[producer]
        .outputs
        .first()
        .cloned()
        .unwrap_or_default();
    for &i in chain {
        step(g, &g.nodes[i], &v, &mut a)?;
        v = g.nodes[i].outputs.first().cloned().unwrap_or_default();
    }
    if a.iter().zip(keep).all(|(x, &k)| k || *x == 0.0) {
        return Ok(());
    }
    if a.iter().any(|x| !x.is_finite()) {
        return Err("the constant is not finite".into());
    }
    let t = &g.nodes[term];
    if t.op_type == "Conv" && !zero_pads(t) {
        return Err("the next Conv pads its input".into());
    }
    let w = match g.initializer(t.inputs.get(1).map_or("", |s| s.as_str())) {
        Some(Tensor::F32(w)) => w,
        _ => return Err("the next weight is not f32".into()),
    };
    let out_axis = if w.ndim() == 2 { 1 - feat_axis } else { 0 };
    let s = w.shape()[feat_axis] / c;
    let mut contrib = vec![0.0f64; w.shape()[out_axis]];
    for (idx, &x) in w.indexed_iter() {
        let ch = idx[feat_axis] / s;
        if !keep[ch] {
            contrib[idx[out_axis]] += f64::from(a[ch]) * f64::from(x);
        }
    }
    absorb(g, term, &contrib)
}

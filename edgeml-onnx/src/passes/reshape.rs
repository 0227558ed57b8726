//! `Transpose`s that only move extent-1 axes become `Reshape`s; `Reshape` chains
//! collapse.

use super::{Pass, constants, default_domain};
use crate::{Attribute, Dim, InputType, Model, Node, Result, Tensor};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;

fn single_io(n: &Node, op: &str) -> bool {
    default_domain(n) && n.op_type == op && n.outputs.len() == 1 && !n.outputs[0].is_empty()
}

/// The `Reshape` target that writes `dims` whatever the input's size: known extents
/// as they are, at most one other extent as `-1`; `None` when there are two unknown
/// extents, or a zero extent (`0` means "copy" in a target, and `-1` cannot be
/// resolved beside a zero).
fn target(dims: &[Dim]) -> Option<Vec<i64>> {
    let mut unknown = 0;
    dims.iter()
        .map(|d| match d {
            Dim::Known(0) => None,
            Dim::Known(k) => i64::try_from(*k).ok(),
            _ => {
                unknown += 1;
                (unknown == 1).then_some(-1)
            }
        })
        .collect()
}

/// Rewrites a `Transpose` whose permutation keeps the order of every axis whose
/// extent is not known to be 1 into a `Reshape` to the transposed shape (a new
/// `int64` initializer): moving extent-1 axes does not change the order of the
/// elements in memory, so the two are the same function. Applies when the input's
/// shape is known (declared or inferred, see [`super::infer_value_types`]) with at
/// most one extent not known (written `-1` in the target) and no zero extent, the
/// permutation is not the identity ([`super::MergeTransposes`] removes those) and the
/// model's default opset is 5 or later (`Reshape` with a shape input). Exact: only
/// the shape metadata changes.
///
/// What paddle2onnx writes around recurrent layers at batch 1 (`Transpose(perm =
/// [1, 0, 2])` of a `[1, T, C]` value); [`MergeReshapes`] then merges the `Reshape`
/// with its neighbours.
#[derive(Debug, Clone, Copy, Default)]
pub struct TransposeToReshape;

impl Pass for TransposeToReshape {
    fn name(&self) -> &'static str {
        "transpose-to-reshape"
    }

    fn run(&self, model: &mut Model) -> Result<usize> {
        if model.opset("").unwrap_or(0) < 5
            || !model
                .graph
                .nodes
                .iter()
                .any(|n| single_io(n, "Transpose") && n.inputs.len() == 1)
        {
            return Ok(0);
        }
        // Rewrites keep every value's shape, so one inference serves the whole run.
        let types = super::infer_value_types(model).unwrap_or_default();
        let mut done = 0;
        for k in 0..model.graph.nodes.len() {
            let n = &model.graph.nodes[k];
            if !(single_io(n, "Transpose") && n.inputs.len() == 1) {
                continue;
            }
            let Some(shape) = types.get(&n.inputs[0]).and_then(|t| t.shape.as_ref()) else {
                continue;
            };
            let Some(t) = reshape_target(n, shape) else {
                continue;
            };
            let g = &mut model.graph;
            let name = g.fresh_name(&format!("{}_shape", g.nodes[k].outputs[0]));
            let len = t.len();
            let value = ArrayD::from_shape_vec(IxDyn(&[len]), t)
                .map_err(|e| crate::Error::Internal(format!("Transpose to Reshape: {e}")))?;
            g.set_initializer(&name, Tensor::I64(value));
            let old = &g.nodes[k];
            let reshape = Node::new(
                "Reshape",
                &[old.inputs[0].as_str(), name.as_str()],
                &[old.outputs[0].as_str()],
            )
            .with_name(&old.name);
            g.replace_node(k, reshape)?;
            done += 1;
        }
        super::list_initializers_as_inputs(model);
        Ok(done)
    }
}

/// The `Reshape` target equal to Transpose `n` of a value of shape `x`, if the
/// transpose only moves extent-1 axes.
fn reshape_target(n: &Node, x: &[Dim]) -> Option<Vec<i64>> {
    let perm: Vec<usize> = match n.attr("perm") {
        Some(Attribute::Ints(p)) => p
            .iter()
            .map(|&v| usize::try_from(v).ok())
            .collect::<Option<_>>()?,
        None => (0..x.len()).rev().collect(),
        Some(_) => return None,
    };
    let mut seen = vec![false; x.len()];
    if perm.len() != x.len()
        || perm
            .iter()
            .any(|&p| p >= x.len() || std::mem::replace(&mut seen[p], true))
    {
        return None;
    }
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return None;
    }
    let moved: Vec<usize> = perm
        .iter()
        .copied()
        .filter(|&p| x[p] != Dim::Known(1))
        .collect();
    if moved.windows(2).any(|w| w[0] > w[1]) {
        return None;
    }
    let dims: Vec<Dim> = perm.iter().map(|&p| x[p].clone()).collect();
    target(&dims)
}

/// Simplifies `Reshape`s (default opset 5 or later, the target a constant):
///
/// - a `Reshape` whose data input is written by another `Reshape` reads that
///   `Reshape`'s input instead, when its own target has no `0` entry (a `0` copies an
///   extent of the intermediate value): a reshape only depends on the element order,
///   which a `Reshape` keeps, and the element count. The inner `Reshape` is left to
///   [`super::EliminateDeadCode`] when nothing else reads it;
/// - a `Reshape` whose input and output shapes are both fully known (declared or
///   inferred) and equal becomes an `Identity`, which [`super::EliminateIdentity`]
///   removes.
///
/// Exact: neither rewrite changes the elements or their order, only how many shape
/// changes are spelled out.
#[derive(Debug, Clone, Copy, Default)]
pub struct MergeReshapes;

impl Pass for MergeReshapes {
    fn name(&self) -> &'static str {
        "merge-reshapes"
    }

    fn run(&self, model: &mut Model) -> Result<usize> {
        let is_reshape = |n: &Node| single_io(n, "Reshape") && n.inputs.len() == 2;
        if model.opset("").unwrap_or(0) < 5 || !model.graph.nodes.iter().any(is_reshape) {
            return Ok(0);
        }
        let types = super::infer_value_types(model).unwrap_or_default();
        let mut done = 0;
        for k in 0..model.graph.nodes.len() {
            let g = &model.graph;
            let n = &g.nodes[k];
            if !is_reshape(n) {
                continue;
            }
            let consts = constants(g, model.ir_version);
            let Some(t) = consts.get(n.inputs[1].as_str()).and_then(|t| t.as_i64()) else {
                continue;
            };
            let ix = g.index();
            let inner = ix
                .producer(&n.inputs[0])
                .filter(|&p| is_reshape(&g.nodes[p]) && !t.iter().any(|&v| v == 0));
            if let Some(p) = inner {
                let src = g.nodes[p].inputs[0].clone();
                let mut r = n.clone();
                r.inputs[0] = src;
                model.graph.replace_node(k, r)?;
                done += 1;
            } else if same_known_shape(&types, &n.inputs[0], &n.outputs[0]) {
                let mut r = n.clone();
                r.op_type = "Identity".to_owned();
                r.inputs.truncate(1);
                r.attributes.clear();
                model.graph.replace_node(k, r)?;
                done += 1;
            }
        }
        Ok(done)
    }
}

/// Whether the shapes of `a` and `b` are fully known and equal.
fn same_known_shape(types: &HashMap<String, InputType>, a: &str, b: &str) -> bool {
    let known = |v: &str| -> Option<Vec<usize>> {
        types
            .get(v)?
            .shape
            .as_ref()?
            .iter()
            .map(|d| match d {
                Dim::Known(k) => Some(*k),
                _ => None,
            })
            .collect()
    };
    matches!((known(a), known(b)), (Some(x), Some(y)) if x == y)
}

//! Constant folding through the runtime's own operators.

use super::{Pass, constants, has_subgraphs};
use crate::{BuildContext, Dim, InputType, Model, Registry, Result, Tensor};
use std::collections::HashMap;

/// Operators whose output can be much larger than their inputs: folded only when
/// inference tells the output's size beforehand.
const GROWING: &[&str] = &[
    "ConstantOfShape",
    "Expand",
    "Tile",
    "Range",
    "Pad",
    "Resize",
    "Upsample",
    "MatMul",
    "Gemm",
    "Conv",
    "ConvTranspose",
    "Einsum",
    "OneHot",
];

/// Replaces `Shape` and `Size` nodes whose input has a fully known shape (declared or
/// inferred) by their value, and runs every main-graph node whose inputs are all
/// constant (initializers that are not graph inputs, or outputs of nodes folded
/// before) once, with the operators of the
/// default registry ([`crate::ops::default_registry`]) or of
/// [`FoldConstants::run_with`]'s registry, and replaces it by initializers holding its
/// outputs.
///
/// Documented skips (the node stays as it is, no error): an output would have more
/// than [`FoldConstants::max_elements`] elements (checked before running when shape
/// inference knows the size; operators that can grow their input, such as `Expand`,
/// `Tile` or `ConstantOfShape`, are not run at all when it does not); a graph output
/// among its outputs; nondeterministic operators (`RandomNormal`, …);
/// `DequantizeLinear` (folding a QDQ model's constant weights would undo its
/// quantization, so they stay quantized, as onnxruntime and onnxslim keep them); nodes with
/// subgraphs; operators the registry does not have for the model's opset; and nodes
/// whose operator fails on the constant inputs (the runtime that runs the model will
/// report that error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoldConstants {
    /// The largest number of elements a folded output may have. Default 2²² (16 MiB
    /// of `f32`).
    pub max_elements: usize,
}

impl Default for FoldConstants {
    fn default() -> Self {
        Self {
            max_elements: 1 << 22,
        }
    }
}

fn known_len(t: &Option<InputType>) -> Option<usize> {
    t.as_ref()?
        .shape
        .as_ref()?
        .iter()
        .try_fold(1usize, |acc, d| match d {
            Dim::Known(k) => acc.checked_mul(*k),
            _ => None,
        })
}

/// The element count of the first output of the operators in [`GROWING`] whose size
/// the constant inputs tell directly (`ConstantOfShape`, `Expand`, `Tile`), computed
/// without materialising anything; `None` when unknown or on overflow.
fn growing_len(op: &str, args: &[Option<&Tensor>]) -> Option<usize> {
    let ints = |k: usize| -> Option<Vec<i64>> {
        args.get(k)
            .copied()
            .flatten()?
            .as_i64()
            .map(|a| a.iter().copied().collect())
    };
    let product = |v: &[i64]| -> Option<usize> {
        v.iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
    };
    match op {
        "ConstantOfShape" => product(&ints(0)?),
        "Tile" => {
            let x = args.first().copied().flatten()?;
            let reps = ints(1)?;
            let dims: Vec<i64> = x
                .shape()
                .iter()
                .zip(&reps)
                .map(|(&d, &r)| (d as i64).saturating_mul(r))
                .collect();
            (reps.len() == x.shape().len()).then_some(())?;
            product(&dims)
        }
        "Expand" => {
            let x = args.first().copied().flatten()?;
            let shape = ints(1)?;
            let rank = shape.len().max(x.shape().len());
            let pad = |v: Vec<i64>| -> Vec<i64> {
                let mut p = vec![1; rank - v.len()];
                p.extend(v);
                p
            };
            let xs = pad(x.shape().iter().map(|&d| d as i64).collect());
            let ss = pad(shape);
            let dims: Vec<i64> = xs
                .iter()
                .zip(&ss)
                .map(|(&a, &b)| if a == 1 { b } else { a })
                .collect();
            product(&dims)
        }
        _ => None,
    }
}

/// The value of a `Shape` or `Size` node whose input has a fully known shape (declared
/// or inferred, see [`super::infer_value_types`]), computed without the input's data.
fn static_shape_value(
    model: &Model,
    node: &crate::Node,
    types: &mut Option<HashMap<String, InputType>>,
) -> Option<Tensor> {
    if !super::default_domain(node)
        || !matches!(node.op_type.as_str(), "Shape" | "Size")
        || node.outputs.len() != 1
        || node.outputs[0].is_empty()
    {
        return None;
    }
    let input = node.inputs.first()?;
    let types = types.get_or_insert_with(|| super::infer_value_types(model).unwrap_or_default());
    let dims: Vec<i64> = types
        .get(input)?
        .shape
        .as_ref()?
        .iter()
        .map(|d| match d {
            Dim::Known(k) => i64::try_from(*k).ok(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    if node.op_type == "Size" {
        let n = dims.iter().try_fold(1i64, |acc, &d| acc.checked_mul(d))?;
        return Some(Tensor::I64(ndarray::ArrayD::from_elem(
            ndarray::IxDyn(&[]),
            n,
        )));
    }
    let r = dims.len() as i64;
    let int = |name: &str| match node.attr(name) {
        Some(crate::Attribute::Int(v)) => Some(*v),
        _ => None,
    };
    let clamp = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) };
    let start = clamp(int("start").unwrap_or(0));
    let end = clamp(int("end").unwrap_or(r)).max(start);
    let part: Vec<i64> = dims[start as usize..end as usize].to_vec();
    ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[part.len()]), part)
        .ok()
        .map(Tensor::I64)
}

impl FoldConstants {
    /// [`Pass::run`] with the operators of `registry`.
    ///
    /// # Errors
    /// [`crate::Error::InvalidModel`] for a cycle or dangling input.
    pub fn run_with(&self, model: &mut Model, registry: &Registry) -> Result<usize> {
        let order = model.graph.topo_order()?;
        let g = &model.graph;
        let ix = g.index();
        let base = constants(g, model.ir_version);
        let mut folded: HashMap<String, Tensor> = HashMap::new();
        let mut remove = vec![false; g.nodes.len()];
        // Known shapes, for `Shape`/`Size` of values that are not constant.
        let mut types: Option<HashMap<String, InputType>> = None;
        for i in order {
            let node = &g.nodes[i];
            if let Some(t) = static_shape_value(model, node, &mut types)
                && !node.outputs.iter().any(|o| ix.is_output(o))
                && let Some(out) = node.outputs.first()
            {
                folded.insert(out.clone(), t);
                remove[i] = true;
                continue;
            }
            // `DequantizeLinear` of constant weights is what makes a QDQ model: folding
            // it would store float weights (4x the bytes) and undo the quantization, so
            // it stays, as onnxruntime's and onnxslim's folding keep it.
            if super::NONDETERMINISTIC.contains(&node.op_type.as_str())
                || node.op_type == "DequantizeLinear"
                || has_subgraphs(node)
                || node.outputs.iter().all(String::is_empty)
                || node.outputs.iter().any(|o| ix.is_output(o))
            {
                continue;
            }
            let args: Option<Vec<Option<&Tensor>>> = node
                .inputs
                .iter()
                .map(|n| {
                    if n.is_empty() {
                        Some(None)
                    } else {
                        folded
                            .get(n)
                            .or_else(|| base.get(n.as_str()).copied())
                            .map(Some)
                    }
                })
                .collect();
            let Some(args) = args else { continue };
            let domain = if node.domain == "ai.onnx" {
                ""
            } else {
                node.domain.as_str()
            };
            let Some(opset) = model.opset(domain) else {
                continue;
            };
            let Some(factory) = registry.lookup(domain, &node.op_type, opset) else {
                continue;
            };
            let types: Vec<Option<InputType>> = args
                .iter()
                .map(|a| {
                    a.map(|t| InputType {
                        dtype: Some(t.dtype()),
                        shape: Some(t.shape().iter().map(|&d| Dim::Known(d)).collect()),
                    })
                })
                .collect();
            let predicted = crate::shapes::infer(node, opset, &types, &args);
            let mut sizes: Vec<Option<usize>> = predicted.iter().map(known_len).collect();
            if let Some(first) = sizes.first_mut()
                && first.is_none()
            {
                *first = growing_len(&node.op_type, &args);
            }
            if sizes.iter().flatten().any(|&n| n > self.max_elements) {
                log::debug!(
                    "not folding {} node {:?}: an output would exceed {} elements",
                    node.op_type,
                    node.name_or_output(),
                    self.max_elements
                );
                continue;
            }
            if GROWING.contains(&node.op_type.as_str()) && sizes.first().is_none_or(Option::is_none)
            {
                continue;
            }
            let ctx = BuildContext::new(node, opset, args.clone()).with_input_types(types);
            let what = format!("{} node {:?} (constant folding)", node.op_type, node.name);
            let outs = match factory
                .build(&ctx)
                .and_then(|op| crate::op::run_guarded(&*op, &args, &what))
            {
                Ok(o) => o,
                Err(e) => {
                    log::debug!("not folding {what}: {e}");
                    continue;
                }
            };
            let missing = node
                .outputs
                .iter()
                .enumerate()
                .any(|(k, o)| !o.is_empty() && k >= outs.len());
            if missing || outs.iter().any(|t| t.len() > self.max_elements) {
                continue;
            }
            for (name, t) in node.outputs.iter().zip(outs) {
                if !name.is_empty() {
                    folded.insert(name.clone(), t);
                }
            }
            remove[i] = true;
        }
        let done = remove.iter().filter(|&&r| r).count();
        if done == 0 {
            return Ok(0);
        }
        let g = &mut model.graph;
        // Keep file order of the new initializers: by the removed nodes' order.
        let mut new_inits = Vec::new();
        let mut k = remove.iter();
        let mut kept = Vec::with_capacity(g.nodes.len() - done);
        for node in std::mem::take(&mut g.nodes) {
            if k.next().copied().unwrap_or(false) {
                for o in node.outputs.iter().filter(|o| !o.is_empty()) {
                    if let Some(t) = folded.remove(o) {
                        new_inits.push((o.clone(), t));
                    }
                }
            } else {
                kept.push(node);
            }
        }
        g.nodes = kept;
        for (n, t) in new_inits {
            g.set_initializer(&n, t);
        }
        super::list_initializers_as_inputs(model);
        Ok(done)
    }
}

impl Pass for FoldConstants {
    fn name(&self) -> &'static str {
        "fold-constants"
    }

    fn run(&self, model: &mut Model) -> Result<usize> {
        self.run_with(model, &crate::ops::default_registry())
    }
}

//! Shape and type inference written into `value_info`.

use super::Pass;
use crate::{Dim, Error, Graph, InputType, Model, Result, Tensor, ValueInfo};
use std::borrow::Cow;
use std::collections::HashMap;

fn exact(t: &Tensor) -> InputType {
    InputType {
        dtype: Some(t.dtype()),
        shape: Some(t.shape().iter().map(|&d| Dim::Known(d)).collect()),
    }
}

fn declared(v: &ValueInfo) -> Option<InputType> {
    (v.dtype.is_some() || v.shape.is_some()).then(|| InputType {
        dtype: v.dtype,
        shape: v.shape.clone(),
    })
}

/// Why `inferred` contradicts `declared`, if it does (element types differ, ranks
/// differ, or two known extents differ).
fn contradiction(declared: &InputType, inferred: &InputType) -> Option<String> {
    if let (Some(a), Some(b)) = (declared.dtype, inferred.dtype)
        && a != b
    {
        return Some(format!("element type {a:?} is declared, {b:?} inferred"));
    }
    if let (Some(a), Some(b)) = (&declared.shape, &inferred.shape) {
        let differ = a.len() != b.len()
            || a.iter()
                .zip(b)
                .any(|(x, y)| matches!((x, y), (Dim::Known(p), Dim::Known(q)) if p != q));
        if differ {
            return Some(format!("shape {a:?} is declared, {b:?} inferred"));
        }
    }
    None
}

/// The element type and shape of every value of the main graph as far as known:
/// exact for initializers and `Constant` outputs, as declared (inputs, `value_info`,
/// outputs), else inferred from the inputs following the operator specifications
/// (the rules the planner uses; see the crate README, "shape inference"). A declared
/// type wins over an inferred one. Unknown dimensions stay [`Dim::Unknown`] and
/// symbolic ones [`Dim::Symbolic`].
///
/// # Errors
/// [`Error::InvalidModel`] for cycles and dangling inputs; [`Error::ShapeMismatch`]
/// naming the value when what inference derives contradicts what the model declares.
pub fn infer_value_types(model: &Model) -> Result<HashMap<String, InputType>> {
    Ok(infer_graph(model, &model.graph)?.0)
}

type Inferred = (HashMap<String, InputType>, Vec<(String, InputType)>);

/// All known types, plus the values whose type only inference gives, in node order.
fn infer_graph(model: &Model, g: &Graph) -> Result<Inferred> {
    let order = g.topo_order()?;
    let mut known: HashMap<String, InputType> = HashMap::new();
    for v in g.inputs.iter().chain(&g.value_info).chain(&g.outputs) {
        if let Some(t) = declared(v) {
            known.insert(v.name.clone(), t);
        }
    }
    for (n, t) in &g.initializers {
        known.insert(n.clone(), exact(t));
    }
    let mut consts: HashMap<&str, Cow<'_, Tensor>> = super::constants(g, model.ir_version)
        .into_iter()
        .map(|(n, t)| (n, Cow::Borrowed(t)))
        .collect();
    let mut new = Vec::new();
    for i in order {
        let node = &g.nodes[i];
        let inferred: Vec<Option<InputType>> = match node.constant_value() {
            Ok(Some(t)) => {
                let ty = exact(&t);
                if let Some(o) = node.outputs.first() {
                    consts.insert(o.as_str(), Cow::Owned(t));
                }
                vec![Some(ty)]
            }
            _ => {
                let types: Vec<Option<InputType>> =
                    node.inputs.iter().map(|n| known.get(n).cloned()).collect();
                let cs: Vec<Option<&Tensor>> = node
                    .inputs
                    .iter()
                    .map(|n| consts.get(n.as_str()).map(|c| &**c))
                    .collect();
                let opset = model.opset(&node.domain).unwrap_or(0);
                crate::shapes::infer(node, opset, &types, &cs)
            }
        };
        for (o, t) in node.outputs.iter().zip(inferred) {
            let Some(t) = t else { continue };
            if o.is_empty() {
                continue;
            }
            match known.get(o) {
                Some(d) => {
                    if let Some(why) = contradiction(d, &t) {
                        return Err(Error::ShapeMismatch(format!(
                            "value {o:?} of {} node {:?}: {why}",
                            node.op_type,
                            node.name_or_output()
                        )));
                    }
                }
                None => {
                    known.insert(o.clone(), t.clone());
                    new.push((o.clone(), t));
                }
            }
        }
    }
    Ok((known, new))
}

/// Writes the type of every intermediate value that only inference knows into
/// `value_info`, and fills the type of graph outputs declared without one. Returns the
/// number of values annotated. Subgraphs are not annotated.
///
/// # Errors
/// As [`infer_value_types`].
pub fn infer_shapes(model: &mut Model) -> Result<usize> {
    let (_, new) = infer_graph(model, &model.graph)?;
    let g = &mut model.graph;
    let mut n = 0;
    for (name, t) in new {
        if let Some(o) = g.outputs.iter_mut().find(|o| o.name == name) {
            o.dtype = t.dtype;
            o.shape = t.shape;
        } else {
            g.value_info.push(ValueInfo {
                name,
                dtype: t.dtype,
                shape: t.shape,
                doc_string: String::new(),
            });
        }
        n += 1;
    }
    Ok(n)
}

/// [`infer_shapes`] as a pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct InferShapes;

impl Pass for InferShapes {
    fn name(&self) -> &'static str {
        "infer-shapes"
    }

    fn run(&self, model: &mut Model) -> Result<usize> {
        infer_shapes(model)
    }
}

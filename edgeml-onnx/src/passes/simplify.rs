//! Structural clean-ups: `Constant` → initializer, `Identity`/`Dropout` removal, dead
//! code.

use super::{Pass, constants, default_domain, has_subgraphs};
use crate::{Attribute, Model, Result};

/// Turns every `Constant` node of the main graph into an initializer of the same name.
/// Skipped: string constants (unsupported), and constants that are graph outputs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConstantToInitializer;

impl Pass for ConstantToInitializer {
    fn name(&self) -> &'static str {
        "constant-to-initializer"
    }

    fn run(&self, model: &mut Model) -> Result<usize> {
        let g = &mut model.graph;
        let ix = g.index();
        let mut done = 0;
        let mut k = 0;
        while k < g.nodes.len() {
            let node = &g.nodes[k];
            let out = node.outputs.first().cloned().unwrap_or_default();
            let value = match node.constant_value() {
                Ok(Some(v)) if node.outputs.len() == 1 && !ix.is_output(&out) => v,
                Ok(_) | Err(_) => {
                    k += 1;
                    continue;
                }
            };
            g.remove_node(k)?;
            if !out.is_empty() {
                g.set_initializer(&out, value);
            }
            done += 1;
        }
        super::list_initializers_as_inputs(model);
        Ok(done)
    }
}

/// Removes `Identity` nodes, `Cast`s to the element type their input already has
/// (declared or inferred), and inference-mode `Dropout` nodes (no `training_mode`
/// input, or a constant false one; the mask output unused): their consumers read the
/// input directly. When the removed node's output is a graph output, the input's
/// producer is renamed to write the graph output instead; when that is impossible (the
/// input is a graph input, an initializer or another graph output) the node is kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct EliminateIdentity;

impl Pass for EliminateIdentity {
    fn name(&self) -> &'static str {
        "eliminate-identity"
    }

    fn run(&self, model: &mut Model) -> Result<usize> {
        let opset = model.opset("").unwrap_or(0);
        let ir_version = model.ir_version;
        // Element types, for `Cast`s to the type their input already has (only when
        // the model has a `Cast`: inference walks the whole graph).
        let has_cast = model
            .graph
            .nodes
            .iter()
            .any(|n| default_domain(n) && n.op_type == "Cast");
        let types = if has_cast {
            super::infer_value_types(model).unwrap_or_default()
        } else {
            std::collections::HashMap::new()
        };
        let g = &mut model.graph;
        let mut done = 0;
        let mut k = 0;
        let mut ix = g.index();
        let mut stale = false;
        while k < g.nodes.len() {
            if stale {
                ix = g.index();
                stale = false;
            }
            let node = &g.nodes[k];
            let removable = default_domain(node)
                && match node.op_type.as_str() {
                    "Identity" => node.inputs.len() == 1 && node.outputs.len() == 1,
                    "Cast" => {
                        let to = match node.attr("to") {
                            Some(Attribute::Int(t)) => i32::try_from(*t).ok(),
                            _ => None,
                        };
                        let from = node
                            .inputs
                            .first()
                            .and_then(|i| types.get(i))
                            .and_then(|t| t.dtype);
                        node.inputs.len() == 1
                            && node.outputs.len() == 1
                            && from.is_some()
                            && to.and_then(edgeml_core::DType::from_onnx) == from
                    }
                    "Dropout" => {
                        let training = match node.inputs.get(2).filter(|s| !s.is_empty()) {
                            None => false,
                            Some(t) => match constants(g, ir_version).get(t.as_str()) {
                                Some(crate::Tensor::Bool(b)) => b.iter().any(|&x| x),
                                _ => true,
                            },
                        };
                        let is_test =
                            opset >= 7 || matches!(node.attr("is_test"), Some(Attribute::Int(1)));
                        !training
                            && is_test
                            && node.outputs.len() <= 2
                            && node
                                .outputs
                                .get(1)
                                .is_none_or(|m| m.is_empty() || ix.uses(m) == 0)
                    }
                    _ => false,
                };
            let (src, dst) = match (node.inputs.first(), node.outputs.first()) {
                (Some(s), Some(d)) if removable && !s.is_empty() && !d.is_empty() => {
                    (s.clone(), d.clone())
                }
                _ => {
                    k += 1;
                    continue;
                }
            };
            // A consumer's subgraph might define a value called `src` itself.
            if ix
                .consumers(&dst)
                .iter()
                .any(|&c| has_subgraphs(&g.nodes[c]))
            {
                k += 1;
                continue;
            }
            if !ix.is_output(&dst) {
                g.remove_node(k)?;
                g.replace_uses(&dst, &src);
                done += 1;
                stale = true;
                continue;
            }
            // `dst` is a graph output: let src's producer write it directly.
            let producer = ix.producer(&src);
            let Some(p) = producer.filter(|_| !ix.is_output(&src)) else {
                k += 1;
                continue;
            };
            g.remove_node(k)?;
            let p = if p > k { p - 1 } else { p };
            g.replace_uses(&src, &dst);
            for o in g.nodes[p].outputs.iter_mut().filter(|o| **o == src) {
                dst.clone_into(o);
            }
            g.value_info.retain(|v| v.name != src);
            done += 1;
            stale = true;
        }
        Ok(done)
    }
}

/// Removes dead nodes, unused initializers (and the graph inputs that only listed
/// them) and stale `value_info`: [`Graph::remove_dead`](crate::Graph::remove_dead).
#[derive(Debug, Clone, Copy, Default)]
pub struct EliminateDeadCode;

impl Pass for EliminateDeadCode {
    fn name(&self) -> &'static str {
        "eliminate-dead-code"
    }

    fn run(&self, model: &mut Model) -> Result<usize> {
        Ok(model.graph.remove_dead().total())
    }
}

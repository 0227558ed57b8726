//! Fusions into onnxruntime's contrib operators (`com.microsoft`).

use super::{Pass, constants, default_domain};
use crate::{Attribute, Model, Node, OpsetImport, Result};

/// onnxruntime's contrib domain.
const MS_DOMAIN: &str = "com.microsoft";

/// The activation `act` applies, as `FusedConv`'s `activation` and
/// `activation_params`; `None` when it has no constant parameters.
fn activation(model: &Model, act: &Node) -> Option<(&'static str, Vec<f32>)> {
    let f = |name: &str, default: f32| match act.attr(name) {
        Some(Attribute::Float(v)) => *v,
        _ => default,
    };
    Some(match act.op_type.as_str() {
        "Relu" => ("Relu", vec![]),
        "Sigmoid" => ("Sigmoid", vec![]),
        "Tanh" => ("Tanh", vec![]),
        "LeakyRelu" => ("LeakyRelu", vec![f("alpha", 0.01)]),
        "HardSigmoid" => ("HardSigmoid", vec![f("alpha", 0.2), f("beta", 0.5)]),
        "Clip" => {
            if model.opset("").unwrap_or(0) < 11 {
                ("Clip", vec![f("min", f32::MIN), f("max", f32::MAX)])
            } else {
                let consts = constants(&model.graph, model.ir_version);
                let bound = |i: usize, default: f32| -> Option<f32> {
                    match act.inputs.get(i).filter(|n| !n.is_empty()) {
                        None => Some(default),
                        Some(n) => {
                            let a = consts.get(n.as_str())?.as_f32()?;
                            (a.len() == 1).then(|| a.iter().next().copied()).flatten()
                        }
                    }
                };
                ("Clip", vec![bound(1, f32::MIN)?, bound(2, f32::MAX)?])
            }
        }
        _ => return None,
    })
}

/// Fuses a `Conv` with the activation that is its only consumer (`Relu`, `LeakyRelu`,
/// `Sigmoid`, `Tanh`, `HardSigmoid`, `Clip` with constant bounds) into onnxruntime's
/// `com.microsoft` `FusedConv`, as onnxruntime's own optimizer does at its extended
/// level, and imports the `com.microsoft` domain (version 1). Runtimes without the
/// contrib operators cannot run the result; edgeml and onnxruntime can.
#[derive(Debug, Clone, Copy, Default)]
pub struct FuseConvActivation;

impl Pass for FuseConvActivation {
    fn name(&self) -> &'static str {
        "fuse-conv-activation"
    }

    fn run(&self, model: &mut Model) -> Result<usize> {
        let mut done = 0;
        let mut k = 0;
        while k < model.graph.nodes.len() {
            let g = &model.graph;
            let act = &g.nodes[k];
            let Some(activation) = activation(model, act) else {
                k += 1;
                continue;
            };
            let ix = g.index();
            let x = act.inputs.first().cloned().unwrap_or_default();
            let p = ix.producer(&x);
            let fused = match (p, Some(activation)) {
                (Some(p), Some((name, params)))
                    if default_domain(act)
                        && act.outputs.len() == 1
                        && ix.uses(&x) == 1
                        && default_domain(&g.nodes[p])
                        && g.nodes[p].op_type == "Conv"
                        && g.nodes[p].outputs.len() == 1 =>
                {
                    let mut n = g.nodes[p].clone();
                    n.op_type = "FusedConv".to_owned();
                    n.domain = MS_DOMAIN.to_owned();
                    n.outputs = act.outputs.clone();
                    n.attributes.push((
                        "activation".to_owned(),
                        Attribute::String(name.as_bytes().to_vec()),
                    ));
                    if !params.is_empty() {
                        n.attributes
                            .push(("activation_params".to_owned(), Attribute::Floats(params)));
                    }
                    Some((p, n))
                }
                _ => None,
            };
            let Some((p, n)) = fused else {
                k += 1;
                continue;
            };
            model.graph.replace_node(p, n)?;
            model.graph.remove_node(k)?;
            done += 1;
        }
        if done > 0 && model.opset(MS_DOMAIN).is_none() {
            model.opset_imports.push(OpsetImport {
                domain: MS_DOMAIN.to_owned(),
                version: 1,
            });
        }
        Ok(done)
    }
}

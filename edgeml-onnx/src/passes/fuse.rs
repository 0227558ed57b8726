//! Fusions into onnxruntime's contrib operators (`com.microsoft`).

use super::{Pass, constants, default_domain};
use crate::plan::fused::Act;
use crate::plan::optimize::{MS_DOMAIN, fused_node};
use crate::{Model, OpsetImport, Result};

/// Fuses a `Conv` with the activation that is its only consumer (`Relu`, `LeakyRelu`,
/// `Sigmoid`, `Tanh`, `HardSigmoid`, `Clip` with constant bounds; the same matcher as
/// the planner's own fusion, without edgeml's extra activations) into onnxruntime's
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
            let consts = constants(g, model.ir_version);
            let opset = model.opset("").unwrap_or(0);
            let Some(activation) = Act::of_node(act, opset, &|n| consts.get(n).copied())
                .filter(|a| a.in_onnxruntime())
            else {
                k += 1;
                continue;
            };
            let ix = g.index();
            let x = act.inputs.first().cloned().unwrap_or_default();
            let fused = match ix.producer(&x) {
                Some(p)
                    if default_domain(act)
                        && act.outputs.len() == 1
                        && ix.uses(&x) == 1
                        && default_domain(&g.nodes[p])
                        && g.nodes[p].op_type == "Conv"
                        && g.nodes[p].outputs.len() == 1 =>
                {
                    let mut conv = g.nodes[p].clone();
                    conv.outputs = act.outputs.clone();
                    Some((p, fused_node(&conv, Some(activation), None)))
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

//! `Transpose` simplification.

use super::{Pass, default_domain};
use crate::{Attribute, Model, Node, Result};

fn perm(n: &Node) -> Option<Vec<i64>> {
    match n.attr("perm") {
        Some(Attribute::Ints(p)) => Some(p.clone()),
        _ => None,
    }
}

fn is_transpose(n: &Node) -> bool {
    default_domain(n) && n.op_type == "Transpose" && n.inputs.len() == 1 && n.outputs.len() == 1
}

/// Merges a `Transpose` whose input is another `Transpose` read by nothing else into
/// one (`perm = p1[p2[i]]`), and turns a `Transpose` with the identity permutation into
/// an `Identity` (which [`super::EliminateIdentity`] then removes). Only explicit `perm`
/// attributes are handled.
#[derive(Debug, Clone, Copy, Default)]
pub struct MergeTransposes;

impl Pass for MergeTransposes {
    fn name(&self) -> &'static str {
        "merge-transposes"
    }

    fn run(&self, model: &mut Model) -> Result<usize> {
        let mut done = 0;
        let mut k = 0;
        while k < model.graph.nodes.len() {
            let g = &model.graph;
            let outer = &g.nodes[k];
            let Some(p2) = perm(outer).filter(|_| is_transpose(outer)) else {
                k += 1;
                continue;
            };
            let identity = |p: &[i64]| p.iter().enumerate().all(|(i, &v)| v == i as i64);
            if identity(&p2) {
                let mut n = outer.clone();
                n.op_type = "Identity".to_owned();
                n.attributes.clear();
                model.graph.replace_node(k, n)?;
                done += 1;
                k += 1;
                continue;
            }
            let ix = g.index();
            let inner_out = &outer.inputs[0];
            let merged = ix.producer(inner_out).and_then(|p| {
                let inner = &g.nodes[p];
                let p1 = perm(inner).filter(|_| is_transpose(inner))?;
                if ix.uses(inner_out) != 1 || p1.len() != p2.len() {
                    return None;
                }
                let q: Option<Vec<i64>> = p2
                    .iter()
                    .map(|&i| usize::try_from(i).ok().and_then(|i| p1.get(i).copied()))
                    .collect();
                Some((p, inner.inputs[0].clone(), q?))
            });
            let Some((p, src, q)) = merged else {
                k += 1;
                continue;
            };
            let mut n = outer.clone();
            n.inputs = vec![src];
            n.attributes.retain(|(a, _)| a != "perm");
            if identity(&q) {
                n.op_type = "Identity".to_owned();
                n.attributes.clear();
            } else {
                n.attributes.push(("perm".to_owned(), Attribute::Ints(q)));
            }
            model.graph.replace_node(k, n)?;
            // The inner Transpose is now dead (its only reader was this one).
            model.graph.remove_node(p)?;
            done += 1;
        }
        Ok(done)
    }
}

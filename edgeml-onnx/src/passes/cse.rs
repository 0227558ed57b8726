//! Common-subexpression elimination: duplicate constants and duplicate nodes.

use super::{Pass, constants, default_domain};
use crate::{Attribute, Model, Node, Result, Tensor};
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// Merges what is computed twice in the main graph, keeping the first occurrence:
///
/// - **constants**: initializers (not listed as graph inputs from IR version 4 on,
///   see [`crate::passes`]) with the same element type, shape and element bits
///   (floats compare by their bit patterns, so `0.0` and `-0.0`, or two NaNs with
///   different payloads, stay distinct); the readers of the later ones read the first,
///   and the unused copies are left to [`super::EliminateDeadCode`];
/// - **nodes**: default-domain nodes with the same operator, the same inputs (after the
///   constant merging above, in the same order, omitted optional inputs included), the
///   same attributes (in any order; floats and tensors compared bit for bit) and the
///   same omitted outputs; the readers of the later node's outputs read the first's
///   and the later node is removed. Nodes are visited in graph order, so chains
///   (`Conv` → `Relu` twice on one input) merge in one run of a sorted graph.
///
/// Never merged: nondeterministic operators (`RandomNormal`, `RandomUniform`,
/// `…Like`, `Multinomial`, `Bernoulli`, and `Dropout`, random in training mode),
/// nodes with subgraph, sparse-tensor or unmodelled attributes, nodes outside the
/// default domain, and a later node one of whose outputs is a graph output (graph
/// output names are the model's interface).
///
/// Exact: each merged node computes the same deterministic function of the same
/// values as the node it is merged into.
#[derive(Debug, Clone, Copy, Default)]
pub struct EliminateCommonSubexpressions;

impl Pass for EliminateCommonSubexpressions {
    fn name(&self) -> &'static str {
        "eliminate-common-subexpressions"
    }

    fn run(&self, model: &mut Model) -> Result<usize> {
        let mut done = merge_constants(model);
        done += merge_nodes(model);
        Ok(done)
    }
}

/// Feeds the element type, shape and element bits of `t` to `h`.
fn hash_tensor(t: &Tensor, h: &mut impl Hasher) {
    t.dtype().hash(h);
    t.shape().hash(h);
    match t {
        Tensor::F32(a) => a.iter().for_each(|x| x.to_bits().hash(h)),
        Tensor::F16(a) => a.iter().for_each(|x| x.to_bits().hash(h)),
        Tensor::BF16(a) => a.iter().for_each(|x| x.to_bits().hash(h)),
        Tensor::F64(a) => a.iter().for_each(|x| x.to_bits().hash(h)),
        Tensor::I8(a) => a.iter().for_each(|x| x.hash(h)),
        Tensor::U8(a) => a.iter().for_each(|x| x.hash(h)),
        Tensor::I16(a) => a.iter().for_each(|x| x.hash(h)),
        Tensor::U16(a) => a.iter().for_each(|x| x.hash(h)),
        Tensor::I32(a) => a.iter().for_each(|x| x.hash(h)),
        Tensor::I64(a) => a.iter().for_each(|x| x.hash(h)),
        Tensor::Bool(a) => a.iter().for_each(|x| x.hash(h)),
    }
}

/// Whether `a` and `b` have the same element type, shape and element bits.
fn same_tensor(a: &Tensor, b: &Tensor) -> bool {
    fn bits<T: Copy, B: PartialEq>(
        x: &ndarray::ArrayD<T>,
        y: &ndarray::ArrayD<T>,
        f: impl Fn(T) -> B,
    ) -> bool {
        x.shape() == y.shape() && x.iter().zip(y.iter()).all(|(&p, &q)| f(p) == f(q))
    }
    match (a, b) {
        (Tensor::F32(x), Tensor::F32(y)) => bits(x, y, f32::to_bits),
        (Tensor::F16(x), Tensor::F16(y)) => bits(x, y, edgeml_core::f16::to_bits),
        (Tensor::BF16(x), Tensor::BF16(y)) => bits(x, y, edgeml_core::bf16::to_bits),
        (Tensor::F64(x), Tensor::F64(y)) => bits(x, y, f64::to_bits),
        (Tensor::I8(x), Tensor::I8(y)) => bits(x, y, |v| v),
        (Tensor::U8(x), Tensor::U8(y)) => bits(x, y, |v| v),
        (Tensor::I16(x), Tensor::I16(y)) => bits(x, y, |v| v),
        (Tensor::U16(x), Tensor::U16(y)) => bits(x, y, |v| v),
        (Tensor::I32(x), Tensor::I32(y)) => bits(x, y, |v| v),
        (Tensor::I64(x), Tensor::I64(y)) => bits(x, y, |v| v),
        (Tensor::Bool(x), Tensor::Bool(y)) => bits(x, y, |v| v),
        _ => false,
    }
}

/// Rewires the readers of constant initializers equal to an earlier one to that one.
fn merge_constants(model: &mut Model) -> usize {
    let g = &model.graph;
    let consts = constants(g, model.ir_version);
    let mut groups: HashMap<u64, Vec<&str>> = HashMap::new();
    let mut renames: Vec<(String, String)> = Vec::new();
    for (name, _) in &g.initializers {
        let Some(t) = consts.get(name.as_str()) else {
            continue;
        };
        let mut h = DefaultHasher::new();
        hash_tensor(t, &mut h);
        let group = groups.entry(h.finish()).or_default();
        match group.iter().find(|k| same_tensor(consts[**k], t)) {
            Some(first) => renames.push((name.clone(), (*first).to_owned())),
            None => group.push(name.as_str()),
        }
    }
    let ix = g.index();
    let mut done = 0;
    let renames: Vec<(String, String)> = renames
        .into_iter()
        .filter(|(old, _)| !ix.consumers(old).is_empty())
        .collect();
    for (old, new) in renames {
        if model.graph.replace_uses(&old, &new) > 0 {
            done += 1;
        }
    }
    done
}

/// Whether two attributes are equal, floats and tensors compared bit for bit;
/// subgraphs, sparse tensors and unmodelled attributes never compare equal.
fn same_attr(a: &Attribute, b: &Attribute) -> bool {
    match (a, b) {
        (Attribute::Float(x), Attribute::Float(y)) => x.to_bits() == y.to_bits(),
        (Attribute::Floats(x), Attribute::Floats(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
        }
        (Attribute::Int(x), Attribute::Int(y)) => x == y,
        (Attribute::Ints(x), Attribute::Ints(y)) => x == y,
        (Attribute::String(x), Attribute::String(y)) => x == y,
        (Attribute::Strings(x), Attribute::Strings(y)) => x == y,
        (Attribute::Tensor(x), Attribute::Tensor(y)) => same_tensor(x, y),
        (Attribute::Tensors(x), Attribute::Tensors(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_tensor(p, q))
        }
        _ => false,
    }
}

/// Whether `n` may be merged with an equal node at all.
fn mergeable(n: &Node) -> bool {
    default_domain(n)
        && !super::NONDETERMINISTIC.contains(&n.op_type.as_str())
        && n.op_type != "Dropout" // random in training mode
        && !n.outputs.is_empty()
        && n.attributes.iter().all(|(_, a)| {
            !matches!(
                a,
                Attribute::Graph(_)
                    | Attribute::Graphs(_)
                    | Attribute::SparseTensor(_)
                    | Attribute::SparseTensors(_)
                    | Attribute::Raw(_)
            )
        })
}

/// Whether `a` reading `ai` and `b` reading `bi` compute the same values (both
/// [`mergeable`]).
fn same_node(a: &Node, ai: &[String], b: &Node, bi: &[String]) -> bool {
    fn sorted(n: &Node) -> Vec<&(String, Attribute)> {
        let mut v: Vec<&(String, Attribute)> = n.attributes.iter().collect();
        v.sort_by(|p, q| p.0.cmp(&q.0));
        v
    }
    let (x, y) = (sorted(a), sorted(b));
    a.op_type == b.op_type
        && ai == bi
        && a.outputs.len() == b.outputs.len()
        && a.outputs
            .iter()
            .zip(&b.outputs)
            .all(|(p, q)| p.is_empty() == q.is_empty())
        && x.len() == y.len()
        && x.iter()
            .zip(&y)
            .all(|(p, q)| p.0 == q.0 && same_attr(&p.1, &q.1))
}

/// A hash of what [`same_node`] compares, except the attribute values.
fn node_key(n: &Node, inputs: &[String]) -> u64 {
    let mut h = DefaultHasher::new();
    n.op_type.hash(&mut h);
    inputs.hash(&mut h);
    n.outputs.len().hash(&mut h);
    let mut names: Vec<&str> = n.attributes.iter().map(|(a, _)| a.as_str()).collect();
    names.sort_unstable();
    names.hash(&mut h);
    h.finish()
}

/// Removes nodes equal to an earlier node; returns how many.
fn merge_nodes(model: &mut Model) -> usize {
    let g = &mut model.graph;
    let ix = g.index();
    // Kept nodes by key; the renames of removed outputs so far, applied to the inputs
    // of later nodes before they are compared.
    let mut seen: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut renamed: HashMap<String, String> = HashMap::new();
    let mut removed = vec![false; g.nodes.len()];
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut inputs: Vec<Vec<String>> = Vec::with_capacity(g.nodes.len());
    for (i, n) in g.nodes.iter().enumerate() {
        inputs.push(
            n.inputs
                .iter()
                .map(|v| renamed.get(v).unwrap_or(v).clone())
                .collect(),
        );
        if !mergeable(n) {
            continue;
        }
        let key = node_key(n, &inputs[i]);
        let bucket = seen.entry(key).or_default();
        let first = bucket
            .iter()
            .copied()
            .find(|&j| same_node(&g.nodes[j], &inputs[j], n, &inputs[i]));
        match first {
            Some(j) if !n.outputs.iter().any(|o| ix.is_output(o)) => {
                for (old, new) in n.outputs.iter().zip(&g.nodes[j].outputs) {
                    if !old.is_empty() {
                        renamed.insert(old.clone(), new.clone());
                        pairs.push((old.clone(), new.clone()));
                    }
                }
                removed[i] = true;
            }
            Some(_) => {}
            None => bucket.push(i),
        }
    }
    let done = removed.iter().filter(|&&r| r).count();
    if done == 0 {
        return 0;
    }
    let mut k = removed.iter();
    g.nodes.retain(|_| !k.next().copied().unwrap_or(false));
    for (old, new) in &pairs {
        g.replace_uses(old, new);
    }
    g.value_info
        .retain(|v| !pairs.iter().any(|(old, _)| *old == v.name));
    done
}

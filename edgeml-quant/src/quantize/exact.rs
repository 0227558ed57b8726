//! Exact operators on quantized values: `DQ → op → Q` becomes `op` on the codes, as
//! onnxruntime's runtime does for its QDQ "drop" rules. `MaxPool`, `Flatten`,
//! `Reshape`, `Transpose`, `Squeeze`, `Unsqueeze` and `Identity` only move or select
//! values, so they give the same result on the integer codes (with the input's scale
//! and zero point) as on the dequantized values; this saves a requantization and a
//! `QuantizeLinear`/`DequantizeLinear` pair per op.

use super::{Report, node_ref};
use edgeml_onnx::{Graph, Node};
use std::collections::{HashMap, HashSet};

const EXACT: [&str; 7] = [
    "MaxPool",
    "Flatten",
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Identity",
];

fn is_node(n: &Node, op: &str) -> bool {
    n.domain.is_empty() && n.op_type == op
}

/// For each tensor of `tensors` that another one of them reaches through a chain of
/// single-consumer exact operators (the chains [`pass_through`] runs on the codes),
/// the index of that source: the tensor must be quantized with its source's
/// parameters, or the scale of a bias computed from it would not match the scale the
/// codes carry after the pass (onnxruntime's quantizer likewise shares the input's
/// parameters across these operators).
pub(super) fn range_sources(
    g: &Graph,
    tensors: &[String],
    opset: i64,
    eight_bit: bool,
) -> HashMap<usize, usize> {
    let outputs: HashSet<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
    let mut consumers: HashMap<&str, usize> = HashMap::new();
    for n in &g.nodes {
        for v in &n.inputs {
            *consumers.entry(v.as_str()).or_default() += 1;
        }
    }
    let producer: HashMap<&str, &Node> = g
        .nodes
        .iter()
        .flat_map(|n| n.outputs.iter().map(move |o| (o.as_str(), n)))
        .collect();
    let index: HashMap<&str, usize> = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut sources = HashMap::new();
    for (i, t) in tensors.iter().enumerate() {
        let mut cur = t.as_str();
        for _ in 0..g.nodes.len() {
            let Some(n) = producer.get(cur) else { break };
            let exact = n.domain.is_empty()
                && EXACT.contains(&n.op_type.as_str())
                && n.outputs.len() == 1
                && (n.op_type != "MaxPool" || (opset >= 12 && eight_bit));
            let Some(input) = n.inputs.first().filter(|_| exact) else {
                break;
            };
            if consumers.get(input.as_str()) != Some(&1) || outputs.contains(input.as_str()) {
                break;
            }
            if let Some(&s) = index.get(input.as_str()) {
                sources.insert(i, s);
                break;
            }
            cur = input;
        }
    }
    sources
}

/// Applies the rewrite until nothing changes; returns the number of ops now running on
/// codes (also recorded in `report.int8_exact_ops`). `opset` is the default-domain opset (8-bit `MaxPool` needs 12);
/// `eight_bit` whether activations are 8-bit.
pub(super) fn pass_through(
    g: &mut Graph,
    opset: i64,
    eight_bit: bool,
    report: &mut Report,
) -> usize {
    let mut done = 0;
    loop {
        let outputs: HashSet<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, n) in g.nodes.iter().enumerate() {
            for v in &n.inputs {
                consumers.entry(v.as_str()).or_default().push(i);
            }
        }
        let producer: HashMap<&str, usize> = g
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.as_str(), i)))
            .collect();
        let only = |v: &str| match consumers.get(v).map(Vec::as_slice) {
            Some(&[c]) if !outputs.contains(v) => Some(c),
            _ => None,
        };
        let exact = |n: &Node| {
            n.domain.is_empty()
                && EXACT.contains(&n.op_type.as_str())
                && n.outputs.len() == 1
                && (n.op_type != "MaxPool" || (opset >= 12 && eight_bit))
        };
        let mut found = None;
        for (e, n) in g.nodes.iter().enumerate() {
            if !exact(n) {
                continue;
            }
            let Some(&d) = n.inputs.first().and_then(|x| producer.get(x.as_str())) else {
                continue;
            };
            let dq = &g.nodes[d];
            if !is_node(dq, "DequantizeLinear")
                || dq.inputs.len() != 3
                || dq.outputs.len() != 1
                || dq.attr("axis").is_some()
            {
                continue;
            }
            if only(&dq.outputs[0]) != Some(e) {
                continue;
            }
            // Follow single-consumer exact ops to a QuantizeLinear.
            let mut last = e;
            let q = loop {
                let Some(next) = only(&g.nodes[last].outputs[0]) else {
                    break None;
                };
                if is_node(&g.nodes[next], "QuantizeLinear") && g.nodes[next].outputs.len() == 1 {
                    break Some(next);
                }
                if exact(&g.nodes[next]) {
                    last = next;
                } else {
                    break None;
                }
            };
            let Some(q) = q else {
                continue;
            };
            let qout = &g.nodes[q].outputs[0];
            let dqs: Vec<usize> = consumers.get(qout.as_str()).cloned().unwrap_or_default();
            if outputs.contains(qout.as_str())
                || dqs.is_empty()
                || !dqs
                    .iter()
                    .all(|&c| is_node(&g.nodes[c], "DequantizeLinear"))
            {
                continue;
            }
            found = Some((e, last, d, q, dqs));
            break;
        }
        let Some((e, last, d, q, dqs)) = found else {
            return done;
        };
        // op reads the codes; the DQs after the old Q read op's output with the
        // input's parameters; the DQ before and the Q after go.
        let (codes, scale, zp) = {
            let dq = &g.nodes[d];
            (
                dq.inputs[0].clone(),
                dq.inputs[1].clone(),
                dq.inputs[2].clone(),
            )
        };
        let old_t = g.nodes[q].inputs[0].clone();
        g.nodes[e].inputs[0] = codes;
        let out = g.nodes[last].outputs[0].clone();
        for c in dqs {
            g.nodes[c].inputs = vec![out.clone(), scale.clone(), zp.clone()];
        }
        let chain: HashSet<String> = chain_outputs(g, e, last);
        for n in g
            .nodes
            .iter()
            .filter(|n| n.outputs.iter().any(|o| chain.contains(o)))
        {
            let r = node_ref(n);
            report.float_nodes.retain(|f| f.node != r);
            report.int8_exact_ops.push(r);
        }
        g.value_info.retain(|v| !chain.contains(&v.name));
        if let Some(a) = report.activations.iter().position(|a| a.name == old_t) {
            report.activations.remove(a);
        }
        let (hi, lo) = if d > q { (d, q) } else { (q, d) };
        g.nodes.remove(hi);
        g.nodes.remove(lo);
        done += chain.len();
    }
}

/// Removes the initializers in `candidates` that no node reads any more.
pub(super) fn drop_unused(g: &mut Graph, candidates: &HashSet<String>) {
    let read: HashSet<&str> = g
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter().map(String::as_str))
        .collect();
    let unused: HashSet<String> = candidates
        .iter()
        .filter(|c| !read.contains(c.as_str()))
        .cloned()
        .collect();
    g.initializers.retain(|(n, _)| !unused.contains(n));
}

/// The outputs of the chain of single-consumer nodes from `first` to `last`.
fn chain_outputs(g: &Graph, first: usize, last: usize) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut at = first;
    loop {
        let o = g.nodes[at].outputs[0].clone();
        out.insert(o.clone());
        if at == last {
            return out;
        }
        match g.nodes.iter().position(|n| n.inputs.first() == Some(&o)) {
            Some(next) => at = next,
            None => return out,
        }
    }
}

/// Makes nodes share equal small initializers among `candidates` (zero points,
/// scales), keeping the first of each; the others become unused.
pub(super) fn share_equal(g: &mut Graph, candidates: &HashSet<String>) {
    let mut first: HashMap<String, String> = HashMap::new();
    let mut rename: HashMap<String, String> = HashMap::new();
    for (name, t) in &g.initializers {
        if !candidates.contains(name) || t.len() > 64 {
            continue;
        }
        let key = format!("{t:?}");
        match first.get(&key) {
            Some(canon) => {
                rename.insert(name.clone(), canon.clone());
            }
            None => {
                first.insert(key, name.clone());
            }
        }
    }
    for n in &mut g.nodes {
        for v in &mut n.inputs {
            if let Some(c) = rename.get(v) {
                v.clone_from(c);
            }
        }
    }
}

//! The single-input QDQ groups (activations through tables, average pools) and
//! `Concat`, as onnxruntime's QDQ transformers rewrite them.

use super::{FuseTarget, fused_node, int_attr};
use edgeml_onnx::{Attribute, Graph, Node, Tensor};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The activations that [`fuse_single_input`] turns into `com.edgeml` `QLinearLookup`.
const TABLE_OPS: [&str; 8] = [
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Gelu",
    "LeakyRelu",
    "Relu",
    "Clip",
];

/// Whether `v` is an initializer holding one value (a per-tensor parameter).
fn per_tensor(g: &Graph, v: &str) -> bool {
    g.initializer(v).is_some_and(|t| t.len() == 1)
}

/// The 8-bit type of a zero-point initializer (`Some(true)` for i8).
fn zp_signed(g: &Graph, v: &str) -> Option<bool> {
    match g.initializer(v)? {
        Tensor::I8(_) => Some(true),
        Tensor::U8(_) => Some(false),
        _ => None,
    }
}

/// A `DequantizeLinear` or `QuantizeLinear` with per-tensor constant scale and an 8-bit
/// constant zero point: its zero point's signedness.
fn qdq_params(g: &Graph, n: &Node, op: &str) -> Option<bool> {
    if n.op_type != op || !n.domain.is_empty() || n.inputs.len() < 3 || n.outputs.len() != 1 {
        return None;
    }
    if int_attr(n, "block_size", 0) != 0
        || !per_tensor(g, &n.inputs[1])
        || !per_tensor(g, &n.inputs[2])
    {
        return None;
    }
    zp_signed(g, &n.inputs[2])
}

/// A scalar float initializer's value (`None` if `v` is not one).
pub(super) fn scalar_f32(g: &Graph, v: &str) -> Option<f32> {
    match g.initializer(v)? {
        Tensor::F32(a) if a.len() == 1 => a.iter().next().copied(),
        _ => None,
    }
}

/// The `QLinearLookup` attributes for activation node `n`, or `None` if it cannot be a
/// table (a `Clip` bound that is not constant).
fn table_attrs(g: &Graph, n: &Node) -> Option<Vec<(String, Attribute)>> {
    let mut attrs: Vec<(String, Attribute)> = n
        .attributes
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "alpha" | "beta" | "approximate" | "min" | "max"))
        .cloned()
        .collect();
    if n.op_type == "Clip" && n.inputs.len() > 1 {
        attrs.retain(|(k, _)| k != "min" && k != "max");
        for (i, k) in [(1, "min"), (2, "max")] {
            if let Some(v) = n.inputs.get(i).filter(|v| !v.is_empty()) {
                attrs.push((k.into(), Attribute::Float(scalar_f32(g, v)?)));
            }
        }
    } else if n.inputs.len() != 1 {
        return None;
    }
    attrs.push((
        "activation".into(),
        Attribute::String(n.op_type.as_bytes().to_vec()),
    ));
    Some(attrs)
}

/// Rewrites `DQ → op → Q` with per-tensor constant parameters, `op` one of:
/// - the [`TABLE_OPS`] (and `com.microsoft` `Gelu`) → `com.edgeml` `QLinearLookup`
///   (input and output types may differ) for [`FuseTarget::Edgeml`]; for
///   [`FuseTarget::OnnxRuntime`] only `Sigmoid` and `LeakyRelu`, as `com.microsoft`
///   `QLinearSigmoid` and `QLinearLeakyRelu` (one 8-bit type on both sides);
/// - `AveragePool` (no dilations) → `com.microsoft` `QLinearAveragePool`;
/// - `GlobalAveragePool` → `com.microsoft` `QLinearGlobalAveragePool`
///
/// (the pools need one 8-bit type on both sides). Nodes in `skip` are left alone.
/// Returns the fused counts by operator type and the `QuantizeLinear` nodes to delete.
pub(super) fn fuse_single_input(
    g: &mut Graph,
    producer: &HashMap<String, usize>,
    only_consumer: &dyn Fn(&str) -> Option<usize>,
    skip: &HashSet<usize>,
    target: FuseTarget,
) -> (BTreeMap<String, usize>, Vec<usize>) {
    let mut edits = Vec::new();
    for (i, n) in g.nodes.iter().enumerate() {
        if skip.contains(&i) || n.outputs.len() != 1 || n.inputs.is_empty() {
            continue;
        }
        let std = n.domain.is_empty();
        let op = n.op_type.as_str();
        let table = target.edgeml()
            && ((std && TABLE_OPS.contains(&op)) || (n.domain == "com.microsoft" && op == "Gelu"));
        // onnxruntime's own activation operators, for files it reads.
        let contrib_act = !target.edgeml() && std && matches!(op, "Sigmoid" | "LeakyRelu");
        let pool = std && matches!(op, "AveragePool" | "GlobalAveragePool");
        if !(table || pool || contrib_act) {
            continue;
        }
        let Some(dq) = producer.get(&n.inputs[0]).map(|&p| &g.nodes[p]) else {
            continue;
        };
        let Some(qi) = only_consumer(&n.outputs[0]) else {
            continue;
        };
        let q = &g.nodes[qi];
        let (Some(xs), Some(ys)) = (
            qdq_params(g, dq, "DequantizeLinear"),
            qdq_params(g, q, "QuantizeLinear"),
        ) else {
            continue;
        };
        let operands: Vec<String> = [&dq.inputs[..3], &q.inputs[1..3]].concat();
        let node = if table {
            let Some(attrs) = table_attrs(g, n) else {
                continue;
            };
            fused_node(&n.name, "QLinearLookup", "com.edgeml", operands, attrs)
        } else if xs != ys || n.inputs.len() != 1 {
            continue;
        } else if contrib_act {
            let alpha = n
                .attributes
                .iter()
                .filter(|(k, _)| k == "alpha")
                .cloned()
                .collect();
            let name = format!("QLinear{op}");
            fused_node(&n.name, &name, "com.microsoft", operands, alpha)
        } else if op == "AveragePool" {
            let dilated = match n.attr("dilations") {
                Some(Attribute::Ints(d)) => d.iter().any(|&v| v != 1),
                _ => false,
            };
            if dilated {
                continue;
            }
            let attrs = n
                .attributes
                .iter()
                .filter(|(k, _)| k != "dilations")
                .cloned()
                .collect();
            fused_node(
                &n.name,
                "QLinearAveragePool",
                "com.microsoft",
                operands,
                attrs,
            )
        } else {
            let attrs = vec![("channels_last".into(), Attribute::Int(0))];
            fused_node(
                &n.name,
                "QLinearGlobalAveragePool",
                "com.microsoft",
                operands,
                attrs,
            )
        };
        edits.push((i, node, q.outputs.clone(), qi));
    }
    let mut counts = BTreeMap::new();
    let mut dead = Vec::new();
    for (i, mut node, outs, qi) in edits {
        node.outputs = outs;
        *counts.entry(node.op_type.clone()).or_default() += 1;
        g.nodes[i] = node;
        dead.push(qi);
    }
    (counts, dead)
}

/// Rewrites `DQ(a), DQ(b), … → Concat → Q` with per-tensor constant parameters of one
/// 8-bit type: when every operand has the output's scale and zero point the Concat runs
/// on the codes (exact; counted under `"8-bit exact ops"`), else it becomes
/// `com.microsoft` `QLinearConcat`. Returns the counts and the `QuantizeLinear` nodes to
/// delete.
pub(super) fn fuse_concats(
    g: &mut Graph,
    producer: &HashMap<String, usize>,
    only_consumer: &dyn Fn(&str) -> Option<usize>,
    target: FuseTarget,
) -> (BTreeMap<String, usize>, Vec<usize>) {
    let mut edits = Vec::new();
    'nodes: for (i, n) in g.nodes.iter().enumerate() {
        if !n.domain.is_empty()
            || n.op_type != "Concat"
            || n.outputs.len() != 1
            || n.inputs.is_empty()
        {
            continue;
        }
        let Some(qi) = only_consumer(&n.outputs[0]) else {
            continue;
        };
        let q = &g.nodes[qi];
        let Some(ys) = qdq_params(g, q, "QuantizeLinear") else {
            continue;
        };
        let mut dqs = Vec::new();
        for v in &n.inputs {
            let Some(dq) = producer.get(v).map(|&p| &g.nodes[p]) else {
                continue 'nodes;
            };
            if qdq_params(g, dq, "DequantizeLinear") != Some(ys) {
                continue 'nodes;
            }
            dqs.push(dq);
        }
        let same = |a: &str, b: &str| g.initializer(a) == g.initializer(b);
        let exact = dqs
            .iter()
            .all(|d| same(&d.inputs[1], &q.inputs[1]) && same(&d.inputs[2], &q.inputs[2]));
        let node = if exact {
            let mut c = n.clone();
            c.inputs = dqs.iter().map(|d| d.inputs[0].clone()).collect();
            c
        } else if !target.contrib() {
            continue;
        } else {
            let mut inputs = q.inputs[1..3].to_vec();
            for d in &dqs {
                inputs.extend_from_slice(&d.inputs[..3]);
            }
            let axis = n
                .attributes
                .iter()
                .filter(|(k, _)| k == "axis")
                .cloned()
                .collect();
            fused_node(&n.name, "QLinearConcat", "com.microsoft", inputs, axis)
        };
        edits.push((i, node, q.outputs.clone(), qi, exact));
    }
    let mut counts = BTreeMap::new();
    let mut dead = Vec::new();
    for (i, mut node, outs, qi, exact) in edits {
        node.outputs = outs;
        let key = if exact {
            "8-bit exact ops".to_owned()
        } else {
            node.op_type.clone()
        };
        *counts.entry(key).or_default() += 1;
        g.nodes[i] = node;
        dead.push(qi);
    }
    (counts, dead)
}

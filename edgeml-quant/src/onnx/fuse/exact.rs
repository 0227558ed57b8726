//! Dropping `DequantizeLinear`/`QuantizeLinear` around the operators that only move or
//! select values, so they run on the codes.

use super::groups::scalar_f32;
use edgeml_onnx::{Attribute, Graph, Node, Tensor};
use std::collections::HashMap;

/// Operators that give the same codes on quantized values as on their dequantized
/// values when input and output share scale and zero point (onnxruntime's "drop QDQ"
/// rules): they only move, select or take maxima of values. `Resize` qualifies in
/// `nearest` mode only, `Pad` in `constant` mode when its value is a code (it is
/// replaced by that code), and `Split` when every output is quantized alike.
const EXACT_OPS: [&str; 12] = [
    "MaxPool",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "Identity",
    "Slice",
    "Gather",
    "Pad",
    "Resize",
    "Split",
];

/// Rewrites `DQ(x, s, z) → op → Q(s, z)` (a `Q` on every output) for the [`EXACT_OPS`]
/// so the op runs on the codes. Returns the number of ops rewritten and the
/// `QuantizeLinear` nodes to delete.
pub(super) fn drop_qdq_around_exact_ops(
    g: &mut Graph,
    producer: &HashMap<String, usize>,
    only_consumer: &dyn Fn(&str) -> Option<usize>,
) -> (usize, Vec<usize>) {
    let mut edits = Vec::new();
    'nodes: for (i, n) in g.nodes.iter().enumerate() {
        if !n.domain.is_empty() || !EXACT_OPS.contains(&n.op_type.as_str()) || n.outputs.is_empty()
        {
            continue;
        }
        if n.op_type == "Resize" && !mode_is(n, "nearest") {
            continue;
        }
        let Some(dq) = n
            .inputs
            .first()
            .and_then(|v| producer.get(v))
            .map(|&p| &g.nodes[p])
        else {
            continue;
        };
        let is = |m: &Node, op: &str| m.op_type == op && m.domain.is_empty() && m.inputs.len() >= 3;
        if !is(dq, "DequantizeLinear") {
            continue;
        }
        let same = |a: &str, b: &str| match (g.initializer(a), g.initializer(b)) {
            (Some(x), Some(y)) => x == y && x.len() == 1,
            _ => false,
        };
        let mut qs = Vec::new();
        for o in &n.outputs {
            let Some(qi) = only_consumer(o) else {
                continue 'nodes;
            };
            let q = &g.nodes[qi];
            if !is(q, "QuantizeLinear")
                || q.outputs.len() != 1
                || !same(&dq.inputs[1], &q.inputs[1])
                || !same(&dq.inputs[2], &q.inputs[2])
            {
                continue 'nodes;
            }
            qs.push((qi, q.outputs[0].clone()));
        }
        let mut pad = None;
        if n.op_type == "Pad" {
            if n.attr("pads").is_some() {
                continue; // opset < 11: the pad value is a float attribute.
            }
            let constant = mode_is(n, "constant");
            if constant {
                let value = n.inputs.get(2).filter(|v| !v.is_empty());
                let Some(code) =
                    pad_code(g, value.map(String::as_str), &dq.inputs[1], &dq.inputs[2])
                else {
                    continue;
                };
                pad = Some(code);
            }
        }
        edits.push((i, dq.inputs[0].clone(), qs, pad));
    }
    let mut dead = Vec::new();
    let count = edits.len();
    for (i, x, qs, pad) in edits {
        let n = &mut g.nodes[i];
        n.inputs[0] = x;
        for (k, (qi, y)) in qs.into_iter().enumerate() {
            n.outputs[k] = y;
            dead.push(qi);
        }
        if let Some(code) = pad {
            let name = format!("{}__edgeml_pad_code", n.outputs[0]);
            if n.inputs.len() < 3 {
                n.inputs.resize(3, String::new());
            }
            n.inputs[2] = name.clone();
            g.initializers.push((name, code));
        }
    }
    (count, dead)
}

/// Whether `n`'s `mode` attribute is `want`, which is also its default.
fn mode_is(n: &Node, want: &str) -> bool {
    match n.attr("mode") {
        None => true,
        Some(Attribute::String(m)) => m == want.as_bytes(),
        Some(_) => false,
    }
}

/// The code of the constant `Pad` value `value` (0.0 when omitted) under scale `s` and
/// zero point `z`, if the value is exactly the dequantized value of a code; as a
/// tensor of the zero point's type.
fn pad_code(g: &Graph, value: Option<&str>, s: &str, z: &str) -> Option<Tensor> {
    let c = match value {
        Some(v) => scalar_f32(g, v)?,
        None => 0.0,
    };
    let s = scalar_f32(g, s)?;
    let (zv, lo, hi) = match g.initializer(z)? {
        Tensor::U8(a) => (i32::from(*a.iter().next()?), 0, 255),
        Tensor::I8(a) => (i32::from(*a.iter().next()?), -128, 127),
        _ => return None,
    };
    let code = (c / s).round_ties_even() as i64 + i64::from(zv);
    if code < lo || code > hi || (code as i32 - zv) as f32 * s != c {
        return None;
    }
    let shape = ndarray::IxDyn(&[]);
    Some(match g.initializer(z)? {
        Tensor::U8(_) => Tensor::U8(ndarray::ArrayD::from_elem(shape, code as u8)),
        _ => Tensor::I8(ndarray::ArrayD::from_elem(shape, code as i8)),
    })
}

//! What a model's quantization looks like: format, quantized and float compute ops,
//! weight types and granularity (shown by `edgeml inspect`).

use edgeml_onnx::{Model, Node, Tensor};
use std::collections::{BTreeMap, HashMap};

/// The quantization summary of a model's main graph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuantSummary {
    /// `"QDQ"`, `"QOperator"`, `"dynamic"`, `"mixed"` or `"float"` (nothing quantized).
    pub format: &'static str,
    /// Compute operators that run quantized, by type: the INT8 operators as written
    /// (`QLinearConv`, `MatMulInteger`, …) and float `Conv`/`MatMul`/`Gemm`/
    /// `ConvTranspose` nodes whose weight comes from a `DequantizeLinear` (QDQ).
    pub quantized: BTreeMap<String, usize>,
    /// `Conv`/`MatMul`/`Gemm`/`ConvTranspose` nodes left in float.
    pub float: BTreeMap<String, usize>,
    /// `QuantizeLinear` nodes.
    pub quantize_nodes: usize,
    /// `DequantizeLinear` nodes.
    pub dequantize_nodes: usize,
    /// Quantized constant tensors by kind, e.g. `"int8 per-axis"`, `"int32 per-tensor"`.
    pub weights: BTreeMap<String, usize>,
}

impl QuantSummary {
    /// Whether anything in the model is quantized.
    pub fn is_quantized(&self) -> bool {
        self.format != "float"
    }
}

const COMPUTE: [&str; 4] = ["Conv", "ConvTranspose", "MatMul", "Gemm"];

/// INT8 operators (any domain) and the input index of their quantized weight and its
/// scale, when they have one.
fn native(op: &str) -> Option<Option<(usize, usize)>> {
    match op {
        "QLinearConv" | "QLinearMatMul" | "QGemm" => Some(Some((3, 4))),
        "MatMulIntegerToFloat" => Some(Some((1, 3))),
        "DynamicQuantizeMatMul" => Some(Some((1, 2))),
        "MatMulInteger" | "ConvInteger" => Some(Some((1, usize::MAX))),
        o if o.starts_with("QLinear") || o == "DynamicQuantizeLinear" => Some(None),
        _ => None,
    }
}

fn dtype_name(t: &Tensor) -> &'static str {
    match t {
        Tensor::I8(_) => "int8",
        Tensor::U8(_) => "uint8",
        Tensor::I32(_) => "int32",
        Tensor::I16(_) => "int16",
        Tensor::U16(_) => "uint16",
        _ => "other",
    }
}

/// Summarises the quantization of `model`'s main graph.
pub fn summarize(model: &Model) -> QuantSummary {
    let g = &model.graph;
    let producer: HashMap<&str, &Node> = g
        .nodes
        .iter()
        .flat_map(|n| n.outputs.iter().map(move |o| (o.as_str(), n)))
        .collect();
    let mut s = QuantSummary::default();
    let (mut qdq, mut qop, mut dynamic) = (0, 0, 0);
    let mut weight = |w: &str, scale: Option<&str>| {
        if let Some(t) = g.initializer(w) {
            let per_axis = scale
                .and_then(|s| g.initializer(s))
                .is_some_and(|s| s.len() > 1);
            let kind = format!(
                "{} {}",
                dtype_name(t),
                if per_axis { "per-axis" } else { "per-tensor" }
            );
            *s.weights.entry(kind).or_default() += 1;
        }
    };
    for n in &g.nodes {
        let op = n.op_type.as_str();
        match op {
            "QuantizeLinear" => s.quantize_nodes += 1,
            "DequantizeLinear" => {
                s.dequantize_nodes += 1;
                if let Some(x) = n.inputs.first() {
                    weight(x, n.inputs.get(1).map(String::as_str));
                }
            }
            _ => {}
        }
        if let Some(w) = native(op) {
            *s.quantized.entry(op.to_owned()).or_default() += 1;
            if matches!(
                op,
                "MatMulInteger" | "ConvInteger" | "DynamicQuantizeMatMul" | "DynamicQuantizeLinear"
            ) {
                dynamic += 1;
            } else {
                qop += 1;
            }
            if let Some((wi, si)) = w
                && let Some(x) = n.inputs.get(wi)
            {
                weight(x, n.inputs.get(si).map(String::as_str));
            }
        } else if n.domain.is_empty() && COMPUTE.contains(&op) {
            let from_dq = n
                .inputs
                .get(1)
                .and_then(|w| producer.get(w.as_str()))
                .is_some_and(|p| p.op_type == "DequantizeLinear");
            if from_dq {
                qdq += 1;
                *s.quantized.entry(op.to_owned()).or_default() += 1;
            } else {
                *s.float.entry(op.to_owned()).or_default() += 1;
            }
        }
    }
    s.format = match (qdq > 0, qop > 0, dynamic > 0) {
        (false, false, false) if s.quantize_nodes + s.dequantize_nodes == 0 => "float",
        (false, false, false) => "QDQ",
        (true, false, false) => "QDQ",
        (false, true, false) => "QOperator",
        (false, false, true) => "dynamic",
        _ => "mixed",
    };
    s
}

impl std::fmt::Display for QuantSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |m: &BTreeMap<String, usize>| -> String {
            if m.is_empty() {
                "none".into()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        writeln!(f, "quantization: {}", self.format)?;
        if !self.is_quantized() {
            return Ok(());
        }
        writeln!(f, "  quantized ops: {}", list(&self.quantized))?;
        writeln!(f, "  float compute ops: {}", list(&self.float))?;
        writeln!(
            f,
            "  QuantizeLinear {}, DequantizeLinear {}",
            self.quantize_nodes, self.dequantize_nodes
        )?;
        writeln!(f, "  quantized constants: {}", list(&self.weights))
    }
}

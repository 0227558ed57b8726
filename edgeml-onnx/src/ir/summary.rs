//! A model summary: what `edgeml inspect` prints.

use super::{Attribute, Dim, Graph, Model, Tensor, ValueInfo};
use edgeml_core::DType;
use std::collections::BTreeMap;
use std::fmt;

/// Parameter statistics of one element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParamStats {
    /// Number of tensors.
    pub tensors: usize,
    /// Number of elements.
    pub elements: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// Elements that are exactly zero (`-0.0` counts as zero, NaN does not).
    pub zeros: u64,
}

impl ParamStats {
    fn add(&mut self, o: &ParamStats) {
        self.tensors += o.tensors;
        self.elements += o.elements;
        self.bytes += o.bytes;
        self.zeros += o.zeros;
    }

    /// Fraction of exact zeros, 0 for no elements.
    pub fn sparsity(&self) -> f64 {
        if self.elements == 0 {
            0.0
        } else {
            self.zeros as f64 / self.elements as f64
        }
    }
}

/// Counts of a model's operators and weights, for display.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelSummary {
    /// ONNX IR version.
    pub ir_version: i64,
    /// Producer name and version.
    pub producer: String,
    /// `(domain, version)` of each opset import (`"ai.onnx"` for the default domain).
    pub opsets: Vec<(String, i64)>,
    /// Graph inputs that are not initializers.
    pub inputs: Vec<ValueInfo>,
    /// Graph outputs.
    pub outputs: Vec<ValueInfo>,
    /// Node count per operator (`domain:op` outside the default domain), subgraphs
    /// included.
    pub ops: BTreeMap<String, usize>,
    /// Total number of nodes, subgraphs included.
    pub nodes: usize,
    /// Weights (initializers and `Constant` values, subgraphs included) per type.
    pub params: BTreeMap<DType, ParamStats>,
}

fn zeros(t: &Tensor) -> u64 {
    let n = match t {
        Tensor::F32(a) => a.iter().filter(|v| **v == 0.0).count(),
        Tensor::F64(a) => a.iter().filter(|v| **v == 0.0).count(),
        Tensor::F16(a) => a.iter().filter(|v| v.to_f32() == 0.0).count(),
        Tensor::BF16(a) => a.iter().filter(|v| v.to_f32() == 0.0).count(),
        Tensor::I8(a) => a.iter().filter(|v| **v == 0).count(),
        Tensor::U8(a) => a.iter().filter(|v| **v == 0).count(),
        Tensor::I16(a) => a.iter().filter(|v| **v == 0).count(),
        Tensor::U16(a) => a.iter().filter(|v| **v == 0).count(),
        Tensor::I32(a) => a.iter().filter(|v| **v == 0).count(),
        Tensor::I64(a) => a.iter().filter(|v| **v == 0).count(),
        Tensor::Bool(a) => a.iter().filter(|v| !**v).count(),
    };
    n as u64
}

fn add_tensor(s: &mut ModelSummary, t: &Tensor) {
    let e = s.params.entry(t.dtype()).or_default();
    e.tensors += 1;
    e.elements += t.len() as u64;
    e.bytes += t.size_bytes() as u64;
    e.zeros += zeros(t);
}

fn walk(s: &mut ModelSummary, g: &Graph) {
    for (_, t) in &g.initializers {
        add_tensor(s, t);
    }
    for n in &g.nodes {
        s.nodes += 1;
        let key = if n.domain.is_empty() || n.domain == "ai.onnx" {
            n.op_type.clone()
        } else {
            format!("{}:{}", n.domain, n.op_type)
        };
        *s.ops.entry(key).or_default() += 1;
        if let Ok(Some(t)) = n.constant_value() {
            add_tensor(s, &t);
        }
        for (_, a) in &n.attributes {
            match a {
                Attribute::Graph(sub) => walk(s, sub),
                Attribute::Graphs(v) => v.iter().for_each(|sub| walk(s, sub)),
                _ => {}
            }
        }
    }
}

impl Model {
    /// Summarises the model: opsets, inputs/outputs, op histogram, weights by type.
    pub fn summary(&self) -> ModelSummary {
        let mut s = ModelSummary {
            ir_version: self.ir_version,
            producer: format!("{} {}", self.producer_name, self.producer_version)
                .trim()
                .to_owned(),
            opsets: self
                .opset_imports
                .iter()
                .map(|o| {
                    let d = if o.domain.is_empty() {
                        "ai.onnx"
                    } else {
                        &o.domain
                    };
                    (d.to_owned(), o.version)
                })
                .collect(),
            inputs: self.graph.runtime_inputs().cloned().collect(),
            outputs: self.graph.outputs.clone(),
            ..ModelSummary::default()
        };
        walk(&mut s, &self.graph);
        s
    }
}

impl ModelSummary {
    /// Totals over all element types.
    pub fn total(&self) -> ParamStats {
        let mut t = ParamStats::default();
        self.params.values().for_each(|p| t.add(p));
        t
    }
}

/// `float32[N,3,224,224]`, `?` for unknown types or dims.
pub fn format_type(v: &ValueInfo) -> String {
    let t = v.dtype.map_or("?", DType::name);
    match &v.shape {
        None => format!("{t}[?]"),
        Some(dims) => {
            let d: Vec<String> = dims
                .iter()
                .map(|d| match d {
                    Dim::Known(n) => n.to_string(),
                    Dim::Symbolic(s) => s.clone(),
                    Dim::Unknown => "?".to_owned(),
                })
                .collect();
            format!("{t}[{}]", d.join(","))
        }
    }
}

impl fmt::Display for ModelSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "ir_version: {}", self.ir_version)?;
        if !self.producer.is_empty() {
            writeln!(f, "producer:   {}", self.producer)?;
        }
        let ops: Vec<String> = self
            .opsets
            .iter()
            .map(|(d, v)| format!("{d} {v}"))
            .collect();
        writeln!(f, "opsets:     {}", ops.join(", "))?;
        writeln!(f, "inputs:")?;
        for v in &self.inputs {
            writeln!(f, "  {}: {}", v.name, format_type(v))?;
        }
        writeln!(f, "outputs:")?;
        for v in &self.outputs {
            writeln!(f, "  {}: {}", v.name, format_type(v))?;
        }
        writeln!(f, "nodes: {} ({} op types)", self.nodes, self.ops.len())?;
        let mut ops: Vec<(&String, &usize)> = self.ops.iter().collect();
        ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (op, n) in ops {
            writeln!(f, "  {op:<24} {n}")?;
        }
        let t = self.total();
        writeln!(
            f,
            "parameters: {} in {} tensors, {} bytes, sparsity {:.2}%",
            t.elements,
            t.tensors,
            t.bytes,
            100.0 * t.sparsity()
        )?;
        for (d, p) in &self.params {
            writeln!(
                f,
                "  {:<10} {:>12} elements {:>12} bytes  sparsity {:.2}%",
                d.name(),
                p.elements,
                p.bytes,
                100.0 * p.sparsity()
            )?;
        }
        Ok(())
    }
}

//! Attribute types checked against what each operator expects, at validation time, as
//! onnxruntime checks them when it loads a model.

use crate::ops::attr::{describe, kind_name};
use crate::{Attribute, Error, Graph, Node, Result};

/// The expected type of a well-known attribute of a default-domain operator.
#[derive(Clone, Copy)]
enum Want {
    Int,
    /// `FLOAT`; an `INT` is accepted too (the runtime converts it).
    Float,
    Str,
    Ints,
}

impl Want {
    fn accepts(self, a: &Attribute) -> bool {
        matches!(
            (self, a),
            (Want::Int, Attribute::Int(_))
                | (Want::Float, Attribute::Float(_) | Attribute::Int(_))
                | (Want::Str, Attribute::String(_))
                | (Want::Ints, Attribute::Ints(_))
        )
    }

    fn name(self) -> &'static str {
        match self {
            Want::Int => "INT",
            Want::Float => "FLOAT",
            Want::Str => "STRING",
            Want::Ints => "INTS",
        }
    }
}

const POOL_CONV: &[&str] = &[
    "Conv",
    "ConvTranspose",
    "ConvInteger",
    "QLinearConv",
    "MaxPool",
    "AveragePool",
    "LpPool",
];

/// The expected type of attribute `name` of `op` (default domain), if known.
fn want(op: &str, name: &str) -> Option<Want> {
    if POOL_CONV.contains(&op) {
        return match name {
            "kernel_shape" | "strides" | "pads" | "dilations" | "output_padding"
            | "output_shape" => Some(Want::Ints),
            "group" | "ceil_mode" | "count_include_pad" | "storage_order" | "p" => Some(Want::Int),
            "auto_pad" => Some(Want::Str),
            _ => None,
        };
    }
    match (op, name) {
        ("Gemm", "alpha" | "beta") => Some(Want::Float),
        ("Gemm", "transA" | "transB") => Some(Want::Int),
        ("BatchNormalization" | "InstanceNormalization" | "LayerNormalization", "epsilon")
        | ("BatchNormalization", "momentum") => Some(Want::Float),
        ("BatchNormalization", "training_mode" | "spatial" | "is_test") => Some(Want::Int),
        (
            "LeakyRelu" | "Elu" | "Selu" | "HardSigmoid" | "ThresholdedRelu" | "Celu",
            "alpha" | "beta" | "gamma",
        ) => Some(Want::Float),
        (
            "Softmax" | "LogSoftmax" | "Hardmax" | "Concat" | "Flatten" | "Gather"
            | "GatherElements" | "Split" | "ArgMax" | "ArgMin" | "CumSum" | "TopK"
            | "LayerNormalization",
            "axis",
        ) => Some(Want::Int),
        ("Transpose", "perm") => Some(Want::Ints),
        (
            "Squeeze" | "Unsqueeze" | "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin"
            | "ReduceProd" | "ReduceL1" | "ReduceL2" | "ReduceSumSquare" | "ReduceLogSumExp",
            "axes",
        ) => Some(Want::Ints),
        (_, "keepdims") if op.starts_with("Reduce") || op.starts_with("Arg") => Some(Want::Int),
        ("Cast", "to") => Some(Want::Int),
        ("Clip", "min" | "max") | ("Dropout", "ratio") => Some(Want::Float),
        ("Resize" | "Upsample" | "Pad", "mode") => Some(Want::Str),
        ("Pad", "pads") => Some(Want::Ints),
        ("Pad", "value") => Some(Want::Float),
        ("Reshape", "allowzero") => Some(Want::Int),
        _ => None,
    }
}

fn check_node(node: &Node) -> Result<()> {
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return Ok(());
    }
    for (name, a) in &node.attributes {
        if let Some(w) = want(&node.op_type, name)
            && !w.accepts(a)
        {
            return Err(Error::InvalidModel(format!(
                "{}: attribute {name:?} must be {}, found {}",
                describe(node),
                w.name(),
                kind_name(a)
            )));
        }
    }
    Ok(())
}

/// Checks the attribute types of every node of `graph` and its subgraphs.
///
/// # Errors
/// [`Error::InvalidModel`] naming the node, the attribute and both types.
pub(crate) fn check(graph: &Graph) -> Result<()> {
    for node in &graph.nodes {
        check_node(node)?;
        for (_, a) in &node.attributes {
            match a {
                Attribute::Graph(g) => check(g)?,
                Attribute::Graphs(gs) => gs.iter().try_for_each(check)?,
                _ => {}
            }
        }
    }
    Ok(())
}

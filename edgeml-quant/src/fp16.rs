//! Float16 models, and FP16/BF16 weight storage.
//!
//! [`convert_float_to_float16`] is onnxconverter-common's function of that name: every
//! float32 value of the graph (weights, activations, `Constant`s, `Cast(to = FLOAT)`)
//! becomes float16, so the file is about half as large and runtimes with float16
//! kernels (ARM CPUs with FP16 arithmetic, GPUs) compute in float16. Inputs and outputs
//! stay float32 behind `Cast` nodes unless [`HalfOptions::keep_io_types`] is off (our
//! default is on, the usual choice for deployment; onnxconverter-common's is off).
//! The operators of onnxconverter-common's default block list (`Resize`, `TopK`,
//! `Range`, `Min`, `Max`, …), the quantization operators, operators outside the
//! default domain, and the nodes or operator types in [`HalfOptions::keep`] stay
//! float32 with `Cast` nodes around them. edgeml and onnxruntime's CPU provider run
//! the operators that lack float16 kernels in float32 between the casts, so on x86 the
//! result is that of float32 compute with float16 rounding between operators.
//!
//! [`convert_weights`] and [`convert_weights_bf16`] store only the weights: every float32
//! initializer becomes a float16 or bfloat16 initializer read through a `Cast(to =
//! FLOAT)`, and the graph still computes in float32: inputs, outputs and every
//! operator stay float32.
//!
//! bfloat16 keeps float32's exponent range with 8 significant bits (float16: 11 bits,
//! range ±65504): no weight needs clamping except the few float32 values above
//! bfloat16's largest finite value (3.3895e38), which are clamped to it instead of
//! rounding to infinity; values are rounded to nearest even. `Cast` from bfloat16
//! needs opset 13.
//!
//! Values are rounded to nearest even; as onnxconverter-common's
//! `convert_np_to_float16` does (its defaults), finite magnitudes above 65504 are
//! clamped to ±65504 and non-zero magnitudes below 5.96e-8 (the smallest float16
//! subnormal) to ±5.96e-8, so no weight becomes infinite or flushes to zero. NaN or
//! infinite weights are an error. Runtimes fold the `Cast` of a constant when they
//! load the model, so inference speed is that of the float model.

mod compute;

pub use compute::HalfOptions;

use crate::{Error, Result};
use edgeml_core::{bf16, f16};
use edgeml_onnx::{Attribute, Model, Node, Tensor};
use std::collections::HashSet;

/// onnxconverter-common's `max_finite_val`.
const MAX: f32 = 65504.0;
/// onnxconverter-common's `min_positive_val`.
const MIN_POSITIVE: f32 = 5.96e-8;
/// ONNX `TensorProto.FLOAT`.
const FLOAT: i64 = 1;

/// What [`convert_weights`] or [`convert_weights_bf16`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fp16Report {
    /// Initializers now stored as float16 (bfloat16), in graph order.
    pub converted: Vec<String>,
    /// Weight values clamped into the float16 (bfloat16) range (see the
    /// [module](self) docs).
    pub clamped: usize,
}

fn to_f16(v: f32, clamped: &mut usize) -> f16 {
    let a = v.abs();
    let c = if a > MAX {
        MAX.copysign(v)
    } else if a > 0.0 && a < MIN_POSITIVE {
        MIN_POSITIVE.copysign(v)
    } else {
        v
    };
    if c != v {
        *clamped += 1;
    }
    f16::from_f32(c)
}

/// Converts `model` to float16 compute (see the [module](self) docs); the report lists
/// the initializers converted and the values clamped into float16's range.
///
/// # Errors
/// [`Error::NonFinite`] for a NaN or infinite weight or `Constant`;
/// [`Error::Unsupported`] for opsets below 6, subgraphs (`If`, `Loop`, `Scan`), or a
/// value whose element type neither the model declares nor inference derives;
/// [`Error::Model`] for a graph that type inference rejects.
pub fn convert_float_to_float16(model: &Model, opts: &HalfOptions) -> Result<(Model, Fp16Report)> {
    compute::convert(model, opts)
}

/// Stores every float32 initializer of `model` as float16 behind a `Cast` (see the
/// [module](self) docs); initializers listed in `keep` and those that are also graph
/// inputs (overridable at run time) stay float32.
///
/// # Errors
/// [`Error::NonFinite`] for a NaN or infinite weight; [`Error::Unsupported`] for
/// models importing a default-domain opset below 6 (`Cast` with a `to` attribute).
pub fn convert_weights(model: &Model, keep: &[String]) -> Result<(Model, Fp16Report)> {
    convert(model, keep, Half::F16)
}

/// [`convert_weights`] with bfloat16 storage (see the [module](self) docs).
///
/// # Errors
/// [`Error::NonFinite`] for a NaN or infinite weight; [`Error::Unsupported`] for
/// models importing a default-domain opset below 13 (`Cast` from bfloat16).
pub fn convert_weights_bf16(model: &Model, keep: &[String]) -> Result<(Model, Fp16Report)> {
    convert(model, keep, Half::Bf16)
}

/// The 16-bit storage type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Half {
    F16,
    Bf16,
}

fn to_bf16(v: f32, clamped: &mut usize) -> bf16 {
    let max = bf16::MAX.to_f32();
    if v.abs() > max {
        *clamped += 1;
        return bf16::from_f32(max.copysign(v));
    }
    bf16::from_f32(v)
}

fn convert(model: &Model, keep: &[String], half: Half) -> Result<(Model, Fp16Report)> {
    let (min_opset, what, suffix) = match half {
        Half::F16 => (6, "FP16", "fp16"),
        Half::Bf16 => (13, "BF16", "bf16"),
    };
    let opset = model.opset("").unwrap_or(1);
    if opset < min_opset {
        return Err(Error::Unsupported(format!(
            "the model imports opset {opset}; {what} weights need Cast from opset {min_opset}"
        )));
    }
    let g = &model.graph;
    let inputs: HashSet<&str> = g.inputs.iter().map(|i| i.name.as_str()).collect();
    let mut used: HashSet<String> = HashSet::new();
    for n in &g.nodes {
        used.extend(n.inputs.iter().chain(&n.outputs).cloned());
    }
    used.extend(g.initializers.iter().map(|(n, _)| n.clone()));
    used.extend(g.inputs.iter().chain(&g.outputs).map(|v| v.name.clone()));
    let mut m = model.clone();
    let mut report = Fp16Report::default();
    let mut casts = Vec::new();
    for (name, t) in &mut m.graph.initializers {
        let Some(a) = t.as_f32() else { continue };
        if inputs.contains(name.as_str()) || keep.contains(name) {
            continue;
        }
        if let Some(bad) = a.iter().find(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "initializer {name:?} holds {bad}"
            )));
        }
        let h = match half {
            Half::F16 => Tensor::F16(a.mapv(|v| to_f16(v, &mut report.clamped))),
            Half::Bf16 => Tensor::BF16(a.mapv(|v| to_bf16(v, &mut report.clamped))),
        };
        let mut stored = format!("{name}_{suffix}");
        let mut i = 0;
        while used.contains(&stored) {
            i += 1;
            stored = format!("{name}_{suffix}_{i}");
        }
        used.insert(stored.clone());
        casts.push(Node {
            op_type: "Cast".into(),
            inputs: vec![stored.clone()],
            outputs: vec![name.clone()],
            attributes: vec![("to".into(), Attribute::Int(FLOAT))],
            ..Node::default()
        });
        report.converted.push(name.clone());
        *name = stored;
        *t = h;
    }
    // The value_info of the old initializers still describes the Cast outputs (f32).
    casts.append(&mut m.graph.nodes);
    m.graph.nodes = casts;
    Ok((m, report))
}

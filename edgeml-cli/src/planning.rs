//! Loading and planning a model the same way in every command: the INT8 operators of
//! `edgeml-quant` are registered, and QDQ groups are fused onto them unless asked not to.

use anyhow::Context;
use edgeml_onnx::{Model, Plan, PlanOptions};
use std::path::Path;

/// Loads `path` and plans it with `opts`. With `fuse_qdq`, `DequantizeLinear → op →
/// QuantizeLinear` groups run as fused INT8 operators (as onnxruntime does); without,
/// they run as written (the float operator between Q/DQ pairs). Prints what the fusion
/// changed to stderr when it changed anything.
///
/// # Errors
/// The model does not load or does not plan.
pub(crate) fn load_and_plan(
    path: &Path,
    opts: PlanOptions,
    fuse_qdq: bool,
) -> anyhow::Result<Plan> {
    let mut model = Model::load(path).with_context(|| format!("cannot load {}", path.display()))?;
    let registry = edgeml_quant::onnx::registry();
    if fuse_qdq {
        let report = edgeml_quant::onnx::fuse_qdq(&mut model);
        if report.total() > 0 {
            eprintln!("int8      {report}");
        }
    }
    Plan::from_model(model, opts, &registry).context("cannot plan the model")
}

//! The optimization pipelines as the fixture tests run them (`tests/ops_fixtures.rs`,
//! `tests/onnx_backend.rs`, and edgeml-quant's `onnx_ops.rs` / `onnx_models.rs`, which
//! include this file by path): the model as written, then after each level.
#![allow(dead_code)]

use edgeml_onnx::Model;
use edgeml_onnx::passes::{OptimizeLevel, Pipeline};

/// No pipeline, then the basic and the extended one.
pub(crate) const LEVELS: [Option<OptimizeLevel>; 3] = [
    None,
    Some(OptimizeLevel::Basic),
    Some(OptimizeLevel::Extended),
];

/// `model` after `level`'s pipeline (unchanged for `None`). A second run of the pipeline
/// must change nothing; otherwise, or when a pass fails, an error saying which.
pub(crate) fn optimized(model: &Model, level: Option<OptimizeLevel>) -> Result<Model, String> {
    let mut m = model.clone();
    let Some(level) = level else {
        return Ok(m);
    };
    Pipeline::for_level(level)
        .run(&mut m)
        .map_err(|e| format!("{level:?} pipeline: {e}"))?;
    let once = m.clone();
    let again = Pipeline::for_level(level)
        .run(&mut m)
        .map_err(|e| format!("{level:?} pipeline, second run: {e}"))?;
    if again.total() != 0 || m != once {
        return Err(format!("{level:?} pipeline is not idempotent: {again:?}"));
    }
    Ok(m)
}

/// `" (after the Basic pipeline)"`, or nothing for the model as written.
pub(crate) fn after(level: Option<OptimizeLevel>) -> String {
    level.map_or(String::new(), |l| format!(" (after the {l:?} pipeline)"))
}

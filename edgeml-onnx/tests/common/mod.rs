//! Helpers shared by the tests: building a one-domain model, reading `.npy` files of
//! any supported element type and comparing tensors with tolerances.
#![allow(dead_code)]

pub(crate) mod optimized;
pub(crate) mod passes;

use edgeml_onnx::{Graph, Model, ModelBuilder, Tensor};
use ndarray::ArrayD;
use ndarray_npy::read_npy;
use std::path::Path;

/// A model of `graph` importing the default domain at `opset` (IR version 8), built with
/// the public [`ModelBuilder`] (not validated, so tests can plan invalid graphs).
pub(crate) fn onnx_model(graph: Graph, opset: i64) -> Model {
    ModelBuilder::new(opset).with_graph(graph).build_unchecked()
}

/// Reads a `.npy` file whose element type is not known in advance.
pub(crate) fn read_any(path: &Path) -> Tensor {
    if let Ok(a) = read_npy::<_, ArrayD<f32>>(path) {
        return Tensor::F32(a);
    }
    if let Ok(a) = read_npy::<_, ArrayD<i64>>(path) {
        return Tensor::I64(a);
    }
    if let Ok(a) = read_npy::<_, ArrayD<bool>>(path) {
        return Tensor::Bool(a);
    }
    if let Ok(a) = read_npy::<_, ArrayD<i32>>(path) {
        return Tensor::I32(a);
    }
    if let Ok(a) = read_npy::<_, ArrayD<f64>>(path) {
        return Tensor::F64(a);
    }
    if let Ok(a) = read_npy::<_, ArrayD<u8>>(path) {
        return Tensor::U8(a);
    }
    if let Ok(a) = read_npy::<_, ArrayD<i8>>(path) {
        return Tensor::I8(a);
    }
    panic!("cannot read {}", path.display());
}

/// Compares `got` with `want`: floats within `atol + rtol·|want|` (NaN matches NaN),
/// everything else exactly. Returns a description of the first mismatch.
pub(crate) fn compare(got: &Tensor, want: &Tensor, rtol: f64, atol: f64) -> Result<(), String> {
    if got.shape() != want.shape() {
        return Err(format!(
            "shape {:?}, expected {:?}",
            got.shape(),
            want.shape()
        ));
    }
    if got.dtype() != want.dtype() {
        return Err(format!(
            "dtype {:?}, expected {:?}",
            got.dtype(),
            want.dtype()
        ));
    }
    let close = |g: f64, w: f64| {
        (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= atol + rtol * w.abs()
    };
    let floats: Option<(Vec<f64>, Vec<f64>)> = match (got, want) {
        (Tensor::F32(g), Tensor::F32(w)) => Some((
            g.iter().map(|&v| v as f64).collect(),
            w.iter().map(|&v| v as f64).collect(),
        )),
        (Tensor::F64(g), Tensor::F64(w)) => {
            Some((g.iter().copied().collect(), w.iter().copied().collect()))
        }
        _ => None,
    };
    if let Some((g, w)) = floats {
        let mut worst = (0usize, 0f64);
        let mut bad = 0usize;
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            if !close(*a, *b) {
                bad += 1;
                let d = (a - b).abs();
                if bad == 1 || d > worst.1 {
                    worst = (i, d);
                }
            }
        }
        if bad > 0 {
            let i = worst.0;
            return Err(format!(
                "{bad} of {} elements differ; worst at flat index {i}: got {}, expected {}",
                g.len(),
                g[i],
                w[i]
            ));
        }
        return Ok(());
    }
    if got != want {
        return Err(format!("values differ:\n got {got:?}\nwant {want:?}"));
    }
    Ok(())
}

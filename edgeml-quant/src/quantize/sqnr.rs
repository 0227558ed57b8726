//! Per-layer error of a static QDQ model against its float original on the
//! calibration data: each quantized node's output as the float model computes it, and
//! as the quantized model carries it (its integer codes, dequantized), accumulated
//! over all batches; and the model's float outputs, float model against quantized
//! model (the QDQ model as written, run by the reference operators).

use super::calibrate::model_err;
use super::feeds::{CalibrationBatch, refs};
use super::{LayerError, NodeRef};
use crate::{Error, Result};
use edgeml_onnx::{GraphOptLevel, Model, Plan, PlanOptions, Tensor};
use std::collections::HashMap;

/// Where the quantized model holds a tensor's codes, and their parameters.
struct Codes {
    name: String,
    scale: f32,
    zero_point: f32,
}

fn scalar(q: &Model, name: &str) -> Option<f32> {
    let t = q.graph.initializer(name)?;
    if t.len() != 1 {
        return None;
    }
    Some(match t {
        Tensor::F32(a) => a.iter().next().copied()?,
        Tensor::U8(a) => f32::from(*a.iter().next()?),
        Tensor::I8(a) => f32::from(*a.iter().next()?),
        Tensor::U16(a) => f32::from(*a.iter().next()?),
        Tensor::I16(a) => f32::from(*a.iter().next()?),
        _ => return None,
    })
}

/// The `QuantizeLinear` of `t` in `q` (or, for a graph output, the
/// `DequantizeLinear` that now writes it).
fn codes_of(q: &Model, t: &str) -> Option<Codes> {
    let g = &q.graph;
    let (name, params) = if let Some(dq) = g
        .nodes
        .iter()
        .find(|n| n.op_type == "DequantizeLinear" && n.outputs.first().is_some_and(|o| o == t))
    {
        (dq.inputs[0].clone(), &dq.inputs)
    } else {
        let qn = g
            .nodes
            .iter()
            .find(|n| n.op_type == "QuantizeLinear" && n.inputs.first().is_some_and(|i| i == t))?;
        (qn.outputs[0].clone(), &qn.inputs)
    };
    let scale = scalar(q, params.get(1)?)?;
    let zero_point = params.get(2).map_or(Some(0.0), |z| scalar(q, z))?;
    Some(Codes {
        name,
        scale,
        zero_point,
    })
}

fn as_f32(t: &Tensor) -> Option<Vec<f32>> {
    Some(match t {
        Tensor::F32(a) => a.iter().copied().collect(),
        Tensor::U8(a) => a.iter().map(|&v| f32::from(v)).collect(),
        Tensor::I8(a) => a.iter().map(|&v| f32::from(v)).collect(),
        Tensor::U16(a) => a.iter().map(|&v| f32::from(v)).collect(),
        Tensor::I16(a) => a.iter().map(|&v| f32::from(v)).collect(),
        _ => return None,
    })
}

#[derive(Default, Clone)]
struct Acc {
    signal: f64,
    noise: f64,
    max_abs: f32,
    count: usize,
}

/// What [`measure`] found.
pub(super) struct Measured {
    /// Per-layer errors, in the order asked (layers never seen left out).
    pub(super) layers: Vec<LayerError>,
    /// The lowest SQNR over the model's f32 outputs (`None` without one).
    pub(super) output_sqnr_db: Option<f64>,
}

/// The error of each `(node, tensor)` of `layers` in `q` against `model`, and of the
/// model outputs.
pub(super) fn measure<B: CalibrationBatch>(
    model: &Model,
    q: &Model,
    single: &str,
    batches: &[B],
    layers: &[(NodeRef, String)],
) -> Result<Measured> {
    let mut opts = PlanOptions::with_threads(1);
    opts.optimization = GraphOptLevel::Disabled;
    let fplan = Plan::new(model, opts.clone()).map_err(model_err)?;
    let registry = crate::onnx::registry();
    let qplan = Plan::with_registry(q, opts, &registry).map_err(model_err)?;
    let codes: Vec<Option<Codes>> = layers.iter().map(|(_, t)| codes_of(q, t)).collect();
    let want_f: HashMap<&str, usize> = layers
        .iter()
        .enumerate()
        .map(|(i, (_, t))| (t.as_str(), i))
        .collect();
    let want_q: HashMap<&str, usize> = codes
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.as_ref().map(|c| (c.name.as_str(), i)))
        .collect();
    let mut acc = vec![Acc::default(); layers.len()];
    let mut outs: Vec<(String, Acc)> = Vec::new();
    for b in batches {
        let feeds = b.feeds(single);
        let x = refs(&feeds);
        let mut fvals: Vec<Option<Vec<f32>>> = vec![None; layers.len()];
        let fout = fplan
            .run_observed(&x, &mut |name, t| {
                if let Some(&i) = want_f.get(name) {
                    fvals[i] = as_f32(t);
                }
            })
            .map_err(model_err)?;
        let mut qvals: Vec<Option<Vec<f32>>> = vec![None; layers.len()];
        let qout = qplan
            .run_observed(&x, &mut |name, t| {
                if let Some(&i) = want_q.get(name) {
                    qvals[i] = as_f32(t);
                }
            })
            .map_err(model_err)?;
        for (i, a) in acc.iter_mut().enumerate() {
            let (Some(f), Some(qv), Some(c)) = (&fvals[i], &qvals[i], &codes[i]) else {
                continue;
            };
            if f.len() != qv.len() {
                return Err(Error::Shape(format!(
                    "{}: float and quantized outputs differ in size",
                    layers[i].1
                )));
            }
            for (&x, &code) in f.iter().zip(qv) {
                let xq = (code - c.zero_point) * c.scale;
                let e = f64::from(x) - f64::from(xq);
                a.signal += f64::from(x) * f64::from(x);
                a.noise += e * e;
                a.max_abs = a.max_abs.max((x - xq).abs());
            }
            a.count += f.len();
        }
        for (name, ft) in &fout {
            let (Some(f), Some(qv)) = (
                ft.as_f32(),
                qout.iter()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, t)| t.as_f32()),
            ) else {
                continue;
            };
            if f.shape() != qv.shape() {
                return Err(Error::Shape(format!(
                    "output {name:?}: float shape {:?}, quantized {:?}",
                    f.shape(),
                    qv.shape()
                )));
            }
            let i = outs.iter().position(|(n, _)| n == name).unwrap_or_else(|| {
                outs.push((name.clone(), Acc::default()));
                outs.len() - 1
            });
            let a = &mut outs[i].1;
            for (&x, &xq) in f.iter().zip(qv) {
                let e = f64::from(x) - f64::from(xq);
                a.signal += f64::from(x) * f64::from(x);
                a.noise += e * e;
            }
            a.count += f.len();
        }
    }
    let layers = layers
        .iter()
        .zip(acc)
        .filter(|(_, a)| a.count > 0)
        .map(|((node, tensor), a)| LayerError {
            node: node.clone(),
            tensor: tensor.clone(),
            sqnr_db: sqnr(a.signal, a.noise),
            max_abs_error: a.max_abs,
        })
        .collect();
    let output_sqnr_db = outs
        .iter()
        .map(|(_, a)| sqnr(a.signal, a.noise))
        .min_by(f64::total_cmp);
    Ok(Measured {
        layers,
        output_sqnr_db,
    })
}

/// `10 · log10(signal / noise)`: +∞ without noise, −∞ for a zero signal with noise.
fn sqnr(signal: f64, noise: f64) -> f64 {
    if noise == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (signal / noise).log10()
    }
}

//! Empirical bias correction (Nagel et al. 2019, "Data-Free Quantization", §4.2; AIMET's
//! "empirical" bias correction): rounding a layer's weights shifts the mean of its
//! output, and the shift is measured on the calibration data and taken off the bias.
//!
//! What is measured, for each quantized `Conv`, `Gemm` or `MatMul` with a float bias
//! (its own `C`/`B` input, or for `MatMul` the constant of the `Add` that is its only
//! consumer): with `x` the float model's input to the node on each calibration batch
//! and `ε = Ŵ − W` (the dequantized weight the model will hold, minus the float one),
//! `δ_c = mean(node(x; ε))_c`, the mean over every batch, sample and output position of
//! output channel `c` of the node run on `x` with weight `ε` and no bias, which equals
//! `mean(node(x; Ŵ) − node(x; W))_c`. The bias becomes `b − δ` before it is quantized.
//! Only the weights' rounding is corrected: the inputs are the float model's, so the
//! error that earlier layers and activation quantization bring is not in `δ`. A bias
//! initializer read by other nodes too is left alone.

use super::calibrate::model_err;
use super::feeds::{CalibrationBatch, refs};
use super::rewrite::weight_params;
use super::{BiasCorrection, Config, Selection, node_ref};
use crate::math::quantize;
use crate::{Error, Result};
use edgeml_onnx::{GraphOptLevel, Model, Node, Plan, PlanOptions, Tensor, ValueInfo};
use ndarray::{ArrayD, Axis};
use std::collections::{HashMap, HashSet};

/// The measured shift of one node's bias.
#[derive(Debug, Clone)]
pub(super) struct Shift {
    /// The node (index in the float model).
    pub(super) node: usize,
    /// The bias initializer.
    pub(super) bias: String,
    /// `δ`, one value per output channel.
    pub(super) delta: Vec<f32>,
}

/// The bias initializer of target `node` (its own, or its `Add`'s for `MatMul`), if it
/// has one of `channels` values read by this node alone.
fn bias_of(model: &Model, node: usize, own: Option<&String>, channels: usize) -> Option<String> {
    let g = &model.graph;
    let n = &g.nodes[node];
    let readers = |name: &str| {
        g.nodes
            .iter()
            .flat_map(|m| &m.inputs)
            .filter(|v| *v == name)
            .count()
    };
    let name = match own {
        Some(b) => b.clone(),
        None if n.op_type == "MatMul" => {
            let y = &n.outputs[0];
            if g.outputs.iter().any(|o| &o.name == y) {
                return None;
            }
            let consumers: Vec<&Node> = g.nodes.iter().filter(|m| m.inputs.contains(y)).collect();
            let [add] = consumers.as_slice() else {
                return None;
            };
            if add.op_type != "Add" || !add.domain.is_empty() || add.inputs.len() != 2 {
                return None;
            }
            let other = if add.inputs[0] == *y {
                &add.inputs[1]
            } else {
                &add.inputs[0]
            };
            let t = g.initializer(other)?.as_f32()?;
            // [N] or [1, ..., 1, N]: one value per output channel, on the last axis.
            let last = t.shape().last().copied().unwrap_or(0);
            if last != channels || t.len() != channels {
                return None;
            }
            other.clone()
        }
        None => return None,
    };
    (readers(&name) == 1).then_some(name)
}

/// The one-node model `y = node(x; eps)` without bias.
fn eps_model(model: &Model, n: &Node, eps: ArrayD<f32>) -> Model {
    let mut node = n.clone();
    node.inputs = vec!["x".into(), "eps".into()];
    node.outputs = vec!["y".into()];
    node.name = String::new();
    let mut m = Model {
        ir_version: model.ir_version,
        opset_imports: model.opset_imports.clone(),
        ..Model::default()
    };
    m.graph.nodes = vec![node];
    m.graph.inputs = vec![ValueInfo {
        name: "x".into(),
        ..ValueInfo::default()
    }];
    m.graph.outputs = vec![ValueInfo {
        name: "y".into(),
        ..ValueInfo::default()
    }];
    m.graph.initializers = vec![("eps".into(), Tensor::F32(eps))];
    m
}

/// `Ŵ − W` for weight `wf` quantized as the rewrite will quantize it.
fn weight_error(wf: &ArrayD<f32>, w_axis: usize, config: &Config) -> Result<ArrayD<f32>> {
    let p = weight_params(wf, w_axis, config)?;
    let q = quantize(wf.view(), &p)?;
    let mut eps = wf.clone();
    for ((idx, e), &code) in eps.indexed_iter_mut().zip(q.iter()) {
        let c = if p.is_per_tensor() { 0 } else { idx[w_axis] };
        let w_hat = (code - p.zero_points()[c]) as f32 * p.scales()[c];
        *e = w_hat - *e;
    }
    Ok(eps)
}

/// Measures `δ` for every target with a float bias (see the module documentation).
pub(super) fn measure<B: CalibrationBatch>(
    model: &Model,
    single: &str,
    batches: &[B],
    sel: &Selection,
    config: &Config,
) -> Result<Vec<Shift>> {
    let g = &model.graph;
    let mut opts = PlanOptions::with_threads(1);
    opts.optimization = GraphOptLevel::Disabled;
    // (target, bias, plan of node(x; ε))
    let mut jobs: Vec<(usize, String, Plan)> = Vec::new();
    for t in &sel.targets {
        let n = &g.nodes[t.node];
        let w = &n.inputs[1];
        let wf = g
            .initializer(w)
            .and_then(Tensor::as_f32)
            .ok_or_else(|| Error::Invalid(format!("weight {w:?} vanished")))?;
        let channels = wf.shape().get(t.w_axis).copied().unwrap_or(0);
        let Some(bias) = bias_of(model, t.node, t.bias.as_ref(), channels) else {
            continue;
        };
        let eps = weight_error(wf, t.w_axis, config)?;
        let plan = Plan::new(&eps_model(model, n, eps), opts.clone()).map_err(model_err)?;
        jobs.push((t.node, bias, plan));
    }
    let wanted: HashSet<&str> = jobs
        .iter()
        .map(|(i, _, _)| g.nodes[*i].inputs[0].as_str())
        .collect();
    let fplan = Plan::new(model, opts).map_err(model_err)?;
    let mut sums: Vec<(Vec<f64>, usize)> = vec![(Vec::new(), 0); jobs.len()];
    for b in batches {
        let feeds = b.feeds(single);
        let mut seen: HashMap<String, Tensor> = feeds.iter().cloned().collect();
        fplan
            .run_observed(&refs(&feeds), &mut |name, t| {
                if wanted.contains(name) {
                    seen.insert(name.to_owned(), t.clone());
                }
            })
            .map_err(model_err)?;
        for ((node, _, plan), (sum, count)) in jobs.iter().zip(&mut sums) {
            let n = &g.nodes[*node];
            let xin = seen.get(&n.inputs[0]).ok_or_else(|| {
                Error::Invalid(format!("input {:?} was not computed", n.inputs[0]))
            })?;
            let out = plan.run(&[("x", xin.clone())]).map_err(model_err)?;
            let y = out
                .first()
                .and_then(|(_, t)| t.as_f32())
                .ok_or_else(|| Error::Invalid(format!("{}: no f32 output", node_ref(n).name)))?;
            // Output channels: axis 1 of a Conv's [N, C, ...], the last axis otherwise.
            let axis = if n.op_type == "Conv" {
                1
            } else {
                y.ndim().saturating_sub(1)
            };
            if axis >= y.ndim() {
                continue;
            }
            if sum.is_empty() {
                sum.resize(y.len_of(Axis(axis)), 0.0);
            }
            for (s, lane) in sum.iter_mut().zip(y.axis_iter(Axis(axis))) {
                *s += lane.iter().map(|&v| f64::from(v)).sum::<f64>();
            }
            *count += y.len() / y.len_of(Axis(axis)).max(1);
        }
    }
    Ok(jobs
        .into_iter()
        .zip(sums)
        .filter(|(_, (_, count))| *count > 0)
        .map(|((node, bias, _), (sum, count))| Shift {
            node,
            bias,
            delta: sum.iter().map(|s| (s / count as f64) as f32).collect(),
        })
        .collect())
}

/// `model` with `b − δ` for every shift whose node is quantized in `sel`; the report's
/// list of corrections.
pub(super) fn apply(
    model: &Model,
    shifts: &[Shift],
    sel: &Selection,
) -> Result<(Model, Vec<BiasCorrection>)> {
    let mut m = model.clone();
    let mut done = Vec::new();
    for s in shifts {
        if !sel.targets.iter().any(|t| t.node == s.node) {
            continue;
        }
        let Some((_, Tensor::F32(b))) = m.graph.initializers.iter_mut().find(|(n, _)| *n == s.bias)
        else {
            return Err(Error::Invalid(format!("bias {:?} vanished", s.bias)));
        };
        if b.len() != s.delta.len() {
            return Err(Error::Shape(format!(
                "bias {:?} has {} values, the measured shift {}",
                s.bias,
                b.len(),
                s.delta.len()
            )));
        }
        for (v, d) in b.iter_mut().zip(&s.delta) {
            *v -= d;
        }
        done.push(BiasCorrection {
            node: node_ref(&model.graph.nodes[s.node]),
            bias: s.bias.clone(),
            shift: s.delta.clone(),
        });
    }
    Ok((m, done))
}

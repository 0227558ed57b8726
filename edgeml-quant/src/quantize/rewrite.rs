//! Writing the QDQ model: int8 weights and int32 biases behind `DequantizeLinear`,
//! `QuantizeLinear → DequantizeLinear` pairs on the calibrated activations.

use super::{ActivationRange, Config, Report, Selection, node_ref};
use crate::math::{compute_scale_zp, per_axis_params, per_tensor_params, quantize, quantize_bias};
use crate::{Error, Result};
use edgeml_core::{DType, QuantParams};
use edgeml_onnx::{Attribute, Model, Node, Tensor};
use ndarray::{ArrayD, IxDyn};
use std::collections::{HashMap, HashSet};

/// An integer tensor of type `qtype` from `i32` values that fit it.
pub(super) fn int_tensor(qtype: DType, shape: &[usize], values: Vec<i32>) -> Result<Tensor> {
    let a =
        ArrayD::from_shape_vec(IxDyn(shape), values).map_err(|e| Error::Shape(e.to_string()))?;
    Ok(match qtype {
        DType::I8 => Tensor::I8(a.mapv(|v| v as i8)),
        DType::U8 => Tensor::U8(a.mapv(|v| v as u8)),
        DType::I16 => Tensor::I16(a.mapv(|v| v as i16)),
        DType::U16 => Tensor::U16(a.mapv(|v| v as u16)),
        DType::I32 => Tensor::I32(a),
        other => return Err(Error::Unsupported(format!("quantized type {other}"))),
    })
}

/// Scale and zero-point initializers for `p` (scalars when per-tensor, 1-D otherwise).
pub(super) fn param_tensors(p: &QuantParams) -> Result<(Tensor, Tensor)> {
    let shape: &[usize] = if p.is_per_tensor() { &[] } else { &[p.len()] };
    let s = ArrayD::from_shape_vec(IxDyn(shape), p.scales().to_vec())
        .map_err(|e| Error::Shape(e.to_string()))?;
    let z = int_tensor(p.qtype(), shape, p.zero_points().to_vec())?;
    Ok((Tensor::F32(s), z))
}

/// A new node. Q/DQ nodes are left unnamed, as names are optional in ONNX and cost
/// file size on small models.
pub(super) fn node(op: &str, inputs: Vec<String>, output: String, axis: Option<usize>) -> Node {
    Node {
        op_type: op.to_owned(),
        inputs,
        outputs: vec![output],
        attributes: axis
            .map(|a| vec![("axis".to_owned(), Attribute::Int(a as i64))])
            .unwrap_or_default(),
        ..Node::default()
    }
}

/// Fresh value names: `base`, else `base_1`, `base_2`, ... avoiding every name in use.
pub(super) struct Names(HashSet<String>);

impl Names {
    pub(super) fn new(model: &Model) -> Self {
        let g = &model.graph;
        let mut used: HashSet<String> = HashSet::new();
        for n in &g.nodes {
            used.extend(n.inputs.iter().chain(&n.outputs).cloned());
        }
        used.extend(g.initializers.iter().map(|(n, _)| n.clone()));
        used.extend(
            g.inputs
                .iter()
                .chain(&g.outputs)
                .chain(&g.value_info)
                .map(|v| v.name.clone()),
        );
        Self(used)
    }

    pub(super) fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_owned();
        let mut i = 0;
        while self.0.contains(&name) {
            i += 1;
            name = format!("{base}_{i}");
        }
        self.0.insert(name.clone());
        name
    }
}

/// The quantization parameters of a weight whose output channels lie on `w_axis`.
pub(super) fn weight_params(
    wf: &ArrayD<f32>,
    w_axis: usize,
    config: &Config,
) -> Result<QuantParams> {
    if config.per_channel {
        per_axis_params(
            wf.view(),
            w_axis,
            config.weight_type,
            config.symmetric_weights,
            config.reduce_range,
        )
    } else {
        per_tensor_params(
            wf.view(),
            config.weight_type,
            config.symmetric_weights,
            config.reduce_range,
        )
    }
}

pub(super) fn write(
    model: &Model,
    sel: &Selection,
    ranges: &[(f32, f32)],
    config: &Config,
    report: &mut Report,
) -> Result<Model> {
    let mut m = model.clone();
    let mut names = Names::new(model);
    let g = &mut m.graph;
    let outputs: HashSet<String> = g.outputs.iter().map(|o| o.name.clone()).collect();
    let mut new_inits: Vec<(String, Tensor)> = Vec::new();
    // Nodes to insert right after node `i` (usize::MAX: before every node).
    let mut after: HashMap<usize, Vec<Node>> = HashMap::new();
    let mut dead: HashSet<usize> = HashSet::new();
    let mut replaced: HashSet<String> = HashSet::new();

    // Activations: parameters first (the bias needs the input scale).
    let mut act: HashMap<&str, QuantParams> = HashMap::new();
    let mut ranges = ranges.to_vec();
    if config.exact_ops_in_int8 {
        let opset = model.opset("").unwrap_or(1);
        let eight_bit = matches!(config.activation_type, DType::U8 | DType::I8);
        let sources = super::exact::range_sources(&model.graph, &sel.tensors, opset, eight_bit);
        // Sources come first in graph order; resolve chains of sources all the same.
        for i in 0..ranges.len() {
            let mut s = i;
            for _ in 0..ranges.len() {
                match sources.get(&s) {
                    Some(&next) => s = next,
                    None => break,
                }
            }
            ranges[i] = ranges[s];
        }
    }
    for (t, &(lo, hi)) in sel.tensors.iter().zip(&ranges) {
        let p = compute_scale_zp(
            lo,
            hi,
            config.activation_type,
            config.symmetric_activations,
            config.reduce_range,
        )?;
        report.activations.push(ActivationRange {
            name: t.clone(),
            range: (lo, hi),
            scale: p.scales()[0],
            zero_point: p.zero_points()[0],
        });
        act.insert(t.as_str(), p);
    }

    for t in &sel.targets {
        let n = g.nodes[t.node].clone();
        report.quantized.push(node_ref(&n));
        if let Some(j) = t.fold {
            report.folded.push(node_ref(&g.nodes[j]));
            // The node now writes the activation's output; the activation goes.
            g.nodes[t.node].outputs[0] = g.nodes[j].outputs[0].clone();
            dead.insert(j);
        }
        let w = &n.inputs[1];
        let wf = model
            .graph
            .initializer(w)
            .and_then(Tensor::as_f32)
            .ok_or_else(|| Error::Invalid(format!("weight {w:?} vanished")))?;
        let wp = weight_params(wf, t.w_axis, config)?;
        let q = quantize(wf.view(), &wp)?;
        let (ws, wz) = param_tensors(&wp)?;
        let dq_w = names.fresh(&format!("{w}dq"));
        let (wq_n, ws_n) = (names.fresh(&format!("{w}q")), names.fresh(&format!("{w}s")));
        let data = q.into_raw_vec_and_offset().0;
        new_inits.push((wq_n.clone(), int_tensor(wp.qtype(), wf.shape(), data)?));
        new_inits.push((ws_n.clone(), ws));
        // The zero point is written even when 0: QLinearConv/QLinearMatMul need it.
        let wz_n = names.fresh(&format!("{w}z"));
        new_inits.push((wz_n.clone(), wz));
        let dq_inputs = vec![wq_n, ws_n, wz_n];
        after.entry(usize::MAX).or_default().push(node(
            "DequantizeLinear",
            dq_inputs,
            dq_w.clone(),
            wp.axis(),
        ));
        g.nodes[t.node].inputs[1] = dq_w;
        replaced.insert(w.clone());
        if let Some(b) = &t.bias {
            let bf = model
                .graph
                .initializer(b)
                .and_then(Tensor::as_f32)
                .ok_or_else(|| Error::Invalid(format!("bias {b:?} vanished")))?;
            let xp = act.get(n.inputs[0].as_str()).ok_or_else(|| {
                Error::Invalid(format!("input {:?} was not calibrated", n.inputs[0]))
            })?;
            let bv: Vec<f32> = bf.iter().copied().collect();
            let qb = quantize_bias(&bv, xp.scales()[0], &wp)?;
            report.saturated_bias += qb.saturated;
            let (bs, _) = param_tensors(&qb.params)?;
            let dq_b = names.fresh(&format!("{b}dq"));
            let (bq_n, bs_n) = (names.fresh(&format!("{b}q")), names.fresh(&format!("{b}s")));
            let values = int_tensor(DType::I32, &[bv.len()], qb.values)?;
            new_inits.push((bq_n.clone(), values));
            new_inits.push((bs_n.clone(), bs));
            after.entry(usize::MAX).or_default().push(node(
                "DequantizeLinear",
                vec![bq_n, bs_n],
                dq_b.clone(),
                qb.params.axis(),
            ));
            g.nodes[t.node].inputs[2] = dq_b;
            replaced.insert(b.clone());
        }
    }

    // Q → DQ pairs on the activations; every consumer reads the dequantized value.
    let producer: HashMap<String, usize> = g
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| !dead.contains(i))
        .flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.clone(), i)))
        .collect();
    for t in &sel.tensors {
        let p = act
            .get(t.as_str())
            .ok_or_else(|| Error::Invalid(format!("tensor {t:?} was not calibrated")))?;
        let (s, z) = param_tensors(p)?;
        let (sn, zn) = (names.fresh(&format!("{t}s")), names.fresh(&format!("{t}z")));
        new_inits.push((sn.clone(), s));
        new_inits.push((zn.clone(), z));
        let at = producer.get(t).copied().unwrap_or(usize::MAX);
        let (q_in, dq_out) = if outputs.contains(t) && at != usize::MAX {
            // A graph output keeps its name, now on the dequantized value.
            let pre = names.fresh(&format!("{t}f"));
            for o in &mut g.nodes[at].outputs {
                if o == t {
                    o.clone_from(&pre);
                }
            }
            (pre, t.clone())
        } else {
            let dq = names.fresh(&format!("{t}dq"));
            for (i, n) in g.nodes.iter_mut().enumerate() {
                if !dead.contains(&i) {
                    for v in &mut n.inputs {
                        if v == t {
                            v.clone_from(&dq);
                        }
                    }
                }
            }
            (t.clone(), dq)
        };
        let qv = names.fresh(&format!("{t}q"));
        let list = after.entry(at).or_default();
        list.push(node(
            "QuantizeLinear",
            vec![q_in, sn.clone(), zn.clone()],
            qv.clone(),
            None,
        ));
        list.push(node("DequantizeLinear", vec![qv, sn, zn], dq_out, None));
    }

    // Float initializers no longer read by any node go.
    let still_read: HashSet<&str> = g
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| !dead.contains(i))
        .flat_map(|(_, n)| n.inputs.iter().map(String::as_str))
        .collect();
    let gone: HashSet<String> = replaced
        .into_iter()
        .filter(|r| !still_read.contains(r.as_str()) && !outputs.contains(r))
        .collect();
    g.initializers.retain(|(n, _)| !gone.contains(n));
    g.inputs.retain(|i| !gone.contains(&i.name));
    g.value_info.retain(|i| !gone.contains(&i.name));
    let created: HashSet<String> = new_inits.iter().map(|(n, _)| n.clone()).collect();
    g.initializers.extend(new_inits);

    // Rebuild the node list in order, with the new nodes after their producers.
    let old = std::mem::take(&mut g.nodes);
    let mut nodes = after.remove(&usize::MAX).unwrap_or_default();
    for (i, n) in old.into_iter().enumerate() {
        if dead.contains(&i) {
            continue;
        }
        nodes.push(n);
        nodes.extend(after.remove(&i).unwrap_or_default());
    }
    g.nodes = nodes;
    report.float_nodes.clone_from(&sel.float_nodes);
    if config.exact_ops_in_int8 {
        let opset = model.opset("").unwrap_or(1);
        let eight_bit = matches!(config.activation_type, DType::U8 | DType::I8);
        super::exact::pass_through(g, opset, eight_bit, report);
    }
    super::exact::share_equal(g, &created);
    super::exact::drop_unused(g, &created);
    Ok(m)
}

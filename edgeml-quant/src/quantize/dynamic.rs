//! Dynamic quantization: int8 weights, activations quantized at run time, in the
//! QOperator form of onnxruntime's `quantize_dynamic`.

use super::rewrite::{Names, int_tensor, node, param_tensors};
use super::{Config, FloatNode, Format, Report, node_ref};
use crate::math::{per_axis_params, per_tensor_params, quantize};
use crate::{Error, Result};
use edgeml_onnx::{Attribute, Model, Node, Tensor};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;

/// ONNX `TensorProto.FLOAT`.
const FLOAT: i64 = 1;

/// The run-time quantization of one float tensor (`DynamicQuantizeLinear` outputs).
#[derive(Clone)]
struct Dql {
    q: String,
    scale: String,
    zp: String,
}

pub(super) fn write(model: &Model, config: &Config, report: &mut Report) -> Result<Model> {
    let contrib = config.format == Format::QOperatorContrib;
    let mut sel = super::select(model, config)?;
    if sel.targets.is_empty() {
        return Err(Error::Unsupported(
            "the model has no quantizable node (Conv, Gemm or MatMul with a constant weight)"
                .into(),
        ));
    }
    for t in &mut sel.targets {
        if let Some(j) = t.fold.take() {
            sel.float_nodes.push(FloatNode {
                node: node_ref(&model.graph.nodes[j]),
                reason: "dynamic quantization keeps activations in float".into(),
            });
        }
    }
    let mut m = model.clone();
    let mut names = Names::new(model);
    let g = &model.graph;
    let mut inits: Vec<(String, Tensor)> = Vec::new();
    let mut dqls: HashMap<String, Dql> = HashMap::new();
    let mut replace: HashMap<usize, Vec<Node>> = HashMap::new();
    for t in &sel.targets {
        let n = &g.nodes[t.node];
        let base = if n.name.is_empty() {
            n.outputs[0].clone()
        } else {
            n.name.clone()
        };
        let wname = &n.inputs[1];
        let wf = g
            .initializer(wname)
            .and_then(Tensor::as_f32)
            .ok_or_else(|| Error::Invalid(format!("weight {wname:?} vanished")))?;
        let conv = n.op_type == "Conv";
        // MatMulInteger wants [K, N]: a Gemm's transposed weight is transposed back.
        let (w, axis): (ArrayD<f32>, usize) = if !conv && t.w_axis == 0 {
            (wf.t().to_owned().into_dyn(), 1)
        } else {
            (wf.to_owned(), t.w_axis)
        };
        let wp = if config.per_channel {
            per_axis_params(
                w.view(),
                axis,
                config.weight_type,
                config.symmetric_weights,
                config.reduce_range,
            )?
        } else {
            per_tensor_params(
                w.view(),
                config.weight_type,
                config.symmetric_weights,
                config.reduce_range,
            )?
        };
        // onnxruntime's ConvInteger takes only a scalar weight zero point: per-channel
        // Conv weights need equal zero points (always so for symmetric weights),
        // otherwise the Conv falls back to per-tensor.
        let zps = wp.zero_points();
        let wp = if conv && zps.iter().any(|&z| z != zps[0]) {
            per_tensor_params(
                w.view(),
                config.weight_type,
                config.symmetric_weights,
                config.reduce_range,
            )?
        } else {
            wp
        };
        let codes = quantize(w.view(), &wp)?.into_raw_vec_and_offset().0;
        let (ws, wz) = param_tensors(&wp)?;
        let wz = if conv {
            int_tensor(wp.qtype(), &[], vec![wp.zero_points()[0]])?
        } else {
            wz
        };
        // The weight scale multiplies the output: along axis 1 of a Conv's NC...
        // output it must broadcast as [1, C, 1, ...].
        let ws = match (&ws, conv && !wp.is_per_tensor()) {
            (Tensor::F32(s), true) => {
                let mut shape = vec![1; w.ndim()];
                shape[1] = s.len();
                Tensor::F32(
                    ArrayD::from_shape_vec(IxDyn(&shape), s.iter().copied().collect())
                        .map_err(|e| Error::Shape(e.to_string()))?,
                )
            }
            _ => ws,
        };
        let (wq_n, ws_n, wz_n) = (
            names.fresh(&format!("{wname}_quantized")),
            names.fresh(&format!("{wname}_scale")),
            names.fresh(&format!("{wname}_zero_point")),
        );
        inits.push((wq_n.clone(), int_tensor(wp.qtype(), w.shape(), codes)?));
        inits.push((ws_n.clone(), ws));
        inits.push((wz_n.clone(), wz));

        let mut nodes = Vec::new();
        let x = &n.inputs[0];
        let out = &n.outputs[0];
        let bias = n
            .inputs
            .get(2)
            .filter(|b| !b.is_empty() && n.op_type != "MatMul");
        if contrib && !conv {
            // One com.microsoft DynamicQuantizeMatMul(A, B, b_scale, b_zero_point,
            // bias): it quantizes A itself. Its bias is 1-D [N]; a Gemm's other C
            // shapes are added after it.
            let n_out = w.shape()[1];
            let inline = bias.filter(|b| g.initializer(b).is_some_and(|t| t.shape() == [n_out]));
            let y = if bias.is_some() && inline.is_none() {
                names.fresh(&format!("{out}_matmul"))
            } else {
                out.clone()
            };
            let mut inputs = vec![x.clone(), wq_n, ws_n, wz_n];
            inputs.extend(inline.cloned());
            nodes.push(Node {
                name: names.fresh(&format!("{base}_quant")),
                op_type: "DynamicQuantizeMatMul".into(),
                domain: "com.microsoft".into(),
                inputs,
                outputs: vec![y.clone()],
                ..Node::default()
            });
            if let (Some(b), None) = (bias, inline) {
                nodes.push(node("Add", vec![y, b.clone()], out.clone(), None));
            }
            report.quantized.push(node_ref(n));
            replace.insert(t.node, nodes);
            continue;
        }
        let d = match dqls.get(x) {
            Some(d) => d.clone(),
            None => {
                let d = Dql {
                    q: names.fresh(&format!("{x}_quantized")),
                    scale: names.fresh(&format!("{x}_scale")),
                    zp: names.fresh(&format!("{x}_zero_point")),
                };
                nodes.push(Node {
                    name: names.fresh(&format!("{x}_QuantizeLinear")),
                    op_type: "DynamicQuantizeLinear".into(),
                    inputs: vec![x.clone()],
                    outputs: vec![d.q.clone(), d.scale.clone(), d.zp.clone()],
                    ..Node::default()
                });
                dqls.insert(x.clone(), d.clone());
                d
            }
        };
        let int_out = names.fresh(&format!("{}_output_quantized", n.outputs[0]));
        let (int_op, attributes) = if conv {
            ("ConvInteger", n.attributes.clone())
        } else {
            ("MatMulInteger", Vec::new())
        };
        nodes.push(Node {
            name: names.fresh(&format!("{base}_quant")),
            op_type: int_op.into(),
            inputs: vec![d.q, wq_n, d.zp, wz_n],
            outputs: vec![int_out.clone()],
            attributes,
            ..Node::default()
        });
        let cast_out = names.fresh(&format!("{int_out}_cast_output"));
        let mut cast = node("Cast", vec![int_out], cast_out.clone(), None);
        cast.attributes = vec![("to".into(), Attribute::Int(FLOAT))];
        nodes.push(cast);
        let scale = names.fresh(&format!("{base}_scales_mul"));
        nodes.push(node("Mul", vec![d.scale, ws_n], scale.clone(), None));
        let scaled = if bias.is_some() {
            names.fresh(&format!("{out}_scaled"))
        } else {
            out.clone()
        };
        nodes.push(node("Mul", vec![cast_out, scale], scaled.clone(), None));
        if let Some(b) = bias {
            let b = if conv {
                // A Conv's [C] bias broadcasts as [1, C, 1, ...], via a Reshape as
                // onnxruntime writes it.
                let mut shape = vec![1i64; w.ndim()];
                shape[1] = -1;
                let shape_n = names.fresh(&format!("{out}_bias_reshape_shape"));
                inits.push((
                    shape_n.clone(),
                    Tensor::I64(
                        ArrayD::from_shape_vec(IxDyn(&[shape.len()]), shape)
                            .map_err(|e| Error::Shape(e.to_string()))?,
                    ),
                ));
                let r = names.fresh(&format!("{out}_bias_reshape_output"));
                nodes.push(node("Reshape", vec![b.clone(), shape_n], r.clone(), None));
                r
            } else {
                b.clone()
            };
            nodes.push(node("Add", vec![scaled, b], out.clone(), None));
        }
        report.quantized.push(node_ref(n));
        replace.insert(t.node, nodes);
    }
    let old = std::mem::take(&mut m.graph.nodes);
    for (i, n) in old.into_iter().enumerate() {
        match replace.remove(&i) {
            Some(new) => m.graph.nodes.extend(new),
            None => m.graph.nodes.push(n),
        }
    }
    // Float weights no longer read go (a Gemm bias or a shared weight may still be).
    let read: std::collections::HashSet<&str> = m
        .graph
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter().map(String::as_str))
        .collect();
    let gone: Vec<String> = sel
        .targets
        .iter()
        .map(|t| g.nodes[t.node].inputs[1].clone())
        .filter(|w| !read.contains(w.as_str()))
        .collect();
    m.graph.initializers.retain(|(n, _)| !gone.contains(n));
    m.graph.inputs.retain(|i| !gone.contains(&i.name));
    m.graph.initializers.extend(inits);
    if m.graph.nodes.iter().any(|n| n.domain == "com.microsoft")
        && !m.opset_imports.iter().any(|o| o.domain == "com.microsoft")
    {
        m.opset_imports.push(edgeml_onnx::OpsetImport {
            domain: "com.microsoft".into(),
            version: 1,
        });
    }
    report.float_nodes = sel.float_nodes;
    Ok(m)
}

//! Export of an [`Mlp`] to ONNX (`Flatten`, `Sub`/`Div`, `Gemm`, `Relu`), and import
//! of the dense ONNX MLPs that edgeml and skl2onnx write.

use std::path::Path;

use edgeml_core::DType;
use edgeml_onnx::{Attribute, Dim, Graph, Model, Node, OpsetImport, Tensor, ValueInfo};
use ndarray::{ArrayD, IxDyn};

use crate::error::{Error, Result};
use crate::mlp::{Mlp, Standardization};

/// The name of the exported model's input.
pub const INPUT_NAME: &str = "x";
/// The name of the exported model's output (the logits).
pub const OUTPUT_NAME: &str = "logits";

fn tensor(shape: &[usize], v: &[f32]) -> Result<Tensor> {
    ArrayD::from_shape_vec(IxDyn(shape), v.to_vec())
        .map(Tensor::F32)
        .map_err(|e| Error::InvalidArgument(format!("tensor of shape {shape:?}: {e}")))
}

fn node(op: &str, ins: &[&str], out: &str, attributes: Vec<(String, Attribute)>) -> Node {
    Node {
        op_type: op.to_owned(),
        inputs: ins.iter().map(|s| (*s).to_owned()).collect(),
        outputs: vec![out.to_owned()],
        attributes,
        ..Node::default()
    }
}

impl Mlp {
    /// The network as an ONNX model (opset 13): input `x` of shape `[N, input_shape…]`,
    /// `Flatten` (for multi-dimensional samples), `Sub`/`Div` for the standardisation,
    /// then `Gemm` (`transB = 1`) and `Relu` per layer; output `logits` `[N, classes]`.
    /// The exported model computes exactly the operations of [`Mlp::logits`].
    ///
    /// # Errors
    /// Only if a parameter tensor cannot be built (an internal inconsistency).
    pub fn to_onnx(&self) -> Result<Model> {
        let mut nodes = Vec::new();
        let mut inits = Vec::new();
        let mut cur = INPUT_NAME.to_owned();
        if self.input_shape().len() != 1 {
            nodes.push(node(
                "Flatten",
                &[&cur],
                "flat",
                vec![("axis".into(), Attribute::Int(1))],
            ));
            cur = "flat".into();
        }
        if let Some(s) = self.standardization() {
            inits.push(("mean".to_owned(), tensor(&[self.inputs()], &s.mean)?));
            inits.push(("std".to_owned(), tensor(&[self.inputs()], &s.std)?));
            nodes.push(node("Sub", &[&cur, "mean"], "centred", vec![]));
            nodes.push(node("Div", &["centred", "std"], "scaled", vec![]));
            cur = "scaled".into();
        }
        let n_layers = self.sizes().len() - 1;
        for l in 0..n_layers {
            let (w, b) = self.layer(l);
            let (n_in, n_out) = (self.sizes()[l], self.sizes()[l + 1]);
            let (wn, bn) = (format!("W{l}"), format!("B{l}"));
            inits.push((wn.clone(), tensor(&[n_out, n_in], w)?));
            inits.push((bn.clone(), tensor(&[n_out], b)?));
            let last = l + 1 == n_layers;
            let z = if last {
                OUTPUT_NAME.to_owned()
            } else {
                format!("z{l}")
            };
            nodes.push(node(
                "Gemm",
                &[&cur, &wn, &bn],
                &z,
                vec![("transB".into(), Attribute::Int(1))],
            ));
            cur = z;
            if !last {
                let h = format!("h{l}");
                nodes.push(node("Relu", &[&cur], &h, vec![]));
                cur = h;
            }
        }
        let batch = || Dim::Symbolic("N".into());
        let mut in_shape = vec![batch()];
        in_shape.extend(self.input_shape().iter().map(|&d| Dim::Known(d)));
        Ok(Model {
            ir_version: 7,
            opset_imports: vec![OpsetImport {
                domain: String::new(),
                version: 13,
            }],
            producer_name: "edgeml-distill".into(),
            graph: Graph {
                name: "student".into(),
                nodes,
                inputs: vec![ValueInfo {
                    name: INPUT_NAME.into(),
                    dtype: Some(DType::F32),
                    shape: Some(in_shape),
                    doc_string: String::new(),
                }],
                outputs: vec![ValueInfo {
                    name: OUTPUT_NAME.into(),
                    dtype: Some(DType::F32),
                    shape: Some(vec![batch(), Dim::Known(self.classes())]),
                    doc_string: String::new(),
                }],
                initializers: inits,
                ..Graph::default()
            },
            ..Model::default()
        })
    }

    /// Writes [`Mlp::to_onnx`] to `path` atomically ([`Model::save`]).
    ///
    /// # Errors
    /// The file cannot be written ([`Error::Model`] with kind `Io`).
    pub fn save_onnx(&self, path: impl AsRef<Path>) -> Result<()> {
        self.to_onnx()?.save(path).map_err(|e| Error::Model {
            kind: e.kind(),
            message: e.to_string(),
        })
    }
}

/// An [`Error::UnsupportedModel`] naming the node.
fn unsupported(node: &Node, why: impl std::fmt::Display) -> Error {
    let name = if node.name.is_empty() {
        node.outputs.first().map_or("", String::as_str)
    } else {
        &node.name
    };
    Error::UnsupportedModel(format!("{} node `{name}`: {why}", node.op_type))
}

/// The float initializer `name` as a 1-D or 2-D row-major vector with its shape.
fn constant<'a>(g: &'a Graph, node: &Node, name: &str) -> Result<(&'a [usize], Vec<f32>)> {
    let t = g
        .initializer(name)
        .ok_or_else(|| unsupported(node, format!("`{name}` is not an initializer")))?;
    let a = t
        .as_f32()
        .ok_or_else(|| unsupported(node, format!("`{name}` is not float32")))?;
    Ok((t.shape(), a.iter().copied().collect()))
}

/// Walks a linear chain of single-output nodes from the graph input.
struct Chain<'a> {
    g: &'a Graph,
    /// The value the last node read, and the one it wrote.
    prev: String,
    cur: String,
    used: Vec<bool>,
}

impl<'a> Chain<'a> {
    /// The only node reading the current value, if any; more than one is an error.
    fn next(&mut self) -> Result<Option<&'a Node>> {
        let g = self.g;
        let mut readers = g
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.inputs.contains(&self.cur));
        let Some((i, n)) = readers.next() else {
            return Ok(None);
        };
        if let Some((_, other)) = readers.next() {
            return Err(unsupported(
                other,
                format!("`{}` feeds more than one node (not a chain)", self.cur),
            ));
        }
        if n.outputs.len() != 1 || !n.domain.is_empty() {
            return Err(unsupported(n, "not a single-output ai.onnx node"));
        }
        self.used[i] = true;
        self.prev = std::mem::replace(&mut self.cur, n.outputs[0].clone());
        Ok(Some(n))
    }

    /// Checks that `n` (the node just taken) reads the chain's value as its first
    /// input, and returns its second input.
    fn operand(&self, n: &'a Node) -> Result<&'a str> {
        match n.inputs.as_slice() {
            [x, w, ..] if *x == self.prev => Ok(w),
            _ => Err(unsupported(
                n,
                format!("`{}` is not its first input", self.prev),
            )),
        }
    }
}

impl Mlp {
    /// The dense MLP that `model` computes, as a student to fine-tune (and prune).
    ///
    /// Accepted: one graph input `[N, features…]`, optionally `Flatten` (axis 1),
    /// optionally `Sub` and `Div` by constant per-feature vectors (the standardisation
    /// [`Mlp::to_onnx`] writes), then layers `Gemm` (`alpha = beta = 1`, `transA = 0`,
    /// `transB` 0 or 1, a bias) or `MatMul` + `Add` of a bias (as skl2onnx writes
    /// scikit-learn's `MLPClassifier`), with `Relu` between layers, and optionally a
    /// final `Softmax` on the last axis, which is dropped: the network gives the logits,
    /// whose argmax is the same. Every node of the graph must be on this chain. The
    /// round trip `Mlp::from_onnx(&mlp.to_onnx()?)` gives `mlp` back.
    ///
    /// # Errors
    /// [`Error::UnsupportedModel`] (kind `InvalidModel`) naming the first node or value
    /// that does not fit: another operator or activation, a non-constant or non-float
    /// weight, mismatched widths, a branch, nodes off the chain, no layer at all,
    /// fewer than 2 outputs, or graph outputs other than the chain's end;
    /// [`Error::NonFinite`] for a NaN or infinite weight.
    pub fn from_onnx(model: &Model) -> Result<Mlp> {
        let g = &model.graph;
        let inputs: Vec<&ValueInfo> = g
            .inputs
            .iter()
            .filter(|v| g.initializer(&v.name).is_none())
            .collect();
        let [input] = inputs.as_slice() else {
            return Err(Error::UnsupportedModel(format!(
                "{} graph inputs, an MLP has one",
                inputs.len()
            )));
        };
        let mut chain = Chain {
            g,
            prev: String::new(),
            cur: input.name.clone(),
            used: vec![false; g.nodes.len()],
        };
        let mut node = chain.next()?;
        if let Some(n) = node.filter(|n| n.op_type == "Flatten") {
            if n.int_attr("axis", 1) != 1 {
                return Err(unsupported(n, "axis is not 1"));
            }
            node = chain.next()?;
        }
        let mut standardization = None;
        if let Some(sub) = node.filter(|n| n.op_type == "Sub") {
            let (_, mean) = constant(g, sub, chain.operand(sub)?)?;
            let div = chain
                .next()?
                .filter(|n| n.op_type == "Div")
                .ok_or_else(|| unsupported(sub, "not followed by Div"))?;
            let (_, std) = constant(g, div, chain.operand(div)?)?;
            standardization = Some(Standardization { mean, std });
            node = chain.next()?;
        }
        let mut sizes: Vec<usize> = Vec::new();
        let mut params: Vec<f32> = Vec::new();
        let mut after_relu = true;
        while let Some(n) = node {
            match n.op_type.as_str() {
                "Gemm" | "MatMul" if after_relu => {
                    let (w, b, n_in, n_out) = dense_layer(g, n, &mut chain)?;
                    match sizes.last() {
                        None => sizes.push(n_in),
                        Some(&prev) if prev != n_in => {
                            return Err(unsupported(
                                n,
                                format!("takes {n_in} features, the previous layer gives {prev}"),
                            ));
                        }
                        Some(_) => {}
                    }
                    sizes.push(n_out);
                    params.extend(w);
                    params.extend(b);
                    after_relu = false;
                }
                "Relu" if !after_relu && !sizes.is_empty() => after_relu = true,
                "Softmax" if !after_relu && !sizes.is_empty() => {
                    let axis = n.int_attr("axis", -1);
                    if axis != -1 && axis != 1 {
                        return Err(unsupported(n, format!("axis {axis} is not the last")));
                    }
                    if chain.next()?.is_some() {
                        return Err(unsupported(n, "Softmax is not the last node"));
                    }
                    break;
                }
                _ => return Err(unsupported(n, "not part of a Gemm/MatMul-Relu chain")),
            }
            node = chain.next()?;
        }
        if sizes.len() < 2 || after_relu {
            return Err(Error::UnsupportedModel(
                "the graph does not end with a dense layer (or a Softmax after one)".into(),
            ));
        }
        if let Some(i) = chain.used.iter().position(|u| !u) {
            return Err(unsupported(&g.nodes[i], "off the input-to-output chain"));
        }
        if g.outputs.len() != 1 || g.outputs[0].name != chain.cur {
            return Err(Error::UnsupportedModel(format!(
                "the graph outputs are not just the end of the chain, `{}`",
                chain.cur
            )));
        }
        let inputs = sizes[0];
        let declared: Option<Vec<usize>> = input.shape.as_ref().and_then(|s| {
            s.iter()
                .skip(1)
                .map(|d| match d {
                    Dim::Known(v) => Some(*v),
                    _ => None,
                })
                .collect()
        });
        let input_shape = declared
            .filter(|s| !s.is_empty() && s.iter().product::<usize>() == inputs)
            .unwrap_or_else(|| vec![inputs]);
        let (hidden, classes) = (&sizes[1..sizes.len() - 1], sizes[sizes.len() - 1]);
        let mut mlp = Mlp::new(&input_shape, hidden, classes, 0)
            .map_err(|e| Error::UnsupportedModel(e.to_string()))?;
        // the layer widths were taken from these parameters: the lengths agree
        mlp.params_mut().copy_from_slice(&params);
        mlp.set_standardization(standardization)
            .map_err(|e| Error::UnsupportedModel(format!("standardisation: {e}")))?;
        crate::error::check_finite(mlp.params(), "weights")?;
        Ok(mlp)
    }
}

/// One `Gemm`, or `MatMul` + the `Add` that follows it: `(W [out, in], b, in, out)`.
fn dense_layer(
    g: &Graph,
    n: &Node,
    chain: &mut Chain<'_>,
) -> Result<(Vec<f32>, Vec<f32>, usize, usize)> {
    let (shape, w) = constant(g, n, chain.operand(n)?)?;
    let [r, c] = *shape else {
        return Err(unsupported(
            n,
            format!("weight of shape {shape:?} is not 2-D"),
        ));
    };
    let (trans_b, bias) = if n.op_type == "Gemm" {
        if n.float_attr("alpha", 1.0) != 1.0
            || n.float_attr("beta", 1.0) != 1.0
            || n.int_attr("transA", 0) != 0
        {
            return Err(unsupported(
                n,
                "alpha, beta or transA other than the defaults",
            ));
        }
        let b = n.inputs.get(2).filter(|b| !b.is_empty());
        let b = b.ok_or_else(|| unsupported(n, "no bias"))?;
        (n.int_attr("transB", 0) != 0, (n, b.clone()))
    } else {
        let add = chain
            .next()?
            .filter(|a| a.op_type == "Add" && a.inputs.len() == 2)
            .ok_or_else(|| unsupported(n, "MatMul not followed by the Add of a bias"))?;
        let b = add.inputs.iter().find(|i| g.initializer(i).is_some());
        let b = b.ok_or_else(|| unsupported(add, "neither input is a constant bias"))?;
        (false, (add, b.clone()))
    };
    let (n_in, n_out) = if trans_b { (c, r) } else { (r, c) };
    let (b_shape, b) = constant(g, bias.0, &bias.1)?;
    if b.len() != n_out || b_shape.iter().product::<usize>() != n_out || b_shape.len() > 2 {
        return Err(unsupported(
            bias.0,
            format!("bias of shape {b_shape:?} for {n_out} outputs"),
        ));
    }
    let w = if trans_b {
        w
    } else {
        // [in, out] → [out, in]
        (0..n_out)
            .flat_map(|o| (0..n_in).map(move |i| (o, i)))
            .map(|(o, i)| w[i * n_out + o])
            .collect()
    };
    Ok((w, b, n_in, n_out))
}

//! Export of an [`Mlp`] to ONNX (`Flatten`, `Sub`/`Div`, `Gemm`, `Relu`).

use std::path::Path;

use edgeml_core::DType;
use edgeml_onnx::{Attribute, Dim, Graph, Model, Node, OpsetImport, Tensor, ValueInfo};
use ndarray::{ArrayD, IxDyn};

use crate::error::{Error, Result};
use crate::mlp::Mlp;

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

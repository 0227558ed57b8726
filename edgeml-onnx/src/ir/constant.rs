//! The value of a `Constant` node, whatever attribute form it uses.

use super::{Attribute, Node, Tensor};
use crate::{Error, Result};
use ndarray::{ArrayD, IxDyn};

impl Node {
    /// The value of a `Constant` node (default domain), or `None` for other nodes.
    ///
    /// Handles every attribute form of the operator: `value`, `sparse_value`
    /// (densified), `value_float`, `value_floats`, `value_int`, `value_ints`.
    /// `value_string(s)` is reported as unsupported (edgeml has no string tensors).
    ///
    /// # Errors
    /// [`Error::InvalidModel`] when the node does not have exactly one value attribute
    /// or it has the wrong kind; [`Error::Unsupported`] for string constants.
    pub fn constant_value(&self) -> Result<Option<Tensor>> {
        if self.op_type != "Constant" || !(self.domain.is_empty() || self.domain == "ai.onnx") {
            return Ok(None);
        }
        let bad = |m: &str| {
            Error::InvalidModel(format!("Constant node {:?}: {m}", self.name_or_output()))
        };
        let [(name, attr)] = self.attributes.as_slice() else {
            return Err(bad(&format!(
                "needs exactly one value attribute, has {}",
                self.attributes.len()
            )));
        };
        let t = match (name.as_str(), attr) {
            ("value", Attribute::Tensor(t)) => t.clone(),
            ("sparse_value", Attribute::SparseTensor(s)) => s.to_dense()?,
            ("value_float", Attribute::Float(f)) => Tensor::F32(ArrayD::from_elem(IxDyn(&[]), *f)),
            ("value_floats", Attribute::Floats(v)) => Tensor::F32(
                ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.clone())
                    .map_err(|e| bad(&e.to_string()))?,
            ),
            ("value_int", Attribute::Int(i)) => Tensor::I64(ArrayD::from_elem(IxDyn(&[]), *i)),
            ("value_ints", Attribute::Ints(v)) => Tensor::I64(
                ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.clone())
                    .map_err(|e| bad(&e.to_string()))?,
            ),
            ("value_string" | "value_strings", _) => {
                return Err(Error::Unsupported(format!(
                    "string Constant node {:?}",
                    self.name_or_output()
                )));
            }
            (n, _) => return Err(bad(&format!("unexpected attribute {n:?} or kind"))),
        };
        Ok(Some(t))
    }

    /// The node's name, or its first output when the name is empty (for messages).
    pub fn name_or_output(&self) -> &str {
        if self.name.is_empty() {
            self.outputs.first().map_or("", String::as_str)
        } else {
            &self.name
        }
    }
}

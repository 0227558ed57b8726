//! Shape rules of the recurrent layers (`RNN`, `GRU`, `LSTM`) and the element type of
//! the label output of `ai.onnx.ml` classifiers.

use super::typed;
use crate::{Attribute, Dim, InputType, Node};
use edgeml_core::DType;

/// The type of output `Y` of an `RNN`, `GRU` or `LSTM` node reading `x` (`[T, B, I]`,
/// or `[B, T, I]` with `layout = 1`): `[T, D, B, H]` (`[B, T, D, H]` with
/// `layout = 1`), `D` 2 for `bidirectional` layers and 1 otherwise, `H` the
/// `hidden_size` attribute.
pub(super) fn recurrent(node: &Node, x: Option<&InputType>) -> Option<InputType> {
    let x = x?;
    let dims = x.shape.as_ref()?;
    if dims.len() != 3 {
        return None;
    }
    let hidden = match node.attr("hidden_size") {
        Some(Attribute::Int(h)) => Dim::Known(usize::try_from(*h).ok()?),
        _ => return None,
    };
    let directions = match node.attr("direction") {
        Some(Attribute::String(s)) if s == b"bidirectional" => 2,
        Some(Attribute::String(s)) if s == b"forward" || s == b"reverse" => 1,
        None => 1,
        Some(_) => return None,
    };
    let d = Dim::Known(directions);
    let out = match node.attr("layout") {
        None | Some(Attribute::Int(0)) => vec![dims[0].clone(), d, dims[1].clone(), hidden],
        Some(Attribute::Int(1)) => vec![dims[0].clone(), dims[1].clone(), d, hidden],
        Some(_) => return None,
    };
    Some(typed(x.dtype, out))
}

/// The type of the label output (the first) of the `ai.onnx.ml` classifiers
/// (`LinearClassifier`, `SVMClassifier`, `TreeEnsembleClassifier`): `int64` when the
/// classes are given as integers (`classlabels_ints`, or `classlabels_int64s` for the
/// tree ensemble); its shape is left unknown.
pub(super) fn ml_label(node: &Node) -> Option<InputType> {
    let attr = match node.op_type.as_str() {
        "LinearClassifier" | "SVMClassifier" => "classlabels_ints",
        "TreeEnsembleClassifier" => "classlabels_int64s",
        _ => return None,
    };
    match node.attr(attr) {
        Some(Attribute::Ints(v)) if !v.is_empty() => Some(InputType {
            dtype: Some(DType::I64),
            shape: None,
        }),
        _ => None,
    }
}

//! Shape rules of the operators that make tensors from constant sizes
//! (`ConstantOfShape`, `Expand`, `Range`, `Tile`): knowing their output sizes before
//! running them lets the planner leave a huge one to run time instead of folding it,
//! and check it against the run's live-memory limit before it allocates.

use super::{broadcast, typed};
use crate::ops::util::to_i64_vec;
use crate::{Attribute, Dim, InputType, Node, Tensor};
use edgeml_core::DType;

/// The first output's type of `node` (whose operator is `op`), when it can be known.
pub(super) fn infer(
    node: &Node,
    op: &str,
    inputs: &[Option<InputType>],
    consts: &[Option<&Tensor>],
) -> Option<InputType> {
    let input = |i: usize| inputs.get(i).and_then(Option::as_ref);
    let shape = |i: usize| input(i).and_then(|t| t.shape.as_ref());
    let dtype = |i: usize| input(i).and_then(|t| t.dtype);
    let konst = |i: usize| consts.get(i).copied().flatten();
    match op {
        "ConstantOfShape" => {
            let dims = to_i64_vec(node, konst(0)?).ok()?;
            let dt = match node.attr("value") {
                Some(Attribute::Tensor(t)) => t.dtype(),
                _ => DType::F32,
            };
            let dims = dims
                .iter()
                .map(|&d| usize::try_from(d).ok().map(Dim::Known))
                .collect::<Option<Vec<_>>>()?;
            Some(typed(Some(dt), dims))
        }
        "Expand" => {
            let target: Vec<Dim> = to_i64_vec(node, konst(1)?)
                .ok()?
                .iter()
                .map(|&d| usize::try_from(d).ok().map(Dim::Known))
                .collect::<Option<_>>()?;
            let dims = broadcast(&[shape(0)?, &target])?;
            Some(typed(dtype(0), dims))
        }
        "Range" => {
            let (start, limit, delta) = (
                scalar_f64(konst(0)?)?,
                scalar_f64(konst(1)?)?,
                scalar_f64(konst(2)?)?,
            );
            let n = ((limit - start) / delta).ceil();
            if !n.is_finite() {
                return None;
            }
            // Saturating float-to-int: a hostile length stays huge, never wraps.
            Some(typed(dtype(0), vec![Dim::Known(n.max(0.0) as usize)]))
        }
        "Tile" => {
            let x = shape(0)?;
            let reps = to_i64_vec(node, konst(1)?).ok()?;
            if reps.len() != x.len() {
                return None;
            }
            let dims = x
                .iter()
                .zip(&reps)
                .map(|(d, &r)| match (d, usize::try_from(r).ok()?) {
                    (Dim::Known(k), r) => Some(Dim::Known(k.saturating_mul(r))),
                    (_, 1) => Some(d.clone()),
                    _ => Some(Dim::Unknown),
                })
                .collect::<Option<Vec<_>>>()?;
            Some(typed(dtype(0), dims))
        }
        _ => None,
    }
}

/// The value of a one-element numeric tensor.
fn scalar_f64(t: &Tensor) -> Option<f64> {
    if t.len() != 1 {
        return None;
    }
    match t {
        Tensor::F32(a) => a.iter().next().map(|&v| f64::from(v)),
        Tensor::F64(a) => a.iter().next().copied(),
        Tensor::I32(a) => a.iter().next().map(|&v| f64::from(v)),
        Tensor::I64(a) => a.iter().next().map(|&v| v as f64),
        Tensor::I16(a) => a.iter().next().map(|&v| f64::from(v)),
        _ => None,
    }
}

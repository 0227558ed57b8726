//! Plan-time shape inference.
//!
//! While planning, every node that is not folded away gets the element type and shape of
//! its outputs inferred from what is known about its inputs: exact shapes of constants,
//! the shapes the graph declares (`input`, `value_info`, `output`) and what earlier nodes
//! inferred. Symbolic dimensions (`"N"`) flow through unchanged and are bound when the
//! plan runs. The result feeds [`BuildContext::input_types`](crate::BuildContext) of the
//! next operators (kernel choice) and [`Plan::value_type`](crate::Plan::value_type).
//!
//! The rules follow the ONNX operator specifications, as `onnx.shape_inference` does, for
//! the operators that dominate real models: element-wise operators with numpy
//! broadcasting, activations, normalizations, `Conv`/`FusedConv`, pooling, `Gemm`,
//! `MatMul`, `Flatten`, `Reshape` with a constant shape, `ConstantOfShape` and `Expand`
//! with a constant shape, `Range` with constant bounds, `Tile` with constant repeats,
//! `Transpose`, `Concat`,
//! `Squeeze`/`Unsqueeze`, `Shape`, `Cast`, the `Y` output of `RNN`/`GRU`/`LSTM`, and the
//! element type of the label of `ai.onnx.ml` classifiers with integer classes. Where a dimension cannot be known before
//! the run it is [`Dim::Unknown`]; for other operators nothing is inferred. A declared
//! shape always wins over an inferred one. Inference never fails a plan: inputs that
//! contradict each other are left to the operator, which reports them when it runs.

mod recurrent;
mod sized;

use crate::ops::util::to_i64_vec;
use crate::{Attribute, Dim, InputType, Node, Tensor};
use edgeml_core::DType;

/// Operators whose first output has the type and shape of their first input.
const SAME_AS_INPUT: &[&str] = &[
    "Abs",
    "Acos",
    "Asin",
    "Atan",
    "BatchNormalization",
    "Celu",
    "Ceil",
    "Clip",
    "Cos",
    "Dropout",
    "Elu",
    "Erf",
    "Exp",
    "Floor",
    "Gelu",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "InstanceNormalization",
    "LayerNormalization",
    "LeakyRelu",
    "Log",
    "LogSoftmax",
    "LRN",
    "Mish",
    "Neg",
    "Not",
    "PRelu",
    "Reciprocal",
    "Relu",
    "Round",
    "Selu",
    "Sigmoid",
    "Sign",
    "Sin",
    "Softmax",
    "Softplus",
    "Softsign",
    "Sqrt",
    "Tan",
    "Tanh",
    "ThresholdedRelu",
];

/// Element-wise operators with multidirectional broadcasting.
const BROADCAST: &[&str] = &[
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Min", "Max", "Sum", "Mean",
];

/// Broadcasting comparisons and logic: boolean output.
const BROADCAST_BOOL: &[&str] = &[
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
];

/// The inferred type of each output of `node` (`None` where nothing is known).
///
/// `inputs` are the known types of the node's inputs and `consts` their values where
/// constant, both indexed like `node.inputs`.
pub(crate) fn infer(
    node: &Node,
    opset: i64,
    inputs: &[Option<InputType>],
    consts: &[Option<&Tensor>],
) -> Vec<Option<InputType>> {
    let mut out = vec![None; node.outputs.len()];
    if out.is_empty() {
        return out;
    }
    let domain = node.domain.as_str();
    let op = node.op_type.as_str();
    let first = if domain.is_empty() || domain == "ai.onnx" {
        infer_default(node, op, opset, inputs, consts)
    } else if domain == "com.microsoft" && op == "FusedConv" {
        conv_like(node, inputs, consts, true)
    } else if domain == "ai.onnx.ml" {
        recurrent::ml_label(node)
    } else {
        None
    };
    out[0] = first;
    out
}

fn infer_default(
    node: &Node,
    op: &str,
    opset: i64,
    inputs: &[Option<InputType>],
    consts: &[Option<&Tensor>],
) -> Option<InputType> {
    let input = |i: usize| inputs.get(i).and_then(Option::as_ref);
    let shape = |i: usize| input(i).and_then(|t| t.shape.as_ref());
    let dtype = |i: usize| input(i).and_then(|t| t.dtype);
    let konst = |i: usize| consts.get(i).copied().flatten();
    if SAME_AS_INPUT.contains(&op) {
        return input(0).cloned();
    }
    if BROADCAST.contains(&op) || BROADCAST_BOOL.contains(&op) || op == "Where" {
        let shapes: Option<Vec<&Vec<Dim>>> = (0..node.inputs.len()).map(shape).collect();
        let dims = broadcast(&shapes?)?;
        let dt = if BROADCAST_BOOL.contains(&op) {
            Some(DType::Bool)
        } else if op == "Where" {
            dtype(1)
        } else {
            dtype(0)
        };
        return Some(typed(dt, dims));
    }
    match op {
        "Cast" => {
            let to = match node.attr("to") {
                Some(Attribute::Int(c)) => i32::try_from(*c).ok().and_then(DType::from_onnx),
                _ => None,
            };
            Some(InputType {
                dtype: to,
                shape: shape(0).cloned(),
            })
        }
        "Conv" => conv_like(node, inputs, consts, true),
        "RNN" | "GRU" | "LSTM" => recurrent::recurrent(node, input(0)),
        "MaxPool" | "AveragePool" | "LpPool" => conv_like(node, inputs, consts, false),
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => {
            let x = shape(0)?;
            if x.len() < 3 {
                return None;
            }
            let mut dims = x[..2].to_vec();
            dims.resize(x.len(), Dim::Known(1));
            Some(typed(dtype(0), dims))
        }
        "Gemm" => {
            let (a, b) = (shape(0)?, shape(1)?);
            if a.len() != 2 || b.len() != 2 {
                return None;
            }
            let ta = node.int_attr("transA", 0) != 0;
            let tb = node.int_attr("transB", 0) != 0;
            let m = a[usize::from(ta)].clone();
            let n = b[usize::from(!tb)].clone();
            Some(typed(dtype(0), vec![m, n]))
        }
        "MatMul" => matmul(shape(0)?, shape(1)?).map(|d| typed(dtype(0), d)),
        "Flatten" => {
            let x = shape(0)?;
            let r = x.len() as i64;
            let mut axis = node.int_attr("axis", 1);
            if axis < 0 {
                axis += r;
            }
            if !(0..=r).contains(&axis) {
                return None;
            }
            let axis = axis as usize;
            Some(typed(
                dtype(0),
                vec![product(&x[..axis]), product(&x[axis..])],
            ))
        }
        "ConstantOfShape" | "Expand" | "Range" | "Tile" => sized::infer(node, op, inputs, consts),
        "Reshape" => {
            let target = to_i64_vec(node, konst(1)?).ok()?;
            let allowzero = opset >= 14 && node.int_attr("allowzero", 0) != 0;
            reshape(shape(0), &target, allowzero).map(|d| typed(dtype(0), d))
        }
        "Transpose" => {
            let x = shape(0)?;
            let perm: Vec<usize> = match node.attr("perm") {
                Some(Attribute::Ints(p)) => p
                    .iter()
                    .map(|&v| usize::try_from(v).ok())
                    .collect::<Option<_>>()?,
                _ => (0..x.len()).rev().collect(),
            };
            if perm.len() != x.len() {
                return None;
            }
            let dims = perm
                .iter()
                .map(|&p| x.get(p).cloned())
                .collect::<Option<_>>()?;
            Some(typed(dtype(0), dims))
        }
        "Concat" => {
            let shapes: Vec<&Vec<Dim>> =
                (0..node.inputs.len()).map(shape).collect::<Option<_>>()?;
            let r = shapes.first()?.len();
            if shapes.iter().any(|s| s.len() != r) {
                return None;
            }
            let axis = norm_axis(node.int_attr("axis", 0), r)?;
            let mut dims = shapes[0].clone();
            dims[axis] = shapes
                .iter()
                .try_fold(0usize, |acc, s| match s[axis] {
                    Dim::Known(v) => acc.checked_add(v),
                    _ => None,
                })
                .map_or(Dim::Unknown, Dim::Known);
            Some(typed(dtype(0), dims))
        }
        "Squeeze" | "Unsqueeze" => {
            let x = shape(0)?;
            let axes = if opset >= 13 {
                match konst(1) {
                    Some(t) => Some(to_i64_vec(node, t).ok()?),
                    None if node.inputs.len() > 1 && !node.inputs[1].is_empty() => return None,
                    None => None,
                }
            } else {
                match node.attr("axes") {
                    Some(Attribute::Ints(a)) => Some(a.clone()),
                    _ => None,
                }
            };
            let dims = if op == "Squeeze" {
                squeeze(x, axes.as_deref())?
            } else {
                unsqueeze(x, &axes?)?
            };
            Some(typed(dtype(0), dims))
        }
        "Shape" => {
            let r = shape(0)?.len() as i64;
            let clamp = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) };
            let start = clamp(node.int_attr("start", 0));
            let end = match node.attr("end") {
                Some(Attribute::Int(e)) => clamp(*e),
                _ => r,
            };
            Some(typed(
                Some(DType::I64),
                vec![Dim::Known((end - start).max(0) as usize)],
            ))
        }
        _ => None,
    }
}

pub(crate) fn typed(dtype: Option<DType>, dims: Vec<Dim>) -> InputType {
    InputType {
        dtype,
        shape: Some(dims),
    }
}

fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

/// The product of `dims`: known when all are; a single symbolic dimension times known
/// ones of product 1 stays that symbol (`[N, 1]` flattens to `N`).
fn product(dims: &[Dim]) -> Dim {
    let mut known = 1usize;
    let mut other = None;
    for d in dims {
        match d {
            Dim::Known(v) => match known.checked_mul(*v) {
                Some(k) => known = k,
                None => return Dim::Unknown,
            },
            d if other.is_none() => other = Some(d),
            _ => return Dim::Unknown,
        }
    }
    match other {
        None => Dim::Known(known),
        Some(d) if known == 1 => d.clone(),
        Some(_) => Dim::Unknown,
    }
}

/// One broadcast dimension; `None` when two known extents are incompatible.
fn broadcast_dim(a: &Dim, b: &Dim) -> Option<Dim> {
    Some(match (a, b) {
        (Dim::Known(1), other) | (other, Dim::Known(1)) => other.clone(),
        (Dim::Known(x), Dim::Known(y)) if x != y => return None,
        (x, y) if x == y => x.clone(),
        // A symbolic or unknown extent against a known one (> 1) must be 1 or equal.
        (Dim::Known(k), _) | (_, Dim::Known(k)) => Dim::Known(*k),
        _ => Dim::Unknown,
    })
}

/// numpy broadcasting of several shapes (right-aligned).
pub(crate) fn broadcast(shapes: &[&Vec<Dim>]) -> Option<Vec<Dim>> {
    let r = shapes.iter().map(|s| s.len()).max()?;
    let mut out = vec![Dim::Known(1); r];
    for s in shapes {
        let off = r - s.len();
        for (i, d) in s.iter().enumerate() {
            out[off + i] = broadcast_dim(&out[off + i], d)?;
        }
    }
    Some(out)
}

fn matmul(a: &[Dim], b: &[Dim]) -> Option<Vec<Dim>> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let a2: Vec<Dim> = if a.len() == 1 {
        vec![Dim::Known(1), a[0].clone()]
    } else {
        a.to_vec()
    };
    let b2: Vec<Dim> = if b.len() == 1 {
        vec![b[0].clone(), Dim::Known(1)]
    } else {
        b.to_vec()
    };
    let batch = broadcast(&[&a2[..a2.len() - 2].to_vec(), &b2[..b2.len() - 2].to_vec()])?;
    let mut out = batch;
    if a.len() > 1 {
        out.push(a2[a2.len() - 2].clone());
    }
    if b.len() > 1 {
        out.push(b2[b2.len() - 1].clone());
    }
    Some(out)
}

fn reshape(x: Option<&Vec<Dim>>, target: &[i64], allowzero: bool) -> Option<Vec<Dim>> {
    let mut dims = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &t) in target.iter().enumerate() {
        dims.push(match t {
            0 if !allowzero => x?.get(i)?.clone(),
            -1 => {
                if infer_at.replace(i).is_some() {
                    return None;
                }
                Dim::Unknown
            }
            t => Dim::Known(usize::try_from(t).ok()?),
        });
    }
    if let (Some(i), Some(x)) = (infer_at, x) {
        let others: Vec<Dim> = dims
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, d)| d.clone())
            .collect();
        if let (Dim::Known(total), Dim::Known(o)) = (product(x), product(&others))
            && o > 0
            && total % o == 0
        {
            dims[i] = Dim::Known(total / o);
        }
    }
    Some(dims)
}

fn squeeze(x: &[Dim], axes: Option<&[i64]>) -> Option<Vec<Dim>> {
    match axes {
        Some(axes) => {
            let axes: Vec<usize> = axes
                .iter()
                .map(|&a| norm_axis(a, x.len()))
                .collect::<Option<_>>()?;
            Some(
                x.iter()
                    .enumerate()
                    .filter(|(i, _)| !axes.contains(i))
                    .map(|(_, d)| d.clone())
                    .collect(),
            )
        }
        None => {
            // Without axes every extent-1 dimension goes; unknown extents make it unknowable.
            if x.iter().any(|d| !matches!(d, Dim::Known(_))) {
                return None;
            }
            Some(x.iter().filter(|d| **d != Dim::Known(1)).cloned().collect())
        }
    }
}

fn unsqueeze(x: &[Dim], axes: &[i64]) -> Option<Vec<Dim>> {
    let r = x.len() + axes.len();
    let mut axes: Vec<usize> = axes
        .iter()
        .map(|&a| norm_axis(a, r))
        .collect::<Option<_>>()?;
    axes.sort_unstable();
    axes.dedup();
    if axes.len() != r - x.len() {
        return None;
    }
    let mut src = x.iter();
    (0..r)
        .map(|i| {
            if axes.contains(&i) {
                Some(Dim::Known(1))
            } else {
                src.next().cloned()
            }
        })
        .collect()
}

/// `Conv`, `FusedConv` (`weights` = true: channels from `W`) and the windowed pools.
fn conv_like(
    node: &Node,
    inputs: &[Option<InputType>],
    consts: &[Option<&Tensor>],
    weights: bool,
) -> Option<InputType> {
    let xt = inputs.first()?.as_ref()?;
    let x = xt.shape.as_ref()?;
    if x.len() < 3 {
        return None;
    }
    let sp = x.len() - 2;
    let w_shape: Option<Vec<Dim>> = if weights {
        match consts.get(1).copied().flatten() {
            Some(w) => Some(w.shape().iter().map(|&d| Dim::Known(d)).collect()),
            None => inputs.get(1)?.as_ref()?.shape.clone(),
        }
    } else {
        None
    };
    let kernel: Vec<i64> = match node.ints_attr("kernel_shape").map(<[i64]>::to_vec) {
        Some(k) => k,
        None => w_shape
            .as_ref()?
            .get(2..)?
            .iter()
            .map(|d| match d {
                Dim::Known(v) => i64::try_from(*v).ok(),
                _ => None,
            })
            .collect::<Option<_>>()?,
    };
    if kernel.len() != sp {
        return None;
    }
    let strides = node
        .ints_attr("strides")
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| vec![1; sp]);
    let dil = node
        .ints_attr("dilations")
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| vec![1; sp]);
    let pads = node
        .ints_attr("pads")
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| vec![0; 2 * sp]);
    if strides.len() != sp || dil.len() != sp || pads.len() != 2 * sp {
        return None;
    }
    let auto_pad = match node.attr("auto_pad") {
        Some(Attribute::String(s)) => String::from_utf8_lossy(s).into_owned(),
        _ => "NOTSET".to_owned(),
    };
    let ceil = node.int_attr("ceil_mode", 0) != 0;
    let channels = if weights {
        w_shape.as_ref()?.first()?.clone()
    } else {
        x[1].clone()
    };
    let mut dims = vec![x[0].clone(), channels];
    for i in 0..sp {
        let Dim::Known(n) = x[2 + i] else {
            dims.push(Dim::Unknown);
            continue;
        };
        let n = i64::try_from(n).ok()?;
        let (s, d, k) = (strides[i], dil[i], kernel[i]);
        if s <= 0 || d <= 0 || k <= 0 {
            return None;
        }
        let dk = d.checked_mul(k - 1)?.checked_add(1)?;
        let o = match auto_pad.as_str() {
            "SAME_UPPER" | "SAME_LOWER" => (n + s - 1) / s,
            "VALID" => {
                if n < dk {
                    return None;
                }
                (n - dk) / s + 1
            }
            _ => {
                let (b, e) = (pads[i], pads[i + sp]);
                let span = n.checked_add(b)?.checked_add(e)?.checked_sub(dk)?;
                if span < 0 {
                    return None;
                }
                if ceil {
                    let mut o = (span + s - 1) / s + 1;
                    // The last window must start inside the input or the begin padding.
                    if (o - 1) * s >= n + b {
                        o -= 1;
                    }
                    o
                } else {
                    span / s + 1
                }
            }
        };
        dims.push(Dim::Known(usize::try_from(o).ok()?));
    }
    Some(typed(xt.dtype, dims))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(v: usize) -> Dim {
        Dim::Known(v)
    }

    #[test]
    fn broadcasting_rules() {
        let n = Dim::Symbolic("N".into());
        let a = vec![n.clone(), k(3), k(1)];
        let b = vec![k(4)];
        assert_eq!(broadcast(&[&a, &b]), Some(vec![n.clone(), k(3), k(4)]));
        assert_eq!(broadcast(&[&vec![k(2)], &vec![k(3)]]), None);
        assert_eq!(
            broadcast(&[&vec![n.clone()], &vec![k(5)]]),
            Some(vec![k(5)])
        );
        assert_eq!(
            broadcast(&[&vec![n.clone()], &vec![Dim::Symbolic("M".into())]]),
            Some(vec![Dim::Unknown])
        );
    }

    #[test]
    fn matmul_and_reshape() {
        assert_eq!(
            matmul(&[k(2), k(1), k(3), k(4)], &[k(5), k(4), k(6)]),
            Some(vec![k(2), k(5), k(3), k(6)])
        );
        assert_eq!(matmul(&[k(4)], &[k(4), k(6)]), Some(vec![k(6)]));
        assert_eq!(matmul(&[k(3), k(4)], &[k(4)]), Some(vec![k(3)]));
        let x = vec![k(2), k(3), k(4)];
        assert_eq!(reshape(Some(&x), &[0, -1], false), Some(vec![k(2), k(12)]));
        assert_eq!(reshape(Some(&x), &[-1, -1], false), None);
        let xs = vec![Dim::Symbolic("N".into()), k(12)];
        assert_eq!(
            reshape(Some(&xs), &[0, 3, -1], false),
            Some(vec![Dim::Symbolic("N".into()), k(3), Dim::Unknown])
        );
    }

    #[test]
    fn squeeze_unsqueeze() {
        assert_eq!(squeeze(&[k(1), k(3), k(1)], None), Some(vec![k(3)]));
        assert_eq!(
            squeeze(&[k(1), k(3), k(1)], Some(&[-1])),
            Some(vec![k(1), k(3)])
        );
        assert_eq!(
            unsqueeze(&[k(3), k(4)], &[0, -1]),
            Some(vec![k(1), k(3), k(4), k(1)])
        );
        assert_eq!(unsqueeze(&[k(3)], &[0, 0]), None);
    }
}

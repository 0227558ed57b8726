//! `MatMul` + constant bias `Add` → `Gemm`.

use super::{OfConstant, Pass, default_domain, of_constant};
use crate::{Dim, InputType, Model, Node, Result};
use std::collections::HashMap;

/// Rewrites `Add(MatMul(A, B), C)` into `Gemm(A, B, C)` (`alpha = beta = 1`, no
/// transposes) when:
/// - `A` is 2-D (written by a `Gemm` or `Flatten`, or so declared or inferred, see
///   [`super::infer_value_types`]) and `B` is a constant 2-D `f32` tensor, so that
///   `A·B` is the `[M, N]` product `Gemm` computes;
/// - `C` (either operand of the `Add`) is a constant `f32` tensor broadcast along the
///   last axis only: shape `[]`, `[1]`, `[N]`, `[1, 1]` or `[1, N]`, so the `Add`'s
///   output is `[M, N]` too and `Gemm`'s unidirectional broadcast of `C` gives the same
///   sum;
/// - the product is read by the `Add` alone and is not a graph output, and the
///   model's default opset is 7 or later (`Gemm` with a broadcast `C`).
///
/// The `Gemm` writes the `Add`'s output and reads `C` itself (no copy). Exact:
/// `Gemm` computes the same `A·B + C`; edgeml's `Gemm` adds `C` to the finished
/// product, as the `Add` did (runtimes that accumulate onto `C` may round the last
/// bit differently). What onnxruntime's `MatMulAddFusion` and onnxslim do for the
/// `Linear` layers that converters write as two nodes; a following
/// `BatchNormalization` can then be folded too ([`super::FoldBatchNorm`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct FuseMatMulAdd;

impl Pass for FuseMatMulAdd {
    fn name(&self) -> &'static str {
        "fuse-matmul-add"
    }

    fn run(&self, model: &mut Model) -> Result<usize> {
        if model.opset("").unwrap_or(0) < 7 {
            return Ok(0);
        }
        let mut types: Option<HashMap<String, InputType>> = None;
        let mut done = 0;
        let mut k = 0;
        while k < model.graph.nodes.len() {
            let Some((p, gemm)) = rewrite(model, k, &mut types) else {
                k += 1;
                continue;
            };
            model.graph.replace_node(k, gemm)?;
            model.graph.remove_node(p)?;
            done += 1;
        }
        Ok(done)
    }
}

/// For `Add` node `k`: the index of the `MatMul` it fuses with and the `Gemm` that
/// replaces the `Add`; `None` when the rewrite does not apply.
fn rewrite(
    model: &Model,
    k: usize,
    types: &mut Option<HashMap<String, InputType>>,
) -> Option<(usize, Node)> {
    let OfConstant {
        producer: p,
        constant: c,
        consts,
    } = of_constant(model, k, "Add", "MatMul")?;
    let (add, mm) = (&model.graph.nodes[k], &model.graph.nodes[p]);
    if mm.inputs.len() != 2 {
        return None;
    }
    let b = consts.get(mm.inputs[1].as_str())?.as_f32()?;
    let cv = consts.get(c)?.as_f32()?;
    let n = *b.shape().get(1)?;
    let last_ok = |d: usize| d == 1 || d == n;
    let c_ok = match cv.shape() {
        [] => true,
        [d] => last_ok(*d),
        [1, d] => last_ok(*d),
        _ => false,
    };
    if b.ndim() != 2 || !c_ok || !rank2(model, &mm.inputs[0], types) {
        return None;
    }
    let gemm = Node::new(
        "Gemm",
        &[mm.inputs[0].as_str(), mm.inputs[1].as_str(), c],
        &[add.outputs[0].as_str()],
    )
    .with_name(&add.name);
    Some((p, gemm))
}

/// Whether `v` is 2-D: written by a `Gemm` or `Flatten` (always 2-D), else as
/// declared or inferred (inference runs once, on the first question).
fn rank2(model: &Model, v: &str, types: &mut Option<HashMap<String, InputType>>) -> bool {
    let by_op = model.graph.nodes.iter().any(|n| {
        default_domain(n)
            && matches!(n.op_type.as_str(), "Gemm" | "Flatten")
            && n.outputs.first().is_some_and(|o| o == v)
    });
    if by_op {
        return true;
    }
    let t = types.get_or_insert_with(|| super::infer_value_types(model).unwrap_or_default());
    t.get(v)
        .and_then(|t| t.shape.as_ref())
        .is_some_and(|s: &Vec<Dim>| s.len() == 2)
}

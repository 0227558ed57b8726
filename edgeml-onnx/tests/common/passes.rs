//! Helpers of the pass tests (`tests/passes.rs`, `tests/passes_bn.rs`).

use edgeml_core::DType;
use edgeml_onnx::{
    Attribute, Dim, GraphOptLevel, Model, ModelBuilder, Node, Plan, PlanOptions, Tensor, ValueInfo,
};
use ndarray::{ArrayD, IxDyn};
use std::collections::BTreeMap;

/// Deterministic values in [lo, lo + span).
pub(crate) fn f32s(shape: &[usize], seed: u32, lo: f32, span: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n as u32)
        .map(|i| {
            let h = i
                .wrapping_add(seed.wrapping_mul(7919))
                .wrapping_mul(2654435761)
                >> 8;
            lo + span * (h % 10007) as f32 / 10007.0
        })
        .collect();
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape"))
}

pub(crate) fn vi(name: &str, shape: &[usize]) -> ValueInfo {
    ValueInfo::tensor(
        name,
        DType::F32,
        shape.iter().map(|&d| Dim::from(d)).collect(),
    )
}

pub(crate) fn unoptimized(m: &Model, inputs: &[(&str, Tensor)]) -> Vec<(String, Tensor)> {
    let mut o = PlanOptions::with_threads(1);
    o.optimization = GraphOptLevel::Disabled;
    o.no_constant_folding = true;
    Plan::new(m, o).expect("plan").run(inputs).expect("run")
}

pub(crate) fn assert_close(got: &[(String, Tensor)], want: &[(String, Tensor)], rtol: f32) {
    assert_eq!(got.len(), want.len());
    for ((gn, g), (wn, w)) in got.iter().zip(want) {
        assert_eq!(gn, wn);
        assert_eq!(g.shape(), w.shape(), "{gn}");
        match (g.as_f32(), w.as_f32()) {
            (Some(g), Some(w)) => {
                for (a, b) in g.iter().zip(w) {
                    assert!((a - b).abs() <= rtol * b.abs().max(1.0), "{gn}: {a} vs {b}");
                }
            }
            // Other element types must be equal.
            _ => assert_eq!(g, w, "{gn}"),
        }
    }
}

pub(crate) fn ops(m: &Model) -> BTreeMap<String, usize> {
    let mut h = BTreeMap::new();
    for n in &m.graph.nodes {
        *h.entry(n.op_type.clone()).or_default() += 1;
    }
    h
}

/// BatchNormalization parameters for `c` channels (variance positive).
pub(crate) fn bn_params(b: ModelBuilder, c: usize, seed: u32) -> ModelBuilder {
    b.initializer("s", f32s(&[c], seed, 0.5, 1.0))
        .initializer("beta", f32s(&[c], seed + 1, -1.0, 2.0))
        .initializer("mean", f32s(&[c], seed + 2, -0.5, 1.0))
        .initializer("var", f32s(&[c], seed + 3, 0.1, 2.0))
}

pub(crate) fn bn(x: &str, y: &str) -> Node {
    Node::new("BatchNormalization", &[x, "s", "beta", "mean", "var"], &[y])
        .with_attr("epsilon", Attribute::Float(1e-3))
}

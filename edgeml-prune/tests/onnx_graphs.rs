//! Channel removal on small graphs built in code: through BatchNormalization and
//! activations (removal gives the same outputs as zeroing), and the cases left zeroed.
#![cfg(feature = "onnx")]

use edgeml_onnx::{Attribute, Dim, Model, Node, Plan, PlanOptions, Tensor, ValueInfo};
use edgeml_prune::pattern::Norm;
use edgeml_prune::{Pattern, PruneConfig, prune_model};
use ndarray::ArrayD;

fn tensor(shape: &[usize], seed: u32) -> Tensor {
    let n: usize = shape.iter().product();
    // A small deterministic generator: distinct magnitudes, both signs.
    let v = (0..n)
        .map(|i| {
            let h = (i as u32 ^ seed).wrapping_mul(2_654_435_761) >> 8;
            (h % 2001) as f32 / 1000.0 - 1.0
        })
        .collect();
    Tensor::F32(ArrayD::from_shape_vec(shape, v).expect("shape"))
}

fn node(op: &str, inputs: &[&str], out: &str, attrs: Vec<(&str, Attribute)>) -> Node {
    Node {
        op_type: op.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: vec![out.into()],
        attributes: attrs.into_iter().map(|(k, a)| (k.to_string(), a)).collect(),
        ..Node::default()
    }
}

fn value(name: &str, shape: &[usize]) -> ValueInfo {
    ValueInfo {
        name: name.into(),
        dtype: Some(edgeml_core::DType::F32),
        shape: Some(shape.iter().map(|&d| Dim::Known(d)).collect()),
        doc_string: String::new(),
    }
}

fn pads() -> Vec<(&'static str, Attribute)> {
    vec![("pads", Attribute::Ints(vec![1, 1, 1, 1]))]
}

/// x[1,2,6,6] → Conv(4, 3x3) → BN → Relu → Conv(3, 3x3) → y; `residual` adds x2 (a
/// second input [1,4,6,6]) after the Relu instead of nothing.
fn model(residual: bool) -> Model {
    let mut m = Model::default();
    let g = &mut m.graph;
    g.inputs.push(value("x", &[1, 2, 6, 6]));
    g.outputs.push(value("y", &[1, 3, 6, 6]));
    for (name, shape, seed) in [
        ("w1", &[4, 2, 3, 3][..], 1),
        ("b1", &[4], 2),
        ("w2", &[3, 4, 3, 3], 3),
    ] {
        g.initializers.push((name.into(), tensor(shape, seed)));
    }
    let ones = Tensor::F32(ArrayD::from_elem(vec![4], 1.0));
    g.initializers.push(("scale".into(), tensor(&[4], 4)));
    // mean 0 and bias 0: a zeroed channel (output = its conv bias) is scaled, not shifted.
    g.initializers
        .push(("bn_b".into(), Tensor::F32(ArrayD::zeros(vec![4]))));
    g.initializers
        .push(("mean".into(), Tensor::F32(ArrayD::zeros(vec![4]))));
    g.initializers.push(("var".into(), ones));
    g.nodes = vec![
        node("Conv", &["x", "w1", "b1"], "c1", pads()),
        node(
            "BatchNormalization",
            &["c1", "scale", "bn_b", "mean", "var"],
            "n1",
            vec![],
        ),
        node("Relu", &["n1"], "r1", vec![]),
    ];
    let mut last = "r1";
    if residual {
        g.inputs.push(value("x2", &[1, 4, 6, 6]));
        g.nodes.push(node("Add", &["r1", "x2"], "s1", vec![]));
        last = "s1";
    }
    g.nodes.push(node("Conv", &[last, "w2"], "y", pads()));
    m.opset_imports.push(edgeml_onnx::OpsetImport {
        domain: String::new(),
        version: 13,
    });
    m.ir_version = 8;
    m
}

fn run(m: &Model) -> ArrayD<f32> {
    let plan = Plan::new(m, PlanOptions::with_threads(1)).expect("plan");
    let mut inputs = vec![("x", tensor(&[1, 2, 6, 6], 9))];
    if m.graph.inputs.len() > 1 {
        inputs.push(("x2", tensor(&[1, 4, 6, 6], 10)));
    }
    let out = plan.run(&inputs).expect("run");
    out[0].1.as_f32().expect("f32").clone()
}

fn channels(remove: bool) -> PruneConfig {
    PruneConfig {
        sparsity: 0.5,
        pattern: Pattern::Channels {
            axis: 0,
            norm: Norm::L2,
        },
        remove_channels: remove,
        ..PruneConfig::default()
    }
}

#[test]
fn removal_through_batchnorm_matches_zeroing_when_biases_vanish() {
    let mut zeroed = model(false);
    // Without a conv bias a zeroed channel is exactly 0 after BN (mean 0, bias 0) and
    // Relu, so removing it must not change the output.
    zeroed.graph.nodes[0].inputs.truncate(2);
    let mut removed = zeroed.clone();
    prune_model(&mut zeroed, &channels(false)).expect("prune");
    let r = prune_model(&mut removed, &channels(true)).expect("prune");
    assert_eq!(r.layers.len(), 1, "the last conv is skipped");
    assert_eq!(r.layers[0].channels_removed, 2, "{r:?}");
    for (name, shape) in [
        ("w1", &[2, 2, 3, 3][..]),
        ("scale", &[2]),
        ("var", &[2]),
        ("w2", &[3, 2, 3, 3]),
    ] {
        assert_eq!(
            removed.graph.initializer(name).map(Tensor::shape),
            Some(shape),
            "{name}"
        );
    }
    let (a, b) = (run(&zeroed), run(&removed));
    assert_eq!(a.shape(), b.shape());
    for (x, y) in a.iter().zip(b.iter()) {
        assert!((x - y).abs() <= 1e-5 * (1.0 + x.abs()), "{x} vs {y}");
    }
    // And the saved model reloads and runs the same.
    let back = Model::from_bytes(&removed.to_bytes().expect("encode")).expect("reload");
    assert_eq!(run(&back), b);
}

#[test]
fn residual_add_keeps_channels_zeroed_and_says_why() {
    let orig = model(true);
    let mut m = orig.clone();
    let r = prune_model(&mut m, &channels(true)).expect("prune");
    let l = &r.layers[0];
    assert_eq!(l.channels_removed, 0);
    assert_eq!(l.shape_after, [4, 2, 3, 3]);
    assert_eq!(l.nonzero_after, 36);
    let note = l.note.as_deref().expect("a note");
    assert!(note.contains("residual"), "{note}");
    assert_eq!(
        m.graph.initializer("w2").map(Tensor::shape),
        Some(&[3, 4, 3, 3][..])
    );
    assert_eq!(run(&m).shape(), run(&orig).shape());
}

#[test]
fn grouped_conv_and_sparse_storage() {
    let mut m = model(false);
    m.graph.nodes[0]
        .attributes
        .push(("group".into(), Attribute::Int(2)));
    if let Some((_, t)) = m.graph.initializers.iter_mut().find(|(n, _)| n == "w1") {
        *t = tensor(&[4, 1, 3, 3], 1);
    }
    let r = prune_model(&mut m, &channels(true)).expect("prune");
    assert!(
        r.layers[0]
            .note
            .as_deref()
            .is_some_and(|n| n.contains("grouped")),
        "{r:?}"
    );
    // 90% unstructured with sparse storage: both convs saved as sparse_initializer.
    let mut m = model(false);
    let cfg = PruneConfig {
        sparsity: 0.9,
        sparse_storage: true,
        ..PruneConfig::default()
    };
    let r = prune_model(&mut m, &cfg).expect("prune");
    assert_eq!(m.graph.extras.sparse_initializers, ["w1", "w2"]);
    assert!(r.model_bytes_after < r.model_bytes_before / 2, "{r:?}");
    let back = Model::from_bytes(&m.to_bytes().expect("encode")).expect("reload");
    assert_eq!(run(&back), run(&m));
}

#[test]
fn an_initializer_that_is_also_a_graph_input_is_not_sliced() {
    let mut m = model(false);
    m.graph.inputs.push(value("scale", &[4]));
    let r = prune_model(&mut m, &channels(true)).expect("prune");
    assert_eq!(r.layers[0].channels_removed, 0);
    let note = r.layers[0].note.as_deref().expect("a note");
    assert!(note.contains("`scale`"), "{note}");
    assert_eq!(
        m.graph.initializer("scale").map(Tensor::shape),
        Some(&[4][..])
    );
}

#[test]
fn biases_are_folded_into_an_unpadded_next_conv_and_dropped_before_a_padded_one() {
    // Conv biases, BN with non-zero mean and bias: removed channels output a non-zero
    // constant after Relu.
    let mut base = model(false);
    for (name, seed) in [("bn_b", 5), ("mean", 6)] {
        if let Some((_, t)) = base.graph.initializers.iter_mut().find(|(n, _)| n == name) {
            *t = tensor(&[4], seed);
        }
    }
    let padded = base.clone();
    base.graph.nodes[3].attributes.clear();
    base.graph.outputs[0] = value("y", &[1, 3, 4, 4]);
    let (mut zeroed, mut removed) = (base.clone(), base);
    prune_model(&mut zeroed, &channels(false)).expect("prune");
    let r = prune_model(&mut removed, &channels(true)).expect("prune");
    assert_eq!(r.layers[0].channels_removed, 2);
    assert!(r.layers[0].note.is_none(), "{:?}", r.layers[0].note);
    // The second conv had no bias: one was added.
    assert_eq!(removed.graph.nodes[3].inputs.len(), 3);
    let (a, b) = (run(&zeroed), run(&removed));
    assert!(a.iter().any(|x| *x != 0.0));
    for (x, y) in a.iter().zip(b.iter()) {
        assert!((x - y).abs() <= 1e-5 * (1.0 + x.abs()), "{x} vs {y}");
    }
    // With padding the constant is not uniform at the borders: removed, noted.
    let mut m = padded;
    let r = prune_model(&mut m, &channels(true)).expect("prune");
    assert_eq!(r.layers[0].channels_removed, 2);
    let note = r.layers[0].note.as_deref().expect("a note");
    assert!(note.contains("dropped") && note.contains("pads"), "{note}");
}

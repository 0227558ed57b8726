//! Common-subexpression elimination, `Transpose`/`Reshape` simplification and
//! `MatMul` + `Add` → `Gemm`: structure of the rewritten graph, and our `Plan` gives the
//! original outputs.

use crate::common::passes::{f32s, ops, unoptimized, vi};
use edgeml_core::DType;
use edgeml_onnx::passes::{
    EliminateCommonSubexpressions, EliminateIdentity, FuseMatMulAdd, MergeReshapes, OptimizeLevel,
    Pass, Pipeline, TransposeToReshape, infer_value_types,
};
use edgeml_onnx::{Attribute, Dim, Model, ModelBuilder, Node, Tensor, ValueInfo};
use ndarray::{ArrayD, IxDyn};
use std::collections::BTreeMap;

fn basic(m: &Model) -> Model {
    let mut opt = m.clone();
    Pipeline::for_level(OptimizeLevel::Basic)
        .run(&mut opt)
        .expect("optimize");
    let again = opt.clone();
    let r = Pipeline::for_level(OptimizeLevel::Basic)
        .run(&mut opt)
        .expect("optimize");
    assert_eq!(r.total(), 0, "idempotent: {r:?}");
    assert_eq!(opt, again);
    opt
}

fn i64s(v: &[i64]) -> Tensor {
    Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).expect("shape"))
}

fn conv(x: &str, w: &str, y: &str) -> Node {
    Node::new("Conv", &[x, w], &[y])
        .with_attr("kernel_shape", Attribute::Ints(vec![1, 1]))
        .with_attr("strides", Attribute::Ints(vec![1, 1]))
}

#[test]
fn duplicate_constants_and_nodes_merge_into_the_first() {
    let w = f32s(&[3, 2, 1, 1], 1, -1.0, 2.0);
    // The same values but one zero's sign: a different constant.
    let mut signed = w.as_f32().expect("f32").clone();
    signed[[0, 0, 0, 0]] = 0.0;
    let mut negzero = signed.clone();
    negzero[[0, 0, 0, 0]] = -0.0;
    let m = ModelBuilder::new(13)
        .input(vi("x", &[1, 2, 4, 4]))
        .initializer("w1", w.clone())
        .initializer("w2", w)
        .initializer("z1", Tensor::F32(signed))
        .initializer("z2", Tensor::F32(negzero))
        .node(conv("x", "w1", "c1"))
        .node(Node::new("Relu", &["c1"], &["r1"]))
        // Same operator, equal weights, attributes in another order: merged, and the
        // Relu after it too.
        .node(
            Node::new("Conv", &["x", "w2"], &["c2"])
                .with_attr("strides", Attribute::Ints(vec![1, 1]))
                .with_attr("kernel_shape", Attribute::Ints(vec![1, 1])),
        )
        .node(Node::new("Relu", &["c2"], &["r2"]))
        // Another attribute value: kept.
        .node(
            Node::new("Conv", &["x", "w1"], &["c3"])
                .with_attr("kernel_shape", Attribute::Ints(vec![1, 1]))
                .with_attr("strides", Attribute::Ints(vec![2, 2]))
                .with_attr("pads", Attribute::Ints(vec![0, 0, 1, 1])),
        )
        // 0.0 and -0.0 weights: kept apart.
        .node(conv("x", "z1", "c4"))
        .node(conv("x", "z2", "c5"))
        .node(
            Node::new("Concat", &["r1", "r2", "c4", "c5"], &["y"])
                .with_attr("axis", Attribute::Int(1)),
        )
        // A duplicate that is a graph output keeps its name: kept.
        .node(Node::new("Relu", &["c1"], &["r_out"]))
        .output(ValueInfo::named("y"))
        .output(ValueInfo::named("c3"))
        .output(ValueInfo::named("r_out"))
        .build()
        .expect("model");
    let x = f32s(&[1, 2, 4, 4], 2, -1.0, 2.0);
    let want = unoptimized(&m, &[("x", x.clone())]);
    let mut one = m.clone();
    assert_eq!(EliminateCommonSubexpressions.run(&mut one).expect("cse"), 3);
    let opt = basic(&m);
    assert_eq!(
        ops(&opt),
        BTreeMap::from([
            ("Concat".to_owned(), 1),
            ("Conv".to_owned(), 4),
            ("Relu".to_owned(), 2)
        ])
    );
    let concat = opt
        .graph
        .nodes
        .iter()
        .find(|n| n.op_type == "Concat")
        .expect("concat");
    assert_eq!(concat.inputs, ["r1", "r1", "c4", "c5"]);
    assert!(opt.graph.initializer("w2").is_none(), "the copy is dead");
    assert!(opt.graph.initializer("z2").is_some(), "-0.0 is not 0.0");
    assert_eq!(unoptimized(&opt, &[("x", x)]), want);
}

#[test]
fn random_operators_and_training_dropout_never_merge() {
    let t = Tensor::Bool(ArrayD::from_elem(IxDyn(&[]), true));
    let m = ModelBuilder::new(13)
        .input(vi("x", &[2, 3]))
        .initializer("train", t)
        .node(Node::new("RandomUniformLike", &["x"], &["u1"]))
        .node(Node::new("RandomUniformLike", &["x"], &["u2"]))
        .node(Node::new("Dropout", &["x", "", "train"], &["d1"]))
        .node(Node::new("Dropout", &["x", "", "train"], &["d2"]))
        .node(Node::new("Sum", &["u1", "u2", "d1", "d2"], &["y"]))
        .output(ValueInfo::named("y"))
        .build()
        .expect("model");
    let mut opt = m.clone();
    assert_eq!(EliminateCommonSubexpressions.run(&mut opt).expect("cse"), 0);
    assert_eq!(opt, m);
}

#[test]
fn transposes_of_unit_axes_become_reshapes_and_reshape_chains_collapse() {
    let t = |x: &str, y: &str, p: &[i64]| {
        Node::new("Transpose", &[x], &[y]).with_attr("perm", Attribute::Ints(p.to_vec()))
    };
    // What paddle2onnx writes around an LSTM at batch 1: [1, 4, 6] → [4, 1, 6] →
    // reshape with a copied extent → back to [1, 4, 6]; and a real transpose.
    let m = ModelBuilder::new(13)
        .input(vi("x", &[1, 4, 6]))
        .initializer("keep", i64s(&[0, 0, -1]))
        .node(t("x", "t1", &[1, 0, 2]))
        .node(Node::new("Reshape", &["t1", "keep"], &["r"]))
        .node(t("r", "t2", &[1, 0, 2]))
        .node(Node::new("Relu", &["t2"], &["a"]))
        .node(t("a", "y", &[0, 2, 1]))
        .output(ValueInfo::named("y"))
        .build()
        .expect("model");
    let x = f32s(&[1, 4, 6], 3, -1.0, 2.0);
    let want = unoptimized(&m, &[("x", x.clone())]);
    let mut step = m.clone();
    assert_eq!(TransposeToReshape.run(&mut step).expect("pass"), 2);
    let kinds: Vec<&str> = step
        .graph
        .nodes
        .iter()
        .map(|n| n.op_type.as_str())
        .collect();
    assert_eq!(
        kinds,
        ["Reshape", "Reshape", "Reshape", "Relu", "Transpose"]
    );
    let target = |m: &Model, k: usize| {
        m.graph
            .initializer(&m.graph.nodes[k].inputs[1])
            .and_then(Tensor::as_i64)
            .map(|a| a.iter().copied().collect::<Vec<i64>>())
    };
    assert_eq!(target(&step, 0), Some(vec![4, 1, 6]));
    assert_eq!(target(&step, 2), Some(vec![1, 4, 6]));
    assert_eq!(unoptimized(&step, &[("x", x.clone())]), want);
    // The middle Reshape (its target copies extents: not merged) keeps its input's
    // shape: an Identity.
    assert_eq!(MergeReshapes.run(&mut step).expect("pass"), 1);
    assert_eq!(step.graph.nodes[1].op_type, "Identity");
    assert_eq!(EliminateIdentity.run(&mut step).expect("pass"), 1);
    // Then the last Reshape reads x itself.
    assert_eq!(MergeReshapes.run(&mut step).expect("pass"), 1);
    assert_eq!(step.graph.nodes[1].inputs[0], "x");
    assert_eq!(unoptimized(&step, &[("x", x.clone())]), want);

    let opt = basic(&m);
    let kinds: Vec<&str> = opt.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(kinds, ["Relu", "Transpose"]);
    assert_eq!(opt.graph.nodes[0].inputs, ["x"]);
    assert_eq!(unoptimized(&opt, &[("x", x)]), want);
}

#[test]
fn a_symbolic_extent_becomes_minus_one_and_unknown_shapes_stay() {
    let build = |dims: Vec<Dim>| {
        ModelBuilder::new(13)
            .input(ValueInfo::tensor("x", DType::F32, dims))
            .node(
                Node::new("Transpose", &["x"], &["y"])
                    .with_attr("perm", Attribute::Ints(vec![1, 0, 2])),
            )
            .output(ValueInfo::named("y"))
            .build()
            .expect("model")
    };
    let mut m = build(vec!["N".into(), 1.into(), 6.into()]);
    let x = f32s(&[3, 1, 6], 4, -1.0, 2.0);
    let want = unoptimized(&m, &[("x", x.clone())]);
    assert_eq!(TransposeToReshape.run(&mut m).expect("pass"), 1);
    let shape = m
        .graph
        .initializer(&m.graph.nodes[0].inputs[1])
        .expect("target");
    assert_eq!(shape, &i64s(&[1, -1, 6]));
    assert_eq!(unoptimized(&m, &[("x", x)]), want);
    // Two extents that may be anything: which axes move is not known.
    for dims in [
        vec!["N".into(), "C".into(), 6.into()],
        vec![2.into(), 3.into(), 6.into()],
    ] {
        let mut m = build(dims);
        let before = m.clone();
        assert_eq!(TransposeToReshape.run(&mut m).expect("pass"), 0);
        assert_eq!(m, before);
    }
}

/// `MatMul(a, w) + bias` with the bias shape `bias` (on the left when `left`).
fn linear(a: &[usize], bias: &[usize], left: bool) -> Model {
    let add = if left { ["b", "m"] } else { ["m", "b"] };
    ModelBuilder::new(13)
        .input(vi("a", a))
        .initializer("w", f32s(&[4, 5], 1, -1.0, 2.0))
        .initializer("b", f32s(bias, 2, -1.0, 2.0))
        .node(Node::new("MatMul", &["a", "w"], &["m"]))
        .node(Node::new("Add", &add, &["y"]))
        .output(ValueInfo::named("y"))
        .build()
        .expect("model")
}

#[test]
fn matmul_and_bias_add_become_gemm_with_the_same_outputs() {
    for (bias, left) in [
        (&[5][..], false),
        (&[1, 5], true),
        (&[1], false),
        (&[], true),
    ] {
        let m = linear(&[3, 4], bias, left);
        let a = f32s(&[3, 4], 5, -1.0, 2.0);
        let want = unoptimized(&m, &[("a", a.clone())]);
        let mut opt = m.clone();
        assert_eq!(FuseMatMulAdd.run(&mut opt).expect("pass"), 1, "{bias:?}");
        assert_eq!(ops(&opt), BTreeMap::from([("Gemm".to_owned(), 1)]));
        let g = &opt.graph.nodes[0];
        assert_eq!(
            (g.inputs.as_slice(), g.outputs.as_slice()),
            (
                &["a".to_owned(), "w".to_owned(), "b".to_owned()][..],
                &["y".to_owned()][..]
            )
        );
        assert!(g.attributes.is_empty(), "alpha = beta = 1, no transposes");
        assert_eq!(unoptimized(&opt, &[("a", a)]), want, "{bias:?}");
        assert_eq!(ops(&basic(&m)), BTreeMap::from([("Gemm".to_owned(), 1)]));
    }
}

#[test]
fn matmul_add_stays_when_gemm_would_differ() {
    // A 3-D product; a bias along the rows; a product read twice.
    let three_d = linear(&[2, 3, 4], &[5], false);
    let rows = linear(&[3, 4], &[3, 1], false);
    let mut shared = linear(&[3, 4], &[5], false);
    shared.graph.outputs.push(ValueInfo::named("m"));
    for m in [three_d, rows, shared] {
        let mut opt = m.clone();
        assert_eq!(FuseMatMulAdd.run(&mut opt).expect("pass"), 0);
        assert_eq!(opt, m);
    }
}

#[test]
fn recurrent_outputs_and_integer_class_labels_are_typed() {
    let m = ModelBuilder::new(13)
        .opset("ai.onnx.ml", 1)
        .input(vi("x", &[7, 1, 3]))
        .initializer("w", f32s(&[2, 8, 3], 1, -1.0, 2.0))
        .initializer("r", f32s(&[2, 8, 2], 2, -1.0, 2.0))
        .node(
            Node::new("LSTM", &["x", "w", "r"], &["seq"])
                .with_attr("hidden_size", Attribute::Int(2))
                .with_attr("direction", Attribute::String(b"bidirectional".to_vec())),
        )
        .node(Node::new("Flatten", &["seq"], &["f"]))
        .node(
            Node::new("LinearClassifier", &["f"], &["label", "scores"])
                .with_domain("ai.onnx.ml")
                .with_attr("classlabels_ints", Attribute::Ints(vec![0, 1]))
                .with_attr("coefficients", Attribute::Floats(vec![0.5; 8]))
                .with_attr("intercepts", Attribute::Floats(vec![0.0, 1.0])),
        )
        .node(Node::new("Cast", &["label"], &["y"]).with_attr("to", Attribute::Int(7)))
        .output(ValueInfo::named("y"))
        .output(ValueInfo::named("scores"))
        .build()
        .expect("model");
    let types = infer_value_types(&m).expect("types");
    assert_eq!(
        types["seq"].shape,
        Some(vec![
            Dim::Known(7),
            Dim::Known(2),
            Dim::Known(1),
            Dim::Known(2)
        ])
    );
    assert_eq!(types["label"].dtype, Some(DType::I64));
    // The Cast to int64 of an int64 label goes; the classifier writes y.
    let mut opt = m.clone();
    assert_eq!(EliminateIdentity.run(&mut opt).expect("pass"), 1);
    let kinds: Vec<&str> = opt.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(kinds, ["LSTM", "Flatten", "LinearClassifier"]);
    assert_eq!(opt.graph.nodes[2].outputs, ["y", "scores"]);
}

/// `Conv` (weights shared with a second `Conv`) → `Mul` by `scale` → `Add` of a
/// per-channel bias, the Caffe-style BatchNorm.
fn conv_mul_add(scale: Tensor) -> Model {
    ModelBuilder::new(13)
        .input(vi("x", &[1, 3, 5, 5]))
        .initializer("w", f32s(&[4, 3, 1, 1], 1, -1.0, 2.0))
        .initializer("b", f32s(&[4], 2, -1.0, 2.0))
        .initializer("s", scale)
        .initializer("t", f32s(&[1, 4, 1, 1], 4, -1.0, 2.0))
        .node(Node::new("Conv", &["x", "w", "b"], &["c"]))
        .node(Node::new("Mul", &["s", "c"], &["m"]))
        .node(Node::new("Add", &["m", "t"], &["y"]))
        .node(conv("x", "w", "other"))
        .output(ValueInfo::named("y"))
        .output(ValueInfo::named("other"))
        .build()
        .expect("model")
}

#[test]
fn a_per_channel_mul_and_add_after_a_conv_fold_into_it() {
    for scale in [
        f32s(&[1, 4, 1, 1], 3, 0.5, 1.0),
        f32s(&[4, 1, 1], 3, -2.0, 1.0),
        f32s(&[1], 3, 0.5, 1.0),
    ] {
        let m = conv_mul_add(scale.clone());
        let x = f32s(&[1, 3, 5, 5], 5, -1.0, 2.0);
        let want = unoptimized(&m, &[("x", x.clone())]);
        let opt = basic(&m);
        assert_eq!(
            ops(&opt),
            BTreeMap::from([("Conv".to_owned(), 2)]),
            "{scale:?}"
        );
        // The other `Conv` still reads the original weights.
        let other = opt.graph.nodes.iter().find(|n| n.outputs[0] == "other");
        assert_eq!(other.expect("kept").inputs[1], "w");
        // W·s rounds once per weight instead of once per sum: float rounding only.
        crate::common::passes::assert_close(&unoptimized(&opt, &[("x", x)]), &want, 1e-6);
    }
}

#[test]
fn a_mul_that_is_not_per_channel_stays() {
    // Varies along a spatial axis; broadcasts to a higher rank; not finite.
    let spatial = f32s(&[1, 1, 5, 1], 3, 0.5, 1.0);
    let rank5 = f32s(&[1, 1, 4, 1, 1], 3, 0.5, 1.0);
    let inf = Tensor::F32(ArrayD::from_elem(IxDyn(&[1]), f32::INFINITY));
    for scale in [spatial, rank5, inf] {
        let m = conv_mul_add(scale.clone());
        let mut opt = m.clone();
        assert_eq!(
            edgeml_onnx::passes::FuseConvMul
                .run(&mut opt)
                .expect("pass"),
            0,
            "{scale:?}"
        );
        assert_eq!(opt, m);
    }
}

//! BatchNormalization folding and Conv bias fusion: the folded models give the
//! original outputs through `Plan` (optimization off), and cases where folding would
//! not be exact are left alone.

mod common;

use common::passes::{assert_close, bn, bn_params, f32s, ops, unoptimized, vi};
use edgeml_onnx::passes::{FoldBatchNorm, OptimizeLevel, Pass, Pipeline};
use edgeml_onnx::{Attribute, Model, ModelBuilder, Node, ValueInfo};
use std::collections::BTreeMap;

/// Runs the basic pipeline; checks outputs, and that the layer absorbed the BN.
fn check_bn_fold(m: Model, x_shape: &[usize], layer: &str) {
    let x = f32s(x_shape, 99, -1.0, 2.0);
    let want = unoptimized(&m, &[("x", x.clone())]);
    let mut opt = m.clone();
    let report = Pipeline::for_level(OptimizeLevel::Basic)
        .run(&mut opt)
        .expect("optimize");
    assert!(report.total() > 0);
    assert_eq!(ops(&opt).get("BatchNormalization"), None, "{:?}", ops(&opt));
    assert_eq!(ops(&opt).get(layer), Some(&1), "{:?}", ops(&opt));
    assert_eq!(opt.graph.nodes.len(), 1);
    // The old weights and BN parameters are gone.
    assert_eq!(
        opt.graph.initializers.len(),
        2,
        "{:?}",
        opt.graph.initializers
    );
    let got = unoptimized(&opt, &[("x", x)]);
    assert_close(&got, &want, 1e-5);
    opt.validate().expect("valid");
}

#[test]
fn batchnorm_folds_into_conv_with_and_without_bias() {
    for bias in [true, false] {
        let mut b = ModelBuilder::new(13)
            .input(vi("x", &[2, 3, 5, 5]))
            .initializer("w", f32s(&[4, 3, 3, 3], 1, -1.0, 2.0));
        let conv = if bias {
            b = b.initializer("cb", f32s(&[4], 2, -1.0, 2.0));
            Node::new("Conv", &["x", "w", "cb"], &["c"])
        } else {
            Node::new("Conv", &["x", "w"], &["c"])
        };
        let m = bn_params(b, 4, 3)
            .node(conv.with_attr("pads", Attribute::Ints(vec![1, 1, 1, 1])))
            .node(bn("c", "y"))
            .output(vi("y", &[2, 4, 5, 5]))
            .build()
            .expect("model");
        check_bn_fold(m, &[2, 3, 5, 5], "Conv");
    }
}

#[test]
fn batchnorm_folds_into_conv_transpose_gemm_and_matmul() {
    let m = bn_params(
        ModelBuilder::new(13)
            .input(vi("x", &[1, 3, 4, 4]))
            .initializer("w", f32s(&[3, 5, 2, 2], 1, -1.0, 2.0)),
        5,
        4,
    )
    .node(
        Node::new("ConvTranspose", &["x", "w"], &["c"])
            .with_attr("strides", Attribute::Ints(vec![2, 2])),
    )
    .node(bn("c", "y"))
    .output(vi("y", &[1, 5, 8, 8]))
    .build()
    .expect("model");
    check_bn_fold(m, &[1, 3, 4, 4], "ConvTranspose");
    // Grouped: weights [C_in = 4, M / group = 3, 2, 2], M = 6 output channels; output
    // channel 3·g + j reads lane j of group g's two input rows.
    let m = bn_params(
        ModelBuilder::new(13)
            .input(vi("x", &[1, 4, 3, 3]))
            .initializer("w", f32s(&[4, 3, 2, 2], 5, -1.0, 2.0)),
        6,
        6,
    )
    .node(
        Node::new("ConvTranspose", &["x", "w"], &["c"])
            .with_attr("group", Attribute::Int(2))
            .with_attr("strides", Attribute::Ints(vec![2, 2])),
    )
    .node(bn("c", "y"))
    .output(vi("y", &[1, 6, 6, 6]))
    .build()
    .expect("model");
    check_bn_fold(m, &[1, 4, 3, 3], "ConvTranspose");

    for trans_b in [0, 1] {
        let wshape = if trans_b == 1 { [6, 4] } else { [4, 6] };
        let m = bn_params(
            ModelBuilder::new(13)
                .input(vi("x", &[3, 4]))
                .initializer("w", f32s(&wshape, 5, -1.0, 2.0))
                .initializer("cg", f32s(&[6], 6, -1.0, 2.0)),
            6,
            7,
        )
        .node(
            Node::new("Gemm", &["x", "w", "cg"], &["c"])
                .with_attr("transB", Attribute::Int(trans_b))
                .with_attr("alpha", Attribute::Float(0.5))
                .with_attr("beta", Attribute::Float(2.0)),
        )
        .node(bn("c", "y"))
        .output(vi("y", &[3, 6]))
        .build()
        .expect("model");
        check_bn_fold(m, &[3, 4], "Gemm");
    }

    let m = bn_params(
        ModelBuilder::new(13)
            .input(vi("x", &[3, 4]))
            .initializer("w", f32s(&[4, 6], 8, -1.0, 2.0)),
        6,
        9,
    )
    .node(Node::new("MatMul", &["x", "w"], &["c"]))
    .node(bn("c", "y"))
    .output(vi("y", &[3, 6]))
    .build()
    .expect("model");
    check_bn_fold(m, &[3, 4], "Gemm");
}

#[test]
fn batchnorm_is_left_alone_when_folding_does_not_apply() {
    // The conv output has a second consumer: folding would change it.
    let m = bn_params(
        ModelBuilder::new(13)
            .input(vi("x", &[1, 2, 3, 3]))
            .initializer("w", f32s(&[2, 2, 1, 1], 1, -1.0, 2.0)),
        2,
        3,
    )
    .node(Node::new("Conv", &["x", "w"], &["c"]))
    .node(bn("c", "y"))
    .node(Node::new("Add", &["c", "y"], &["z"]))
    .output(vi("z", &[1, 2, 3, 3]))
    .build()
    .expect("model");
    let mut opt = m.clone();
    assert_eq!(FoldBatchNorm.run(&mut opt).expect("pass"), 0);
    assert_eq!(opt, m);
    // Weights fed at run time (a graph input shadowing the initializer).
    let mut m2 = m;
    m2.graph.nodes.pop();
    m2.graph.outputs = vec![vi("y", &[1, 2, 3, 3])];
    m2.graph.inputs.push(vi("w", &[2, 2, 1, 1]));
    let before = m2.clone();
    assert_eq!(FoldBatchNorm.run(&mut m2).expect("pass"), 0);
    assert_eq!(m2, before);
}

#[test]
fn batchnorm_before_an_unpadded_conv_folds_into_it_and_a_padded_one_stays() {
    for (pads, folds) in [(0, true), (1, false)] {
        let m = bn_params(
            ModelBuilder::new(13)
                .input(vi("x", &[2, 3, 5, 5]))
                .initializer("w", f32s(&[4, 3, 3, 3], 1, -1.0, 2.0))
                .initializer("cb", f32s(&[4], 2, -1.0, 2.0)),
            3,
            5,
        )
        .node(bn("x", "n"))
        .node(
            Node::new("Conv", &["n", "w", "cb"], &["y"])
                .with_attr("pads", Attribute::Ints(vec![pads; 4])),
        )
        .output(ValueInfo::named("y"))
        .build()
        .expect("model");
        let x = f32s(&[2, 3, 5, 5], 11, -1.0, 2.0);
        let want = unoptimized(&m, &[("x", x.clone())]);
        let mut opt = m.clone();
        let n = FoldBatchNorm.run(&mut opt).expect("pass");
        assert_eq!(n, usize::from(folds), "pads {pads}");
        if folds {
            assert_eq!(ops(&opt), BTreeMap::from([("Conv".to_owned(), 1)]));
            assert_eq!(opt.graph.nodes[0].inputs[0], "x");
            assert_close(&unoptimized(&opt, &[("x", x)]), &want, 1e-5);
        } else {
            assert_eq!(opt, m);
        }
    }
}

#[test]
fn conv_plus_constant_channel_add_becomes_a_bias_then_bn_folds() {
    for (shape, fuses) in [
        (vec![1, 4, 1, 1], true),
        (vec![4, 1, 1], true),
        (vec![1], true),
        (vec![1, 4, 3, 3], false),
    ] {
        let m = bn_params(
            ModelBuilder::new(13)
                .input(vi("x", &[1, 3, 5, 5]))
                .initializer("w", f32s(&[4, 3, 3, 3], 1, -1.0, 2.0))
                .initializer("c", f32s(&shape, 2, -1.0, 2.0)),
            4,
            3,
        )
        .node(Node::new("Conv", &["x", "w"], &["conv"]))
        .node(Node::new("Add", &["c", "conv"], &["a"]))
        .node(bn("a", "y"))
        .output(ValueInfo::named("y"))
        .build()
        .expect("model");
        let x = f32s(&[1, 3, 5, 5], 8, -1.0, 2.0);
        let want = unoptimized(&m, &[("x", x.clone())]);
        let mut opt = m.clone();
        Pipeline::for_level(OptimizeLevel::Basic)
            .run(&mut opt)
            .expect("optimize");
        let expect = if fuses {
            BTreeMap::from([("Conv".to_owned(), 1)])
        } else {
            BTreeMap::from([
                ("Add".to_owned(), 1),
                ("BatchNormalization".to_owned(), 1),
                ("Conv".to_owned(), 1),
            ])
        };
        assert_eq!(ops(&opt), expect, "{shape:?}");
        assert_close(&unoptimized(&opt, &[("x", x)]), &want, 1e-5);
    }
}

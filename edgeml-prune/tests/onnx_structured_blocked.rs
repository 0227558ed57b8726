//! Structured pruning: the groups that must stay untouched (graph outputs, ops that
//! are not followed, grouped convs, untracked operands, exclusions, malformed widths,
//! dynamic weights, subgraph captures) are reported and the model is left as it was.
#![cfg(feature = "onnx")]

mod structured_util;

use edgeml_onnx::{Attribute, ModelBuilder, Node, Tensor, ValueInfo};
use edgeml_prune::onnx::{MemberKind, StructuredConfig};
use edgeml_prune::{PruneConfig, prune_model};
use structured_util::*;

#[test]
fn blocked_groups_stay_untouched_and_say_why() {
    // c1's output also goes through a Reshape (to the graph output) and a Softmax,
    // and the residual Add joins an untracked graph input.
    let mut n = Net {
        b: ModelBuilder::new(13)
            .input(vi("x", &[1, 4, 6, 6]))
            .input(vi("skip", &[1, 8, 6, 6]))
            .output(vi("y", &[1, 8, 6, 6]))
            .output(vi("flat", &[2, 144])),
        seed: 40,
    };
    n.conv("c1", "x", 8, 4, 3, 1);
    n.op("Relu", &["c1"], "r1");
    // [2, 144] is no flatten of a batch of 1: not followed.
    n.init("shape", Tensor::I64(ndarray::arr1(&[2i64, 144]).into_dyn()));
    n.op("Reshape", &["r1", "shape"], "flat");
    n.op("Softmax", &["r1"], "g");
    n.op("Relu", &["g"], "rg");
    n.conv("c2", "rg", 8, 8, 3, 1);
    n.op("Add", &["c2", "skip"], "s");
    n.conv("c3", "s", 8, 8, 1, 1);
    n.op("Relu", &["c3"], "y");
    let orig = n.b.build().expect("model");
    let mut m = orig.clone();
    let r = prune_model(&mut m, &cfg(0.5, StructuredConfig::default())).expect("prune");
    let why = |t: &str| {
        group_of(&r.groups, t, MemberKind::Output)
            .blocked
            .clone()
            .unwrap_or_default()
    };
    assert!(
        why("c1.w").contains("Reshape `flat` is not followed (shape [2, 144]"),
        "{}",
        why("c1.w")
    );
    assert!(why("c1.w").contains("Softmax `g`"), "{}", why("c1.w"));
    assert!(why("c2.w").contains("untracked `skip`"), "{}", why("c2.w"));
    assert!(why("c3.w").contains("graph output"), "{}", why("c3.w"));
    assert!(
        r.groups
            .iter()
            .all(|g| g.removed.is_empty() && g.blocked.is_some())
    );
    assert_eq!(m, orig, "blocked groups leave the model as it was");
}

#[test]
fn exclusions_block_their_groups() {
    let mut m = cnn();
    let c = PruneConfig {
        exclude: vec!["c3".into()],
        ..cfg(0.5, StructuredConfig::default())
    };
    let r = prune_model(&mut m, &c).expect("prune");
    let res = group_of(&r.groups, "c1.w", MemberKind::Output);
    assert!(
        res.blocked
            .as_deref()
            .is_some_and(|b| b.contains("excluded")),
        "{res:?}"
    );
    assert_eq!(
        m.graph.initializer("c1.w").map(Tensor::shape),
        Some(&[8, 3, 3, 3][..])
    );
    // c3's input channels (c2's group) are coupled to an excluded layer too.
    assert!(
        group_of(&r.groups, "c2.w", MemberKind::Output)
            .blocked
            .is_some()
    );
    assert_eq!(
        m.graph.initializer("pw.w").map(Tensor::shape),
        Some(&[6, 5, 1, 1][..])
    );
}

#[test]
fn malformed_widths_and_attributes_block_instead_of_panicking() {
    // A BatchNormalization whose mean has 3 entries for 8 channels, and a Concat with
    // axis = i64::MIN: no panic, both groups blocked, the model unchanged.
    let mut n = Net {
        b: ModelBuilder::new(13)
            .input(vi("x", &[1, 4, 6, 6]))
            .output(vi("y", &[1, 8, 6, 6])),
        seed: 60,
    };
    n.conv("c1", "x", 8, 4, 3, 1);
    n.bn("bn", "c1", 8);
    n.init("bn.mean", tensor(&[3], 1));
    n.conv("c2", "bn", 8, 8, 3, 1);
    n.conv("c3", "x", 8, 4, 3, 1);
    n.node(
        Node::new("Concat", &["c2", "c3"], &["cat"])
            .with_name("cat")
            .with_attr("axis", Attribute::Int(i64::MIN)),
    );
    n.conv("c4", "cat", 8, 16, 1, 1);
    n.op("Relu", &["c4"], "y");
    let mut orig = n.b.build_unchecked();
    // The builder appended a second `bn.mean`: keep the 3-entry one only.
    let first = orig
        .graph
        .initializers
        .iter()
        .position(|(k, _)| k == "bn.mean")
        .expect("mean");
    orig.graph.initializers.remove(first);
    let mut m = orig.clone();
    let r = prune_model(&mut m, &cfg(0.5, StructuredConfig::default())).expect("prune");
    let why = |t: &str| {
        group_of(&r.groups, t, MemberKind::Output)
            .blocked
            .clone()
            .unwrap_or_default()
    };
    assert!(
        why("c1.w").contains("`bn.mean` has Some(3) entries"),
        "{}",
        why("c1.w")
    );
    assert!(why("c2.w").contains("Concat `cat`"), "{}", why("c2.w"));
    assert!(why("c3.w").contains("Concat `cat`"), "{}", why("c3.w"));
    assert_eq!(m, orig);
}

#[test]
fn channels_used_as_a_weight_block_their_group() {
    // c1's output is the (dynamic) weight of a MatMul: its channels cannot be removed.
    let mut n = Net {
        b: ModelBuilder::new(13)
            .input(vi("x", &[1, 4, 6, 6]))
            .input(vi("a", &[1, 4, 6, 8]))
            .output(vi("y", &[1, 4, 6, 6])),
        seed: 90,
    };
    n.conv("c1", "x", 8, 4, 3, 1);
    n.op("MatMul", &["a", "c1"], "y");
    let orig = n.b.build().expect("model");
    assert_blocked(&orig, "c1.w", "reads channels as a parameter");
}

#[test]
fn channels_read_by_a_subgraph_block_their_group() {
    let branch = |out: &str| edgeml_onnx::Graph {
        nodes: vec![Node::new("Identity", &["r"], &[out])],
        outputs: vec![ValueInfo::named(out)],
        ..edgeml_onnx::Graph::default()
    };
    let mut n = Net {
        b: ModelBuilder::new(13)
            .input(vi("x", &[1, 4, 6, 6]))
            .input(ValueInfo::tensor("cond", edgeml_core::DType::Bool, vec![]))
            .output(vi("y", &[1, 4, 6, 6]))
            .output(ValueInfo::named("z")),
        seed: 95,
    };
    n.conv("c1", "x", 8, 4, 3, 1);
    n.op("Relu", &["c1"], "r");
    n.conv("c2", "r", 4, 8, 3, 1);
    n.op("Relu", &["c2"], "y");
    n.node(
        Node::new("If", &["cond"], &["z"])
            .with_attr("then_branch", Attribute::Graph(Box::new(branch("t"))))
            .with_attr("else_branch", Attribute::Graph(Box::new(branch("e")))),
    );
    let orig = n.b.build_unchecked();
    assert_blocked(&orig, "c1.w", "`r` is read by a subgraph");
}

#[test]
fn a_nan_weight_is_an_error_and_the_model_is_unchanged() {
    let mut orig = cnn();
    if let Some((_, Tensor::F32(a))) = orig
        .graph
        .initializers
        .iter_mut()
        .find(|(n, _)| n == "c2.w")
    {
        a[[1, 2, 0, 0]] = f32::NAN;
    }
    let mut m = orig.clone();
    let e = prune_model(&mut m, &cfg(0.5, StructuredConfig::default())).expect_err("NaN");
    assert!(
        matches!(&e, edgeml_prune::Error::NaN { what, index } if what == "c2.w" && *index == 72 + 2 * 9),
        "{e:?}"
    );
    // NaN != NaN: compare the encoded models.
    assert_eq!(
        m.to_bytes().expect("encode"),
        orig.to_bytes().expect("encode")
    );
}

#[test]
fn a_conv_reading_another_axis_as_channels_blocks_the_group() {
    // MatMul's output channels are its last axis (8); the Conv reads axis 1 (also 8).
    let mut n = Net {
        b: ModelBuilder::new(13)
            .input(vi("a", &[1, 8, 6, 4]))
            .output(vi("y", &[1, 4, 6, 8])),
        seed: 99,
    };
    n.init("mm.w", tensor(&[4, 8], 1));
    n.op("MatMul", &["a", "mm.w"], "m");
    n.conv("c", "m", 4, 8, 3, 1);
    n.op("Relu", &["c"], "y");
    let orig = n.b.build().expect("model");
    assert_blocked(&orig, "mm.w", "reads another axis");
}

//! Structured pruning of coupled channel groups on a small CNN built in code (a
//! residual block, a Concat of two branches, a depthwise-separable block and a
//! Flatten→Gemm head) and on the ResNet-like fixture: members, importance, surgery.
#![cfg(feature = "onnx")]

mod structured_util;

use edgeml_onnx::{Attribute, Model, ModelBuilder, Plan, PlanOptions, Tensor};
use edgeml_prune::onnx::{MemberKind, StructuredConfig};
use edgeml_prune::pattern::Norm;
use edgeml_prune::{Scope, prune_model};
use ndarray::Axis;
use structured_util::*;

#[test]
fn groups_follow_residual_concat_depthwise_and_flatten() {
    let mut m = cnn();
    let r = prune_model(&mut m, &cfg(0.5, StructuredConfig::default())).expect("prune");
    let g = &r.groups;
    // The residual group: c1 and c3 outputs, coupled by the Add, read by c2, a and b.
    let res = group_of(g, "c1.w", MemberKind::Output);
    assert_eq!(names(res, MemberKind::Output), ["c1.w@0+0x1", "c3.w@0+0x1"]);
    assert_eq!(
        names(res, MemberKind::Input),
        ["a.w@1+0x1", "b.w@1+0x1", "c2.w@1+0x1"]
    );
    assert_eq!(
        names(res, MemberKind::Param).len(),
        2 + 4 + 4,
        "biases and two BNs"
    );
    assert_eq!(
        (res.channels, res.removed.len(), &res.blocked),
        (8, 4, &None)
    );
    // Concat: a's channels at offset 0, b's at 4, in the depthwise conv, its BN and pw.
    let ga = group_of(g, "a.w", MemberKind::Output);
    let gb = group_of(g, "b.w", MemberKind::Output);
    assert_eq!(names(ga, MemberKind::Depthwise), ["dw.w@0+0x1"]);
    assert_eq!(names(gb, MemberKind::Depthwise), ["dw.w@0+4x1"]);
    assert_eq!(names(gb, MemberKind::Input), ["pw.w@1+4x1"]);
    assert!(
        gb.members
            .iter()
            .any(|m| m.tensor == "bndw.var" && m.offset == 4)
    );
    assert_eq!((ga.removed.len(), gb.removed.len()), (2, 3));
    // Flatten: one pw channel is a block of 4·4 Gemm input features.
    let gpw = group_of(g, "pw.w", MemberKind::Output);
    assert_eq!(names(gpw, MemberKind::Input), ["fc.w@1+0x16"]);
    // The head feeds the graph output: blocked, reported.
    let head = group_of(g, "fc.w", MemberKind::Output);
    assert!(
        head.blocked
            .as_deref()
            .is_some_and(|b| b.contains("graph output")),
        "{head:?}"
    );
    assert!(head.removed.is_empty());
    // Shapes after surgery.
    for (name, shape) in [
        ("c1.w", &[4, 3, 3, 3][..]),
        ("c2.w", &[4, 4, 3, 3]),
        ("c3.w", &[4, 4, 3, 3]),
        ("a.w", &[2, 4, 1, 1]),
        ("b.w", &[3, 4, 3, 3]),
        ("dw.w", &[5, 1, 3, 3]),
        ("bndw.scale", &[5]),
        ("pw.w", &[6, 5, 1, 1]),
        ("fc.w", &[5, 6 * 16]),
        ("fc.b", &[5]),
    ] {
        assert_eq!(
            m.graph.initializer(name).map(Tensor::shape),
            Some(shape),
            "{name}"
        );
    }
    let dw = m.graph.nodes.iter().find(|n| n.name == "dw").expect("dw");
    assert_eq!(dw.attr("group"), Some(&Attribute::Int(5)));
    assert!(m.graph.value_info.iter().all(|v| v.name != "r3"));
    assert_eq!(run(&m).shape(), [1, 5]);
}

#[test]
fn removed_channels_are_the_lowest_group_l1_norms() {
    let orig = cnn();
    let mut m = orig.clone();
    let s = StructuredConfig {
        norm: Norm::L1,
        ..StructuredConfig::default()
    };
    let r = prune_model(&mut m, &cfg(0.5, s)).expect("prune");
    let res = group_of(&r.groups, "c1.w", MemberKind::Output);
    // Importance by hand: every weight of the 5 layers that touches channel c.
    let sum_abs = |name: &str, axis: usize, c: usize| -> f64 {
        f32_of(&orig, name)
            .index_axis(Axis(axis), c)
            .iter()
            .map(|&w| f64::from(w).abs())
            .sum()
    };
    let mut score: Vec<(f64, usize)> = (0..8)
        .map(|c| {
            let s = sum_abs("c1.w", 0, c)
                + sum_abs("c3.w", 0, c)
                + sum_abs("c2.w", 1, c)
                + sum_abs("a.w", 1, c)
                + sum_abs("b.w", 1, c);
            (s, c)
        })
        .collect();
    score.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut lowest: Vec<usize> = score[..4].iter().map(|x| x.1).collect();
    lowest.sort_unstable();
    assert_eq!(res.removed, lowest);
    // Every member kept exactly the other slices: c3's weight equals the original's
    // rows at the kept indices (and c2's columns of the same indices).
    let kept: Vec<usize> = (0..8).filter(|c| !lowest.contains(c)).collect();
    let c3 = f32_of(&orig, "c3.w").select(Axis(0), &kept);
    let c2 = f32_of(&orig, "c2.w").select(Axis(1), &kept);
    let c2_rows = group_of(&r.groups, "c2.w", MemberKind::Output)
        .removed
        .clone();
    let c2_kept: Vec<usize> = (0..8).filter(|c| !c2_rows.contains(c)).collect();
    assert_eq!(f32_of(&m, "c2.w"), c2.select(Axis(0), &c2_kept));
    let c3_cols: Vec<usize> = c2_kept.clone();
    assert_eq!(f32_of(&m, "c3.w"), c3.select(Axis(1), &c3_cols));
    assert_eq!(
        f32_of(&m, "bn3.mean"),
        f32_of(&orig, "bn3.mean").select(Axis(0), &kept)
    );
}

#[test]
fn surgery_equals_zeroing_every_member_slice() {
    for (sparsity, scope, round_to) in [
        (0.5, Scope::Layer, 1),
        (0.3, Scope::Global, 1),
        (0.6, Scope::Layer, 2),
    ] {
        let orig = cnn();
        let mut m = orig.clone();
        let s = StructuredConfig {
            scope,
            round_to,
            ..StructuredConfig::default()
        };
        let r = prune_model(&mut m, &cfg(sparsity, s)).expect("prune");
        assert!(
            r.groups.iter().filter(|g| !g.removed.is_empty()).count() >= 4,
            "{r:?}"
        );
        let mut zeroed = orig.clone();
        zero_removed(&mut zeroed, &r.groups);
        let (y0, yz, yp) = (run(&orig), run(&zeroed), run(&m));
        assert!(
            y0.iter().zip(yz.iter()).any(|(a, b)| a != b),
            "zeroing changed nothing"
        );
        assert_close(&yz, &yp);
        // Saved and loaded back: same output.
        let back = Model::from_bytes(&m.to_bytes().expect("encode")).expect("reload");
        assert_eq!(run(&back), yp);
        assert!(r.model_params_after < r.model_params_before);
    }
}

#[test]
fn floor_and_rounding() {
    let mut m = cnn();
    let s = StructuredConfig {
        min_channels: 5,
        round_to: 4,
        ..StructuredConfig::default()
    };
    let r = prune_model(&mut m, &cfg(0.9, s)).expect("prune");
    // 8 channels at 90%: keep max(1, 5) = 5, rounded up to 8: nothing removed.
    assert!(
        group_of(&r.groups, "c1.w", MemberKind::Output)
            .removed
            .is_empty()
    );
    // pw (12): keep 5 → 8, 4 removed; concat groups (4 and 6): 4 ≤ 5 stays, 6 keeps 8 → 6.
    assert_eq!(
        group_of(&r.groups, "pw.w", MemberKind::Output)
            .removed
            .len(),
        4
    );
    assert!(
        group_of(&r.groups, "b.w", MemberKind::Output)
            .removed
            .is_empty()
    );
    assert_eq!(
        m.graph.initializer("pw.w").map(Tensor::shape),
        Some(&[8, 10, 1, 1][..])
    );
}

#[test]
fn resnet_fixture_surgery_equals_zeroing() {
    // tests/fixtures/prune/resnet_block.onnx, written by
    // scripts/make_prune_structured_fixtures.py: BasicBlocks with identity and 1x1
    // downsample skips, Concat, depthwise-separable block, GAP→Flatten→Gemm.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/prune/resnet_block.onnx"
    );
    let orig = Model::load(path).expect("fixture");
    let mut m = orig.clone();
    let s = StructuredConfig {
        round_to: 8,
        ..StructuredConfig::default()
    };
    let r = prune_model(&mut m, &cfg(0.5, s)).expect("prune");
    let pruned = r.groups.iter().filter(|g| !g.removed.is_empty()).count();
    let blocked = r.groups.iter().filter(|g| g.blocked.is_some()).count();
    // 9 groups: stem+layer1 skips+layer2.0 conv1 input, two inner block groups per
    // block (3), layer2.0's output with its downsample, the two Concat branches, pw,
    // and the head (graph output: blocked).
    assert_eq!((r.groups.len(), pruned, blocked), (9, 8, 1), "{r:?}");
    assert!(
        r.groups
            .iter()
            .filter(|g| g.blocked.is_none())
            .all(|g| (g.channels - g.removed.len()) % 8 == 0)
    );
    let x = tensor(&[1, 3, 64, 64], 5);
    let run = |m: &Model| {
        let plan = Plan::new(m, PlanOptions::with_threads(1)).expect("plan");
        let out = plan.run(&[("x", x.clone())]).expect("run");
        out[0].1.as_f32().expect("f32").clone()
    };
    let mut zeroed = orig.clone();
    zero_removed(&mut zeroed, &r.groups);
    let (y0, yz, yp) = (run(&orig), run(&zeroed), run(&m));
    assert!(y0.iter().zip(yz.iter()).any(|(a, b)| a != b));
    assert_close(&yz, &yp);
    assert!(r.model_params_after * 3 < r.model_params_before, "{r:?}");
}

#[test]
fn variadic_sum_couples_all_its_operands() {
    // ResNet-50 (Caffe2 export) writes its residual connections as Sum.
    let mut n = Net {
        b: ModelBuilder::new(13)
            .input(vi("x", &[1, 4, 6, 6]))
            .output(vi("y", &[1, 5, 6, 6])),
        seed: 80,
    };
    n.conv("c1", "x", 8, 4, 3, 1);
    n.conv("c2", "x", 8, 4, 1, 1);
    n.conv("c3", "x", 8, 4, 3, 1);
    n.op("Sum", &["c1", "c2", "c3"], "s");
    n.op("Relu", &["s"], "r");
    n.conv("c4", "r", 5, 8, 3, 1);
    n.op("Relu", &["c4"], "y");
    let orig = n.b.build().expect("model");
    let mut m = orig.clone();
    let r = prune_model(&mut m, &cfg(0.5, StructuredConfig::default())).expect("prune");
    let g = group_of(&r.groups, "c1.w", MemberKind::Output);
    assert_eq!(
        names(g, MemberKind::Output),
        ["c1.w@0+0x1", "c2.w@0+0x1", "c3.w@0+0x1"]
    );
    assert_eq!(names(g, MemberKind::Input), ["c4.w@1+0x1"]);
    assert_eq!((g.removed.len(), &g.blocked), (4, &None));
    let mut zeroed = orig.clone();
    zero_removed(&mut zeroed, &r.groups);
    let run = |m: &Model| {
        let plan = Plan::new(m, PlanOptions::with_threads(1)).expect("plan");
        let out = plan.run(&[("x", tensor(&[1, 4, 6, 6], 3))]).expect("run");
        out[0].1.as_f32().expect("f32").clone()
    };
    assert_close(&run(&zeroed), &run(&m));
    assert_eq!(
        m.graph.initializer("c2.w").map(Tensor::shape),
        Some(&[4, 4, 1, 1][..])
    );
}

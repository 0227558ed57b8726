//! Structured pruning through grouped convs, channel shuffles and `Split`: small
//! graphs built in code, pruned, then checked for shapes, exactness (the pruned model
//! computes what the original computes with every removed member slice zeroed) and a
//! smaller parameter count; and the cases that must still block.
#![cfg(feature = "onnx")]

mod structured_util;

use edgeml_onnx::{Attribute, Model, ModelBuilder, Node, Plan, PlanOptions, Tensor};
use edgeml_prune::onnx::{MemberKind, PruneReport, StructuredConfig};
use edgeml_prune::prune_model;
use ndarray::ArrayD;
use structured_util::*;

fn ints(v: &[i64]) -> Tensor {
    Tensor::I64(ndarray::arr1(v).into_dyn())
}

fn run_x(m: &Model, shape: &[usize]) -> ArrayD<f32> {
    let plan = Plan::new(m, PlanOptions::with_threads(1)).expect("plan");
    let out = plan.run(&[("x", tensor(shape, 321))]).expect("run");
    out[0].1.as_f32().expect("f32").clone()
}

/// Prunes `orig` at 50%, checks the output shape, exactness against zeroing and the
/// parameter count, and returns the pruned model with its report.
fn prune_exact(orig: &Model, x: &[usize]) -> (Model, PruneReport) {
    let mut m = orig.clone();
    let r = prune_model(&mut m, &cfg(0.5, StructuredConfig::default())).expect("prune");
    let mut zeroed = orig.clone();
    zero_removed(&mut zeroed, &r.groups);
    let (y0, yz, yp) = (run_x(orig, x), run_x(&zeroed, x), run_x(&m, x));
    assert_eq!(y0.shape(), yp.shape());
    assert!(
        y0.iter().zip(yz.iter()).any(|(a, b)| a != b),
        "zeroing changed nothing"
    );
    assert_close(&yz, &yp);
    assert!(r.model_params_after < r.model_params_before, "{r:?}");
    let back = Model::from_bytes(&m.to_bytes().expect("encode")).expect("reload");
    assert_eq!(run_x(&back, x), yp);
    (m, r)
}

fn shape_of<'m>(m: &'m Model, name: &str) -> &'m [usize] {
    m.graph
        .initializer(name)
        .map(Tensor::shape)
        .unwrap_or_else(|| panic!("{name}"))
}

fn attr_of<'m>(m: &'m Model, node: &str, attr: &str) -> &'m Attribute {
    m.graph
        .nodes
        .iter()
        .find(|n| n.name == node)
        .and_then(|n| n.attr(attr))
        .unwrap_or_else(|| panic!("{node}.{attr}"))
}

fn ints_of(m: &Model, name: &str) -> Vec<i64> {
    match m.graph.initializer(name) {
        Some(Tensor::I64(a)) => a.iter().copied().collect(),
        t => panic!("{name}: {t:?}"),
    }
}

#[test]
fn grouped_conv_chain_keeps_its_groups_equal() {
    // c0 (8) → g1 (group 2, 8 → 8) → g2 (group 4, 8 → 12) → c3 (5) → y.
    let mut n = Net {
        b: ModelBuilder::new(13)
            .input(vi("x", &[1, 4, 6, 6]))
            .output(vi("y", &[1, 5, 6, 6])),
        seed: 200,
    };
    n.conv("c0", "x", 8, 4, 3, 1);
    n.bn("bn0", "c0", 8);
    n.op("Relu", &["bn0"], "r0");
    n.conv("g1", "r0", 8, 8, 3, 2);
    n.op("Relu", &["g1"], "r1");
    n.conv("g2", "r1", 12, 8, 1, 4);
    n.op("Relu", &["g2"], "r2");
    n.conv("c3", "r2", 5, 12, 3, 1);
    n.op("Relu", &["c3"], "y");
    let orig = n.b.build().expect("model");
    let (m, r) = prune_exact(&orig, &[1, 4, 6, 6]);
    // c0's 8 channels are g1's 2 input slices of 4, coupled index by index: a group of 4.
    let g0 = group_of(&r.groups, "c0.w", MemberKind::Output);
    assert_eq!(names(g0, MemberKind::Output), ["c0.w@0+0x1", "c0.w@0+4x1"]);
    assert_eq!(names(g0, MemberKind::Input), ["g1.w@1+0x1"]);
    assert_eq!((g0.channels, g0.removed.len(), &g0.blocked), (4, 2, &None));
    // g1's output (2 groups of 4) is read by g2 in 4 slices of 2: a group of 2 channels
    // held 4 times by g1's rows.
    let g1 = group_of(&r.groups, "g1.w", MemberKind::Output);
    assert_eq!(names(g1, MemberKind::Output).len(), 4);
    assert_eq!((g1.channels, g1.removed.len()), (2, 1));
    let g2 = group_of(&r.groups, "g2.w", MemberKind::Output);
    assert_eq!((g2.channels, g2.removed.len()), (3, 2));
    for (name, shape) in [
        ("c0.w", &[4, 4, 3, 3][..]),
        ("bn0.var", &[4]),
        ("g1.w", &[4, 2, 3, 3]),
        ("g1.b", &[4]),
        ("g2.w", &[4, 1, 1, 1]),
        ("c3.w", &[5, 4, 3, 3]),
    ] {
        assert_eq!(shape_of(&m, name), shape, "{name}");
    }
    assert_eq!(attr_of(&m, "g1", "group"), &Attribute::Int(2));
    assert_eq!(attr_of(&m, "g2", "group"), &Attribute::Int(4));
}

/// stem (8) → [gconv a (group 2) → BN → Relu → shuffle (`blocks` blocks) → depthwise →
/// BN → gconv b (`groups_b`)] + stem → Relu → head (5) → y; the shuffle's shape
/// constants are `s5` and `s4`.
fn shuffle_unit(blocks: i64, groups_b: usize) -> Model {
    let mut n = Net {
        b: ModelBuilder::new(13)
            .input(vi("x", &[1, 4, 6, 6]))
            .output(vi("y", &[1, 5, 6, 6])),
        seed: 300,
    };
    n.conv("s", "x", 8, 4, 3, 1);
    n.op("Relu", &["s"], "rs");
    n.conv("ga", "rs", 8, 8, 1, 2);
    n.bn("bna", "ga", 8);
    n.op("Relu", &["bna"], "ra");
    n.init("s5", ints(&[1, blocks, 8 / blocks, 6, 6]));
    n.op("Reshape", &["ra", "s5"], "sh5");
    n.node(
        Node::new("Transpose", &["sh5"], &["tr"])
            .with_name("tr")
            .with_attr("perm", Attribute::Ints(vec![0, 2, 1, 3, 4])),
    );
    n.init("s4", ints(&[1, 8, 6, 6]));
    n.op("Reshape", &["tr", "s4"], "shuf");
    n.conv("dw", "shuf", 8, 8, 3, 8);
    n.bn("bnd", "dw", 8);
    n.conv("gb", "bnd", 8, 8, 1, groups_b);
    n.bn("bnb", "gb", 8);
    n.op("Sum", &["bnb", "rs"], "sum");
    n.op("Relu", &["sum"], "rsum");
    n.conv("head", "rsum", 5, 8, 3, 1);
    n.op("Relu", &["head"], "y");
    n.b.build().expect("model")
}

#[test]
fn channel_shuffle_is_followed_and_its_shapes_rewritten() {
    let orig = shuffle_unit(2, 2);
    let (m, r) = prune_exact(&orig, &[1, 4, 6, 6]);
    // The bottleneck: ga's 2 groups of 4 become 2 blocks of the shuffle; after it each
    // channel sits in 2 adjacent positions (block 2) and gb's 2 slices cut it in two
    // coupled halves: a group of 2 channels, each 4 rows of ga.
    let b = group_of(&r.groups, "ga.w", MemberKind::Output);
    assert_eq!((b.channels, b.removed.len(), &b.blocked), (2, 1, &None));
    assert_eq!(
        names(b, MemberKind::Depthwise),
        ["dw.w@0+0x2", "dw.w@0+2x2"]
    );
    assert_eq!(names(b, MemberKind::Input), ["gb.w@1+0x2"]);
    // The residual stream: the stem, ga's input slices and gb's output, coupled.
    let s = group_of(&r.groups, "s.w", MemberKind::Output);
    assert_eq!((s.channels, s.removed.len(), &s.blocked), (4, 2, &None));
    assert!(
        s.members
            .iter()
            .any(|x| x.tensor == "gb.w" && x.kind == MemberKind::Output)
    );
    for (name, shape) in [
        ("s.w", &[4, 4, 3, 3][..]),
        ("ga.w", &[4, 2, 1, 1]),
        ("bna.scale", &[4]),
        ("dw.w", &[4, 1, 3, 3]),
        ("gb.w", &[4, 2, 1, 1]),
        ("head.w", &[5, 4, 3, 3]),
    ] {
        assert_eq!(shape_of(&m, name), shape, "{name}");
    }
    assert_eq!(ints_of(&m, "s5"), [1, 2, 2, 6, 6]);
    assert_eq!(ints_of(&m, "s4"), [1, 4, 6, 6]);
    assert_eq!(attr_of(&m, "dw", "group"), &Attribute::Int(4));
    assert_eq!(attr_of(&m, "ga", "group"), &Attribute::Int(2));
}

#[test]
fn a_grouped_conv_that_cuts_a_shuffled_channel_blocks() {
    // A shuffle of 4 blocks puts each channel in 4 adjacent positions; gb with 4 groups
    // reads slices of 2 positions, cutting every channel in two. The bottleneck is
    // blocked with the reason, the stream still prunes.
    let orig = shuffle_unit(4, 4);
    let (m, r) = prune_exact(&orig, &[1, 4, 6, 6]);
    let b = group_of(&r.groups, "ga.w", MemberKind::Output);
    assert!(
        b.blocked
            .as_deref()
            .is_some_and(|w| w.contains("grouped Conv `gb` (group = 4): its input slices")),
        "{b:?}"
    );
    assert!(b.removed.is_empty());
    assert_eq!(shape_of(&m, "dw.w"), [8, 1, 3, 3]);
    assert_eq!(ints_of(&m, "s5"), [1, 4, 2, 6, 6]);
    assert_eq!(shape_of(&m, "s.w"), [4, 4, 3, 3]);
    assert!(
        group_of(&r.groups, "s.w", MemberKind::Output)
            .blocked
            .is_none()
    );
}

/// c1 (8) → Relu → Split on channels → c2 (first piece), c3 (second) → Add → y. With
/// `sizes`, the Split reads them from an initializer; without, it splits in halves.
fn split_net(sizes: Option<&[i64]>) -> Model {
    let mut n = Net {
        b: ModelBuilder::new(13)
            .input(vi("x", &[1, 4, 6, 6]))
            .output(vi("y", &[1, 4, 6, 6])),
        seed: 400,
    };
    n.conv("c1", "x", 8, 4, 3, 1);
    n.op("Relu", &["c1"], "r1");
    let (a, b) = match sizes {
        Some(s) => {
            n.init("sizes", ints(s));
            (s[0] as usize, s[1] as usize)
        }
        None => (4, 4),
    };
    let ins: &[&str] = if sizes.is_some() {
        &["r1", "sizes"]
    } else {
        &["r1"]
    };
    n.node(
        Node::new("Split", ins, &["p", "q"])
            .with_name("split")
            .with_attr("axis", Attribute::Int(1)),
    );
    n.conv("c2", "p", 4, a, 3, 1);
    n.conv("c3", "q", 4, b, 1, 1);
    n.op("Add", &["c2", "c3"], "y");
    n.b.build().expect("model")
}

#[test]
fn split_with_sizes_prunes_its_pieces_freely_and_rewrites_them() {
    let orig = split_net(Some(&[3, 5]));
    let (m, r) = prune_exact(&orig, &[1, 4, 6, 6]);
    let p = group_of(&r.groups, "c2.w", MemberKind::Input);
    let q = group_of(&r.groups, "c3.w", MemberKind::Input);
    assert_eq!(names(p, MemberKind::Output), ["c1.w@0+0x1"]);
    assert_eq!(names(q, MemberKind::Output), ["c1.w@0+3x1"]);
    // round(0.5 · 3) = 2 and round(0.5 · 5) = 2 (half to even).
    assert_eq!((p.channels, p.removed.len()), (3, 2));
    assert_eq!((q.channels, q.removed.len()), (5, 2));
    assert_eq!(ints_of(&m, "sizes"), [1, 3]);
    assert_eq!(shape_of(&m, "c1.w"), [4, 4, 3, 3]);
    assert_eq!(shape_of(&m, "c2.w"), [4, 1, 3, 3]);
    assert_eq!(shape_of(&m, "c3.w"), [4, 3, 1, 1]);
    // The Add feeds the graph output: c2 and c3 keep their output channels.
    let out = group_of(&r.groups, "c2.w", MemberKind::Output);
    assert!(
        out.blocked
            .as_deref()
            .is_some_and(|w| w.contains("graph output"))
    );
}

#[test]
fn an_equal_split_without_sizes_couples_its_halves() {
    let orig = split_net(None);
    let (m, r) = prune_exact(&orig, &[1, 4, 6, 6]);
    let h = group_of(&r.groups, "c2.w", MemberKind::Input);
    assert_eq!(names(h, MemberKind::Output), ["c1.w@0+0x1", "c1.w@0+4x1"]);
    assert_eq!(names(h, MemberKind::Input), ["c2.w@1+0x1", "c3.w@1+0x1"]);
    assert_eq!((h.channels, h.removed.len()), (4, 2));
    assert_eq!(shape_of(&m, "c1.w"), [4, 4, 3, 3]);
    assert_eq!(shape_of(&m, "c2.w"), [4, 2, 3, 3]);
    assert_eq!(shape_of(&m, "c3.w"), [4, 2, 1, 1]);
}

/// The light ShuffleNet fixture (group 4, 16 units) with its `ConstantOfShape` weights
/// replaced by seeded values in ±0.1 (BN variances in 0.5..1.5). With `constants`, the
/// initializers are no longer listed as graph inputs (as onnxruntime's
/// `remove_initializer_from_input.py` does; the fixture is IR 3, which lists them all,
/// and a graph input may be fed another shape at run time, so it is never sliced).
fn shufflenet(constants: bool) -> Model {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/models/light_shufflenet.onnx"
    );
    let mut m = Model::load(path).expect("fixture");
    let g = &mut m.graph;
    let mut seed = 1000;
    let mut weights = Vec::new();
    g.nodes.retain(|n| {
        let shape = match (n.op_type.as_str(), n.inputs.first()) {
            ("ConstantOfShape", Some(s)) => g.initializers.iter().find(|(k, _)| k == s),
            _ => None,
        };
        let Some((_, Tensor::I64(s))) = shape else {
            return true;
        };
        let dims: Vec<usize> = s.iter().map(|&d| d as usize).collect();
        seed += 1;
        let out = n.outputs[0].clone();
        let t = match tensor(&dims, seed) {
            Tensor::F32(a) if out.ends_with("_riv_0") => Tensor::F32(a.mapv(|x| 1.0 + x / 2.0)),
            Tensor::F32(a) => Tensor::F32(a.mapv(|x| x / 10.0)),
            t => t,
        };
        weights.push((out, t));
        false
    });
    g.initializers.extend(weights);
    if constants {
        let inits: Vec<String> = g.initializers.iter().map(|(k, _)| k.clone()).collect();
        g.inputs.retain(|i| !inits.contains(&i.name));
    }
    m
}

fn run_shufflenet(m: &Model) -> ArrayD<f32> {
    let plan = Plan::new(m, PlanOptions::with_threads(1)).expect("plan");
    let x = tensor(&[1, 3, 224, 224], 7);
    let out = plan.run(&[("gpu_0/data_0", x)]).expect("run");
    out[0].1.as_f32().expect("f32").clone()
}

#[test]
fn shufflenet_bottlenecks_are_pruned_exactly() {
    let orig = shufflenet(false);
    let mut m = orig.clone();
    let r = prune_model(&mut m, &cfg(0.5, StructuredConfig::default())).expect("prune");
    let pruned = r.groups.iter().filter(|g| !g.removed.is_empty()).count();
    let blocked: Vec<&str> = r
        .groups
        .iter()
        .filter_map(|g| g.blocked.as_deref())
        .collect();
    // 16 bottlenecks (first grouped conv → shuffle → depthwise → second grouped conv):
    // the 12 of the first unit and of stages 3 and 4 are pruned; the 4 of stage 2
    // (34 channels per group, read in slices of 34 after a shuffle of 4 blocks: a slice
    // ends inside a shuffled channel) block.
    assert_eq!(pruned, 12, "{blocked:#?}");
    assert_eq!(
        blocked
            .iter()
            .filter(|b| b.contains("input slices do not split"))
            .count(),
        4,
        "{blocked:#?}"
    );
    assert!(
        r.model_params_after * 10 < r.model_params_before * 8,
        "{} -> {}",
        r.model_params_before,
        r.model_params_after
    );
    // Stage 3's first shuffle: 4 blocks of 68 channels, 17 · 4 · 4 of them in one
    // group; half of the 17 (8) removed from each of the 16 copies: 4 blocks of 36.
    assert_eq!(ints_of(&m, "OC2_DUMMY_21"), [1, 4, 36, 14, 14]);
    assert_eq!(ints_of(&m, "OC2_DUMMY_23"), [1, 144, 14, 14]);
    // The residual streams are one group (below), blocked by the stem's parameters,
    // which are graph inputs.
    let stream = group_of(&r.groups, "gpu_0/conv3_0_w_0", MemberKind::Output);
    assert!(
        stream
            .blocked
            .as_deref()
            .is_some_and(|b| b.contains("`gpu_0/conv3_0_b_0` is shared or a graph input")),
        "{stream:?}"
    );
    let mut zeroed = orig.clone();
    zero_removed(&mut zeroed, &r.groups);
    let run = run_shufflenet;
    let (y0, yz, yp) = (run(&orig), run(&zeroed), run(&m));
    assert_eq!(yp.shape(), [1, 1000]);
    assert!(y0.iter().all(|v| v.is_finite()));
    assert!(y0.iter().zip(yz.iter()).any(|(a, b)| a != b));
    assert_close(&yz, &yp);
}

#[test]
fn shufflenet_streams_are_one_group_through_concat_sum_and_grouped_convs() {
    // Initializers as constants: the stream group opens. The stem's 24 channels, the
    // Concat of each stage's first unit (grouped conv output + AveragePool of the
    // previous stream), the Sums and the grouped convs' slices (34 = 28 + 6, ...) cut
    // and couple every stream down to 2 channels of gcd width; the final
    // `Reshape [1, 544]` is followed as a flatten into the Gemm.
    let orig = shufflenet(true);
    let mut m = orig.clone();
    let r = prune_model(&mut m, &cfg(0.5, StructuredConfig::default())).expect("prune");
    let stream = group_of(&r.groups, "gpu_0/conv3_0_w_0", MemberKind::Output);
    assert_eq!(
        (stream.channels, stream.removed.len(), &stream.blocked),
        (2, 1, &None)
    );
    assert!(
        stream
            .members
            .iter()
            .any(|x| x.tensor == "gpu_0/pred_w_0" && x.kind == MemberKind::Input)
    );
    assert_eq!(
        r.groups.iter().filter(|g| !g.removed.is_empty()).count(),
        13
    );
    assert_eq!(shape_of(&m, "gpu_0/conv3_0_w_0"), [12, 3, 3, 3]);
    assert_eq!(shape_of(&m, "gpu_0/pred_w_0"), [1000, 272]);
    assert!(
        r.model_params_after * 10 < r.model_params_before * 4,
        "{r:?}"
    );
    let mut zeroed = orig.clone();
    zero_removed(&mut zeroed, &r.groups);
    let (yz, yp) = (run_shufflenet(&zeroed), run_shufflenet(&m));
    assert_eq!(yp.shape(), [1, 1000]);
    assert_close(&yz, &yp);
}

#[test]
fn a_reshape_to_batch_by_features_is_a_flatten() {
    // c1 (8) → MaxPool → [1, 8, 3, 3] → Reshape → Gemm(5): each channel is a block of
    // 9 features; an explicit feature count is rewritten, `-1` needs nothing.
    for (shape, after) in [([1i64, 72], [1i64, 36]), ([0, -1], [0, -1])] {
        let mut n = Net {
            b: ModelBuilder::new(13)
                .input(vi("x", &[1, 4, 6, 6]))
                .output(vi("y", &[1, 5])),
            seed: 500,
        };
        n.conv("c1", "x", 8, 4, 3, 1);
        n.op("Relu", &["c1"], "r1");
        n.node(
            Node::new("MaxPool", &["r1"], &["mp"])
                .with_name("mp")
                .with_attr("kernel_shape", Attribute::Ints(vec![2, 2]))
                .with_attr("strides", Attribute::Ints(vec![2, 2])),
        );
        n.init("shape", ints(&shape));
        n.op("Reshape", &["mp", "shape"], "flat");
        n.init("fc.w", tensor(&[5, 72], 501));
        n.init("fc.b", tensor(&[5], 502));
        n.node(
            Node::new("Gemm", &["flat", "fc.w", "fc.b"], &["y"])
                .with_name("fc")
                .with_attr("transB", Attribute::Int(1)),
        );
        let orig = n.b.build().expect("model");
        let (m, r) = prune_exact(&orig, &[1, 4, 6, 6]);
        let g = group_of(&r.groups, "c1.w", MemberKind::Output);
        assert_eq!(names(g, MemberKind::Input), ["fc.w@1+0x9"]);
        assert_eq!((g.removed.len(), &g.blocked), (4, &None));
        assert_eq!(ints_of(&m, "shape"), after);
        assert_eq!(shape_of(&m, "fc.w"), [5, 36]);
    }
}

#[test]
fn split_sizes_in_the_attribute_are_rewritten() {
    // Opset 11: the sizes are the `split` attribute.
    let mut n = Net {
        b: ModelBuilder::new(11)
            .input(vi("x", &[1, 4, 6, 6]))
            .output(vi("y", &[1, 4, 6, 6])),
        seed: 600,
    };
    n.conv("c1", "x", 8, 4, 3, 1);
    n.op("Relu", &["c1"], "r1");
    n.node(
        Node::new("Split", &["r1"], &["p", "q"])
            .with_name("split")
            .with_attr("axis", Attribute::Int(1))
            .with_attr("split", Attribute::Ints(vec![3, 5])),
    );
    n.conv("c2", "p", 4, 3, 3, 1);
    n.conv("c3", "q", 4, 5, 1, 1);
    n.op("Add", &["c2", "c3"], "y");
    let orig = n.b.build().expect("model");
    let (m, _) = prune_exact(&orig, &[1, 4, 6, 6]);
    assert_eq!(attr_of(&m, "split", "split"), &Attribute::Ints(vec![1, 3]));
    assert_eq!(shape_of(&m, "c1.w"), [4, 4, 3, 3]);
}

#[test]
fn a_reshape_that_moves_the_batch_is_no_shuffle() {
    // [1, 8, 6, 6] → [2, 2, 4, 3, 6] mixes the rows into the batch: blocked.
    let mut n = Net {
        b: ModelBuilder::new(13)
            .input(vi("x", &[1, 4, 6, 6]))
            .output(vi("y", &[1, 5, 6, 6])),
        seed: 700,
    };
    n.conv("c1", "x", 8, 4, 1, 1);
    n.init("s5", ints(&[2, 2, 4, 3, 6]));
    n.op("Reshape", &["c1", "s5"], "sh5");
    n.node(
        Node::new("Transpose", &["sh5"], &["tr"])
            .with_name("tr")
            .with_attr("perm", Attribute::Ints(vec![0, 2, 1, 3, 4])),
    );
    n.init("s4", ints(&[1, 8, 6, 6]));
    n.op("Reshape", &["tr", "s4"], "shuf");
    n.conv("c2", "shuf", 5, 8, 3, 1);
    n.op("Relu", &["c2"], "y");
    let orig = n.b.build().expect("model");
    assert_blocked(&orig, "c1.w", "does not keep the batch");
}

#[test]
fn a_depthwise_conv_of_another_width_blocks_its_input() {
    // A malformed depthwise conv (group 4, weight [4, 1, 3, 3]) on c1's 8 channels: no
    // panic, c1's group is blocked and the model unchanged.
    let mut n = Net {
        b: ModelBuilder::new(13)
            .input(vi("x", &[1, 4, 6, 6]))
            .output(vi("y", &[1, 4, 6, 6])),
        seed: 800,
    };
    n.conv("c1", "x", 8, 4, 3, 1);
    n.conv("dw", "c1", 4, 4, 3, 4);
    n.op("Relu", &["dw"], "y");
    let orig = n.b.build_unchecked();
    assert_blocked(&orig, "c1.w", "depthwise Conv `dw` of 4 channels");
}

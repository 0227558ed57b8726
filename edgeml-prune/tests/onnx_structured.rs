//! Structured pruning of coupled channel groups on a small CNN built in code: a
//! residual block, a Concat of two branches, a depthwise-separable block and a
//! Flatten→Gemm head; and the cases that must stay untouched.
#![cfg(feature = "onnx")]

use edgeml_onnx::{
    Attribute, Dim, Model, ModelBuilder, Node, Plan, PlanOptions, Tensor, ValueInfo,
};
use edgeml_prune::onnx::{GroupReport, MemberKind, StructuredConfig};
use edgeml_prune::pattern::Norm;
use edgeml_prune::{PruneConfig, Scope, prune_model};
use ndarray::{ArrayD, Axis};

fn tensor(shape: &[usize], seed: u32) -> Tensor {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|i| {
            let h = ((i as u32).wrapping_add(seed.wrapping_mul(7919)) ^ seed)
                .wrapping_mul(2_654_435_761)
                >> 8;
            (h % 2001) as f32 / 1000.0 - 1.0
        })
        .collect();
    Tensor::F32(ArrayD::from_shape_vec(shape, v).expect("shape"))
}

fn positive(shape: &[usize], seed: u32) -> Tensor {
    match tensor(shape, seed) {
        Tensor::F32(a) => Tensor::F32(a.mapv(|x| 0.5 + x.abs())),
        t => t,
    }
}

fn vi(name: &str, shape: &[usize]) -> ValueInfo {
    ValueInfo::tensor(
        name,
        edgeml_core::DType::F32,
        shape.iter().map(|&d| Dim::from(d)).collect(),
    )
}

struct Net {
    b: ModelBuilder,
    seed: u32,
}

impl Net {
    fn init(&mut self, name: &str, t: Tensor) {
        let b = std::mem::replace(&mut self.b, ModelBuilder::new(13));
        self.b = b.initializer(name, t);
    }
    fn node(&mut self, n: Node) {
        let b = std::mem::replace(&mut self.b, ModelBuilder::new(13));
        self.b = b.node(n);
    }
    fn conv(&mut self, name: &str, x: &str, cout: usize, cin: usize, k: usize, group: usize) {
        self.seed += 1;
        self.init(
            &format!("{name}.w"),
            tensor(&[cout, cin / group, k, k], self.seed),
        );
        self.init(&format!("{name}.b"), tensor(&[cout], self.seed + 100));
        let p = (k / 2) as i64;
        let mut n = Node::new(
            "Conv",
            &[x, &format!("{name}.w"), &format!("{name}.b")],
            &[name],
        )
        .with_name(name)
        .with_attr("pads", Attribute::Ints(vec![p; 4]));
        if group > 1 {
            n = n.with_attr("group", Attribute::Int(group as i64));
        }
        self.node(n);
    }
    fn bn(&mut self, name: &str, x: &str, c: usize) {
        self.seed += 1;
        let s = self.seed;
        let p: Vec<String> = ["scale", "bias", "mean", "var"]
            .iter()
            .map(|p| format!("{name}.{p}"))
            .collect();
        self.init(&p[0], tensor(&[c], s + 200));
        self.init(&p[1], tensor(&[c], s + 300));
        self.init(&p[2], tensor(&[c], s + 400));
        self.init(&p[3], positive(&[c], s + 500));
        let ins: Vec<&str> = std::iter::once(x)
            .chain(p.iter().map(String::as_str))
            .collect();
        self.node(Node::new("BatchNormalization", &ins, &[name]).with_name(name));
    }
    fn op(&mut self, op: &str, ins: &[&str], out: &str) {
        self.node(Node::new(op, ins, &[out]).with_name(out));
    }
}

/// x[1,3,8,8] → c1-bn1-relu → residual (c2-bn2-relu-c3-bn3 + skip) → relu →
/// {a: 1x1 conv 4, b: 3x3 conv 6} → Concat(10) → depthwise 3x3 → bn → relu → pw 1x1
/// (12) → relu → MaxPool 2 → Flatten → Gemm(5).
fn cnn() -> Model {
    let mut n = Net {
        b: ModelBuilder::new(13)
            .input(vi("x", &[1, 3, 8, 8]))
            .output(vi("y", &[1, 5])),
        seed: 0,
    };
    n.conv("c1", "x", 8, 3, 3, 1);
    n.bn("bn1", "c1", 8);
    n.op("Relu", &["bn1"], "r1");
    n.conv("c2", "r1", 8, 8, 3, 1);
    n.bn("bn2", "c2", 8);
    n.op("Relu", &["bn2"], "r2");
    n.conv("c3", "r2", 8, 8, 3, 1);
    n.bn("bn3", "c3", 8);
    n.op("Add", &["r1", "bn3"], "sum");
    n.op("Relu", &["sum"], "r3");
    n.conv("a", "r3", 4, 8, 1, 1);
    n.op("Relu", &["a"], "ra");
    n.conv("b", "r3", 6, 8, 3, 1);
    n.op("Relu", &["b"], "rb");
    n.node(
        Node::new("Concat", &["ra", "rb"], &["cat"])
            .with_name("cat")
            .with_attr("axis", Attribute::Int(1)),
    );
    n.conv("dw", "cat", 10, 10, 3, 10);
    n.bn("bndw", "dw", 10);
    n.op("Relu", &["bndw"], "rdw");
    n.conv("pw", "rdw", 12, 10, 1, 1);
    n.op("Relu", &["pw"], "rpw");
    n.node(
        Node::new("MaxPool", &["rpw"], &["mp"])
            .with_name("mp")
            .with_attr("kernel_shape", Attribute::Ints(vec![2, 2]))
            .with_attr("strides", Attribute::Ints(vec![2, 2])),
    );
    n.op("Flatten", &["mp"], "flat");
    n.init("fc.w", tensor(&[5, 12 * 16], 77));
    n.init("fc.b", tensor(&[5], 78));
    n.node(
        Node::new("Gemm", &["flat", "fc.w", "fc.b"], &["y"])
            .with_name("fc")
            .with_attr("transB", Attribute::Int(1)),
    );
    // value_info for an intermediate whose width changes: must be dropped.
    n.b = std::mem::replace(&mut n.b, ModelBuilder::new(13)).value_info(vi("r3", &[1, 8, 8, 8]));
    n.b.build().expect("valid model")
}

fn run(m: &Model) -> ArrayD<f32> {
    let plan = Plan::new(m, PlanOptions::with_threads(1)).expect("plan");
    let out = plan.run(&[("x", tensor(&[1, 3, 8, 8], 999))]).expect("run");
    out[0].1.as_f32().expect("f32").clone()
}

fn cfg(sparsity: f64, s: StructuredConfig) -> PruneConfig {
    PruneConfig {
        sparsity,
        structured: Some(s),
        ..PruneConfig::default()
    }
}

fn f32_of(m: &Model, name: &str) -> ArrayD<f32> {
    m.graph
        .initializer(name)
        .and_then(Tensor::as_f32)
        .unwrap_or_else(|| panic!("{name}"))
        .clone()
}

/// The group whose members include `(tensor, kind)`.
fn group_of<'r>(groups: &'r [GroupReport], tensor: &str, kind: MemberKind) -> &'r GroupReport {
    groups
        .iter()
        .find(|g| {
            g.members
                .iter()
                .any(|m| m.tensor == tensor && m.kind == kind)
        })
        .unwrap_or_else(|| panic!("no group with {tensor} {kind:?}"))
}

fn names(g: &GroupReport, kind: MemberKind) -> Vec<String> {
    let mut v: Vec<String> = g
        .members
        .iter()
        .filter(|m| m.kind == kind)
        .map(|m| format!("{}@{}+{}x{}", m.tensor, m.axis, m.offset, m.block))
        .collect();
    v.sort();
    v
}

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

/// Zeroes, in `m`, every member slice of every removed channel of `groups`.
fn zero_removed(m: &mut Model, groups: &[GroupReport]) {
    for g in groups {
        for mem in &g.members {
            let Some((_, Tensor::F32(a))) = m
                .graph
                .initializers
                .iter_mut()
                .find(|(n, _)| *n == mem.tensor)
            else {
                panic!("{}", mem.tensor)
            };
            for &c in &g.removed {
                for j in 0..mem.block {
                    a.index_axis_mut(Axis(mem.axis), (mem.offset + c) * mem.block + j)
                        .fill(0.0);
                }
            }
        }
    }
}

fn assert_close(a: &ArrayD<f32>, b: &ArrayD<f32>) {
    assert_eq!(a.shape(), b.shape());
    for (x, y) in a.iter().zip(b.iter()) {
        assert!((x - y).abs() <= 1e-5 * (1.0 + x.abs()), "{x} vs {y}");
    }
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
fn blocked_groups_stay_untouched_and_say_why() {
    // c1's output also goes through a Reshape (to the graph output), b's conv is
    // grouped (group 2), and the residual Add joins an untracked graph input.
    let mut n = Net {
        b: ModelBuilder::new(13)
            .input(vi("x", &[1, 4, 6, 6]))
            .input(vi("skip", &[1, 8, 6, 6]))
            .output(vi("y", &[1, 8, 6, 6]))
            .output(vi("flat", &[1, 288])),
        seed: 40,
    };
    n.conv("c1", "x", 8, 4, 3, 1);
    n.op("Relu", &["c1"], "r1");
    n.init("shape", Tensor::I64(ndarray::arr1(&[1i64, 288]).into_dyn()));
    n.op("Reshape", &["r1", "shape"], "flat");
    n.conv("g", "r1", 8, 8, 3, 2);
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
    assert!(why("c1.w").contains("Reshape `flat`"), "{}", why("c1.w"));
    assert!(why("c1.w").contains("grouped Conv `g`"), "{}", why("c1.w"));
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
    let mut m = orig.clone();
    let r = prune_model(&mut m, &cfg(0.5, StructuredConfig::default())).expect("prune");
    let g = group_of(&r.groups, "c1.w", MemberKind::Output);
    assert!(
        g.blocked
            .as_deref()
            .is_some_and(|b| b.contains("reads channels as a parameter")),
        "{g:?}"
    );
    assert_eq!(m, orig);
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
    let mut m = orig.clone();
    let r = prune_model(&mut m, &cfg(0.5, StructuredConfig::default())).expect("prune");
    let g = group_of(&r.groups, "c1.w", MemberKind::Output);
    assert!(
        g.blocked
            .as_deref()
            .is_some_and(|b| b.contains("`r` is read by a subgraph")),
        "{g:?}"
    );
    assert_eq!(m, orig);
}

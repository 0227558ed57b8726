//! Helpers of the structured-pruning tests: a small deterministic generator, a model
//! builder for conv nets, the CNN with every coupling, and report queries.
#![allow(dead_code, unreachable_pub)]

use edgeml_onnx::{
    Attribute, Dim, Model, ModelBuilder, Node, Plan, PlanOptions, Tensor, ValueInfo,
};
use edgeml_prune::PruneConfig;
use edgeml_prune::onnx::{GroupReport, MemberKind, StructuredConfig};
use ndarray::{ArrayD, Axis};

pub fn tensor(shape: &[usize], seed: u32) -> Tensor {
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

pub fn positive(shape: &[usize], seed: u32) -> Tensor {
    match tensor(shape, seed) {
        Tensor::F32(a) => Tensor::F32(a.mapv(|x| 0.5 + x.abs())),
        t => t,
    }
}

pub fn vi(name: &str, shape: &[usize]) -> ValueInfo {
    ValueInfo::tensor(
        name,
        edgeml_core::DType::F32,
        shape.iter().map(|&d| Dim::from(d)).collect(),
    )
}

pub struct Net {
    pub b: ModelBuilder,
    pub seed: u32,
}

impl Net {
    pub fn init(&mut self, name: &str, t: Tensor) {
        let b = std::mem::replace(&mut self.b, ModelBuilder::new(13));
        self.b = b.initializer(name, t);
    }
    pub fn node(&mut self, n: Node) {
        let b = std::mem::replace(&mut self.b, ModelBuilder::new(13));
        self.b = b.node(n);
    }
    pub fn conv(&mut self, name: &str, x: &str, cout: usize, cin: usize, k: usize, group: usize) {
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
    pub fn bn(&mut self, name: &str, x: &str, c: usize) {
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
    pub fn op(&mut self, op: &str, ins: &[&str], out: &str) {
        self.node(Node::new(op, ins, &[out]).with_name(out));
    }
}

/// x[1,3,8,8] → c1-bn1-relu → residual (c2-bn2-relu-c3-bn3 + skip) → relu →
/// {a: 1x1 conv 4, b: 3x3 conv 6} → Concat(10) → depthwise 3x3 → bn → relu → pw 1x1
/// (12) → relu → MaxPool 2 → Flatten → Gemm(5).
pub fn cnn() -> Model {
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

pub fn run(m: &Model) -> ArrayD<f32> {
    let plan = Plan::new(m, PlanOptions::with_threads(1)).expect("plan");
    let out = plan.run(&[("x", tensor(&[1, 3, 8, 8], 999))]).expect("run");
    out[0].1.as_f32().expect("f32").clone()
}

pub fn cfg(sparsity: f64, s: StructuredConfig) -> PruneConfig {
    PruneConfig {
        sparsity,
        structured: Some(s),
        ..PruneConfig::default()
    }
}

pub fn f32_of(m: &Model, name: &str) -> ArrayD<f32> {
    m.graph
        .initializer(name)
        .and_then(Tensor::as_f32)
        .unwrap_or_else(|| panic!("{name}"))
        .clone()
}

/// The group whose members include `(tensor, kind)`.
pub fn group_of<'r>(groups: &'r [GroupReport], tensor: &str, kind: MemberKind) -> &'r GroupReport {
    groups
        .iter()
        .find(|g| {
            g.members
                .iter()
                .any(|m| m.tensor == tensor && m.kind == kind)
        })
        .unwrap_or_else(|| panic!("no group with {tensor} {kind:?}"))
}

pub fn names(g: &GroupReport, kind: MemberKind) -> Vec<String> {
    let mut v: Vec<String> = g
        .members
        .iter()
        .filter(|m| m.kind == kind)
        .map(|m| format!("{}@{}+{}x{}", m.tensor, m.axis, m.offset, m.block))
        .collect();
    v.sort();
    v
}

/// Zeroes, in `m`, every member slice of every removed channel of `groups`.
pub fn zero_removed(m: &mut Model, groups: &[GroupReport]) {
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

pub fn assert_close(a: &ArrayD<f32>, b: &ArrayD<f32>) {
    assert_eq!(a.shape(), b.shape());
    for (x, y) in a.iter().zip(b.iter()) {
        assert!((x - y).abs() <= 1e-5 * (1.0 + x.abs()), "{x} vs {y}");
    }
}

/// Prunes `orig` at sparsity 0.5 (structured, default options) and checks that the
/// group holding `tensor`'s output channels is blocked for a reason containing `why`,
/// and that nothing was changed.
pub fn assert_blocked(orig: &Model, tensor: &str, why: &str) {
    let mut m = orig.clone();
    let r = edgeml_prune::onnx::prune_model(&mut m, &cfg(0.5, StructuredConfig::default()))
        .expect("prune");
    let g = group_of(&r.groups, tensor, MemberKind::Output);
    assert!(
        g.blocked.as_deref().is_some_and(|b| b.contains(why)),
        "{g:?}"
    );
    assert_eq!(&m, orig);
}

//! Plan-time graph rewrites (`GraphOptLevel`): fused and unfused plans of the same
//! model must agree, and rewrites must only happen where they are safe.

mod common;

use edgeml_core::DType;
use edgeml_onnx::{
    Attribute, Dim, Graph, GraphOptLevel, Model, Node, Plan, PlanOptions, Tensor, ValueInfo,
};
use ndarray::{ArrayD, IxDyn};
use std::path::Path;

fn vi(name: &str, shape: &[usize]) -> ValueInfo {
    ValueInfo {
        name: name.into(),
        dtype: Some(DType::F32),
        shape: Some(shape.iter().map(|&d| Dim::Known(d)).collect()),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> Node {
    Node {
        name: outputs[0].to_owned(),
        op_type: op.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn conv(inputs: &[&str], out: &str) -> Node {
    let mut n = node("Conv", inputs, &[out]);
    n.attributes = vec![
        ("kernel_shape".into(), Attribute::Ints(vec![3, 3])),
        ("pads".into(), Attribute::Ints(vec![1, 1, 1, 1])),
    ];
    n
}

/// Deterministic values in [lo, hi).
fn vals(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            lo + (hi - lo) * ((s >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

fn t(shape: &[usize], seed: u64, lo: f32, hi: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), vals(n, seed, lo, hi)).expect("test"))
}

const C: usize = 4;
const X: [usize; 4] = [1, 3, 6, 5];

/// Conv weights `w` [C,3,3,3], bias `b`, BN parameters `s`, `bb`, `m`, `v`.
fn params() -> Vec<(String, Tensor)> {
    vec![
        ("w".into(), t(&[C, 3, 3, 3], 1, -0.5, 0.5)),
        ("b".into(), t(&[C], 2, -0.5, 0.5)),
        ("s".into(), t(&[C], 3, 0.5, 1.5)),
        ("bb".into(), t(&[C], 4, -0.5, 0.5)),
        ("m".into(), t(&[C], 5, -0.2, 0.2)),
        ("v".into(), t(&[C], 6, 0.5, 2.0)),
        ("w2".into(), t(&[C, 3, 3, 3], 7, -0.5, 0.5)),
    ]
}

fn model(nodes: Vec<Node>, inputs: Vec<ValueInfo>, outputs: &[&str]) -> Model {
    let graph = Graph {
        nodes,
        inputs,
        outputs: outputs
            .iter()
            .map(|o| vi(o, &[]))
            .map(|mut v| {
                v.shape = None;
                v
            })
            .collect(),
        initializers: params(),
        ..Default::default()
    };
    common::onnx_model(graph, 17)
}

fn plan(m: &Model, level: GraphOptLevel) -> Plan {
    let mut o = PlanOptions::with_threads(1);
    o.optimization = level;
    Plan::new(m, o).expect("test")
}

/// Runs `m` unoptimized and at every level; returns the outputs and step counts.
fn check(m: &Model, feeds: &[(&str, Tensor)]) -> Vec<usize> {
    let base = plan(m, GraphOptLevel::Disabled);
    let want = base.run(feeds).expect("test");
    let mut steps = vec![base.num_steps()];
    for level in [GraphOptLevel::Basic, GraphOptLevel::Extended] {
        let p = plan(m, level);
        let got = p.run(feeds).expect("test");
        assert_eq!(got.len(), want.len());
        for ((gn, g), (wn, w)) in got.iter().zip(&want) {
            assert_eq!(gn, wn);
            assert_eq!(g.shape(), w.shape());
            let (g, w) = (g.as_f32().expect("test"), w.as_f32().expect("test"));
            for (a, b) in g.iter().zip(w.iter()) {
                assert!(
                    a.is_nan() && b.is_nan() || (a - b).abs() <= 1e-5 + 1e-4 * b.abs(),
                    "{level:?} {gn}: {a} vs {b}"
                );
            }
        }
        steps.push(p.num_steps());
    }
    steps
}

fn x() -> Tensor {
    t(&X, 9, -1.0, 1.0)
}

#[test]
fn conv_bn_relu_becomes_one_step() {
    let m = model(
        vec![
            conv(&["x", "w", "b"], "c"),
            node("BatchNormalization", &["c", "s", "bb", "m", "v"], &["n"]),
            node("Relu", &["n"], &["y"]),
        ],
        vec![vi("x", &X)],
        &["y"],
    );
    assert_eq!(check(&m, &[("x", x())]), vec![3, 2, 1]);
}

#[test]
fn conv_without_bias_gets_one_from_bn() {
    let m = model(
        vec![
            conv(&["x", "w"], "c"),
            node("BatchNormalization", &["c", "s", "bb", "m", "v"], &["y"]),
        ],
        vec![vi("x", &X)],
        &["y"],
    );
    assert_eq!(check(&m, &[("x", x())]), vec![2, 1, 1]);
}

#[test]
fn bn_output_used_twice_still_folds_but_relu_is_not_fused_into_its_user() {
    // n feeds Relu and the graph output: the BN folds into the conv (its input c has one
    // consumer) but the chain must stop at n.
    let m = model(
        vec![
            conv(&["x", "w", "b"], "c"),
            node("BatchNormalization", &["c", "s", "bb", "m", "v"], &["n"]),
            node("Relu", &["n"], &["y"]),
            node("Sigmoid", &["n"], &["z"]),
        ],
        vec![vi("x", &X)],
        &["y", "z"],
    );
    assert_eq!(check(&m, &[("x", x())]), vec![4, 3, 3]);
}

#[test]
fn conv_output_used_twice_or_as_graph_output_is_not_fused() {
    let m = model(
        vec![
            conv(&["x", "w", "b"], "c"),
            node("BatchNormalization", &["c", "s", "bb", "m", "v"], &["n"]),
        ],
        vec![vi("x", &X)],
        &["n", "c"],
    );
    assert_eq!(check(&m, &[("x", x())]), vec![2, 2, 2]);
    let m = model(
        vec![
            conv(&["x", "w", "b"], "c"),
            node("Relu", &["c"], &["r"]),
            node("Add", &["c", "r"], &["y"]),
        ],
        vec![vi("x", &X)],
        &["y"],
    );
    assert_eq!(check(&m, &[("x", x())]), vec![3, 3, 3]);
}

#[test]
fn clip_with_runtime_bounds_is_not_fused_constant_bounds_are() {
    let nodes = |lo: &str, hi: &str| {
        vec![
            conv(&["x", "w", "b"], "c"),
            node("Clip", &["c", lo, hi], &["y"]),
        ]
    };
    let scalar = |v: f32| Tensor::F32(ArrayD::from_elem(IxDyn(&[]), v));
    let m = model(
        nodes("lo", "hi"),
        vec![vi("x", &X), vi("lo", &[]), vi("hi", &[])],
        &["y"],
    );
    let feeds = [("x", x()), ("lo", scalar(-0.3)), ("hi", scalar(0.4))];
    assert_eq!(check(&m, &feeds), vec![2, 2, 2]);
    let mut m = model(nodes("lo", ""), vec![vi("x", &X)], &["y"]);
    m.graph.initializers.push(("lo".into(), scalar(-0.3)));
    assert_eq!(check(&m, &[("x", x())]), vec![2, 2, 1]);
}

#[test]
fn every_activation_fuses_and_matches() {
    for (op, attrs) in [
        ("Relu", vec![]),
        (
            "LeakyRelu",
            vec![("alpha".to_owned(), Attribute::Float(0.3))],
        ),
        ("Sigmoid", vec![]),
        ("Tanh", vec![]),
        ("HardSwish", vec![]),
        (
            "HardSigmoid",
            vec![
                ("alpha".to_owned(), Attribute::Float(0.3)),
                ("beta".to_owned(), Attribute::Float(0.4)),
            ],
        ),
    ] {
        let mut a = node(op, &["c"], &["y"]);
        a.attributes = attrs;
        let m = model(
            vec![conv(&["x", "w", "b"], "c"), a],
            vec![vi("x", &X)],
            &["y"],
        );
        assert_eq!(check(&m, &[("x", x())]), vec![2, 2, 1], "{op}");
    }
}

/// Every activation fused into a convolution gives the unfused plan's bits, on every
/// GEMM source (input rows for a 1×1, phase planes for a padded 3×3 at stride 1 and at
/// stride 2, where the output columns are remapped), with and without a bias and a
/// residual `Add` (the fused `Z`), NaN included.
#[test]
fn every_activation_fuses_bit_for_bit_on_every_conv_path() {
    let acts: [(&str, Vec<(String, Attribute)>); 8] = [
        ("Relu", vec![]),
        ("LeakyRelu", vec![("alpha".into(), Attribute::Float(0.3))]),
        ("Sigmoid", vec![]),
        ("Tanh", vec![]),
        ("HardSwish", vec![]),
        (
            "HardSigmoid",
            vec![
                ("alpha".into(), Attribute::Float(0.3)),
                ("beta".into(), Attribute::Float(0.4)),
            ],
        ),
        (
            "Clip",
            vec![
                ("min".into(), Attribute::Float(-0.25)),
                ("max".into(), Attribute::Float(0.5)),
            ],
        ),
        ("Elu", vec![]),
    ];
    // (kernel, stride, pad)
    let shapes = [(1usize, 1usize, 0usize), (3, 1, 1), (3, 2, 1)];
    let xs = [1, 3, 9, 11];
    let mut xv = t(&xs, 9, -1.0, 1.0);
    if let Tensor::F32(a) = &mut xv {
        a[[0, 1, 4, 4]] = f32::NAN;
        a[[0, 2, 0, 0]] = -0.0;
    }
    for (k, s, p) in shapes {
        let ys = [1, C, (9 + 2 * p - k) / s + 1, (11 + 2 * p - k) / s + 1];
        for with_bias in [true, false] {
            for residual in [false, true] {
                for (op, attrs) in &acts {
                    let inputs: &[&str] = if with_bias {
                        &["x", "wk", "b"]
                    } else {
                        &["x", "wk"]
                    };
                    let mut c = node("Conv", inputs, &["c"]);
                    let ints = |v: usize| Attribute::Ints(vec![v as i64; 2]);
                    c.attributes = vec![
                        ("kernel_shape".into(), ints(k)),
                        ("strides".into(), ints(s)),
                        ("pads".into(), Attribute::Ints(vec![p as i64; 4])),
                    ];
                    let mut nodes = vec![c];
                    let pre = if residual {
                        nodes.push(node("Add", &["c", "r"], &["cz"]));
                        "cz"
                    } else {
                        "c"
                    };
                    let mut a = node(op, &[pre], &["y"]);
                    a.attributes = attrs.clone();
                    nodes.push(a);
                    let mut inputs = vec![vi("x", &xs)];
                    let mut feeds = vec![("x", xv.clone())];
                    if residual {
                        inputs.push(vi("r", &ys));
                        feeds.push(("r", t(&ys, 13, -1.0, 1.0)));
                    }
                    let m = model_with(
                        nodes,
                        inputs,
                        &["y"],
                        vec![
                            ("wk", t(&[C, 3, k, k], 11, -0.5, 0.5)),
                            ("b", t(&[C], 2, -0.5, 0.5)),
                        ],
                    );
                    let (base, fused, _) = check_bits(&m, &feeds);
                    // Elu is not fused (its own step either way); the others are.
                    let want = if *op == "Elu" { 2 } else { 1 };
                    let what = format!("{op} k{k} s{s} bias {with_bias} residual {residual}");
                    assert_eq!((base, fused), (2 + residual as usize, want), "{what}");
                }
            }
        }
    }
}

#[test]
fn nan_passes_through_fused_relu_and_residual() {
    let mut xv = x();
    if let Tensor::F32(a) = &mut xv {
        a[[0, 1, 2, 2]] = f32::NAN;
    }
    let m = model(
        vec![conv(&["x", "w", "b"], "c"), node("Relu", &["c"], &["y"])],
        vec![vi("x", &X)],
        &["y"],
    );
    assert_eq!(check(&m, &[("x", xv.clone())]), vec![2, 2, 1]);
    let out = plan(&m, GraphOptLevel::Extended)
        .run(&[("x", xv)])
        .expect("test");
    assert!(out[0].1.as_f32().expect("test").iter().any(|v| v.is_nan()));
}

#[test]
fn residual_add_fuses_and_broadcast_z_falls_back() {
    // Two conv+BN branches summed, then Relu (a ResNet downsample block).
    let m = model(
        vec![
            conv(&["x", "w", "b"], "c1"),
            node("BatchNormalization", &["c1", "s", "bb", "m", "v"], &["n1"]),
            conv(&["x", "w2"], "c2"),
            node("Sum", &["n1", "c2"], &["sum"]),
            node("Relu", &["sum"], &["y"]),
        ],
        vec![vi("x", &X)],
        &["y"],
    );
    assert_eq!(check(&m, &[("x", x())]), vec![5, 4, 2]);
    // Z broadcasts ([1, C, 1, 1]) and Z is a graph input: the fused step must fall back.
    for (zshape, first) in [(vec![1, C, 1, 1], true), (vec![1, C, 6, 5], false)] {
        let inputs = if first { ["c", "z"] } else { ["z", "c"] };
        let m = model(
            vec![
                conv(&["x", "w", "b"], "c"),
                node("Add", &inputs, &["a"]),
                node("Tanh", &["a"], &["y"]),
            ],
            vec![vi("x", &X), vi("z", &zshape)],
            &["y"],
        );
        let feeds = [("x", x()), ("z", t(&zshape, 11, -1.0, 1.0))];
        assert_eq!(check(&m, &feeds), vec![3, 3, 1]);
    }
}

#[test]
fn identity_and_dropout_are_dropped_keeping_output_names() {
    let m = model(
        vec![
            node("Identity", &["x"], &["i"]),
            conv(&["i", "w", "b"], "c"),
            node("Dropout", &["c"], &["d"]),
            node("Relu", &["d"], &["r"]),
            node("Identity", &["r"], &["y"]),
        ],
        vec![vi("x", &X)],
        &["y", "i"],
    );
    let steps = check(&m, &[("x", x())]);
    assert_eq!(steps, vec![5, 2, 2]);
    let out = plan(&m, GraphOptLevel::Extended)
        .run(&[("x", x())])
        .expect("test");
    assert_eq!(out[0].0, "y");
    assert_eq!(out[1].0, "i");
    assert_eq!(&out[1].1, &x());
}

#[test]
fn light_models_agree_fused_and_unfused() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models");
    let names: &[&str] = if cfg!(debug_assertions) {
        &["light_squeezenet"]
    } else {
        &["light_squeezenet", "light_shufflenet", "light_resnet50"]
    };
    for name in names {
        let m = Model::load(dir.join(format!("{name}.onnx"))).expect("test");
        let base = plan(&m, GraphOptLevel::Disabled);
        let info = &base.inputs()[0];
        let shape: Vec<usize> = info
            .shape
            .as_ref()
            .expect("test")
            .iter()
            .map(|d| match d {
                Dim::Known(k) => *k,
                _ => 1,
            })
            .collect();
        let feeds = [(info.name.as_str(), t(&shape, 3, -1.0, 1.0))];
        let steps = check(&m, &feeds);
        assert!(steps[2] < steps[0], "{name}: {steps:?}");
    }
}

fn concat(inputs: &[&str], axis: i64, out: &str) -> Node {
    let mut n = node("Concat", inputs, &[out]);
    n.attributes = vec![("axis".into(), Attribute::Int(axis))];
    n
}

#[test]
fn convs_feeding_a_channel_concat_become_one_step() {
    // A SqueezeNet fire module's expand layers: Conv + Relu and a plain Conv, whose
    // outputs are concatenated on the channel axis. Batch 1 takes the direct path
    // (each conv writes into the concatenated output), batch 2 the fallback.
    let nodes = vec![
        conv(&["x", "w", "b"], "c1"),
        node("Relu", &["c1"], &["r1"]),
        conv(&["x", "w2"], "c2"),
        concat(&["r1", "c2"], 1, "y"),
    ];
    for shape in [X, [2, 3, 6, 5]] {
        let m = model(nodes.clone(), vec![vi("x", &shape)], &["y"]);
        let feeds = [("x", t(&shape, 9, -1.0, 1.0))];
        assert_eq!(check(&m, &feeds), vec![4, 4, 1], "{shape:?}");
    }
}

#[test]
fn concats_of_other_values_or_axes_are_left_alone() {
    // One operand is not a convolution: the conv chains are planned on their own.
    let m = model(
        vec![
            conv(&["x", "w", "b"], "c1"),
            node("Relu", &["c1"], &["r1"]),
            concat(&["r1", "x"], 1, "y"),
        ],
        vec![vi("x", &X)],
        &["y"],
    );
    assert_eq!(check(&m, &[("x", x())]), vec![3, 3, 2]);
    let two_convs = |axis: i64, outputs: &[&str]| {
        let nodes = vec![
            conv(&["x", "w", "b"], "c1"),
            conv(&["x", "w2"], "c2"),
            concat(&["c1", "c2"], axis, "y"),
        ];
        model(nodes, vec![vi("x", &X)], outputs)
    };
    // Not the channel axis.
    assert_eq!(check(&two_convs(2, &["y"]), &[("x", x())]), vec![3, 3, 3]);
    // A conv output that is also a graph output.
    assert_eq!(
        check(&two_convs(1, &["y", "c2"]), &[("x", x())]),
        vec![3, 3, 3]
    );
    // Both conditions met: one step.
    assert_eq!(check(&two_convs(1, &["y"]), &[("x", x())]), vec![3, 3, 1]);
}

/// `Mul(c, Sigmoid(c))` after a Conv (YOLOv8's SiLU, either operand order) becomes the
/// convolution's epilogue, bit-identical to the two operators; a Sigmoid that is also
/// a graph output, a Mul by another value, or a Mul of the sigmoid by itself stays.
#[test]
fn conv_hard_sigmoid_gate_fuses_as_hardswish_bit_for_bit() {
    // PyTorch's export of hardswish before opset 14: Mul(x, HardSigmoid(x, 1/6, 1/2)).
    let gate = |alpha: f32| {
        let mut n = node("HardSigmoid", &["c"], &["hs"]);
        n.attributes.push(("alpha".into(), Attribute::Float(alpha)));
        n
    };
    for order in [["c", "hs"], ["hs", "c"]] {
        let m = model(
            vec![
                conv(&["x", "w", "b"], "c"),
                gate(1.0 / 6.0),
                node("Mul", &order, &["y"]),
            ],
            vec![vi("x", &X)],
            &["y"],
        );
        let mut xv = x();
        if let Tensor::F32(a) = &mut xv {
            a[[0, 1, 2, 2]] = f32::NAN;
        }
        let feeds = [("x", xv)];
        assert_eq!(check(&m, &feeds), vec![3, 3, 1], "{order:?}");
        let want = plan(&m, GraphOptLevel::Disabled).run(&feeds).expect("test");
        let got = plan(&m, GraphOptLevel::Extended).run(&feeds).expect("test");
        let (w, g) = (
            want[0].1.as_f32().expect("test"),
            got[0].1.as_f32().expect("test"),
        );
        assert!(
            g.iter().any(|v| v.is_nan()),
            "NaN must pass through HardSwish"
        );
        for (a, b) in g.iter().zip(w.iter()) {
            assert!(
                a.to_bits() == b.to_bits() || a.is_nan() && b.is_nan(),
                "{a} vs {b}"
            );
        }
    }
    // Any other slope is not HardSwish: the convolution's output has two readers, so
    // nothing fuses.
    let m = model(
        vec![
            conv(&["x", "w", "b"], "c"),
            gate(0.2),
            node("Mul", &["c", "hs"], &["y"]),
        ],
        vec![vi("x", &X)],
        &["y"],
    );
    assert_eq!(check(&m, &[("x", x())]), vec![3, 3, 3]);
}

#[test]
fn conv_silu_fuses_bit_for_bit() {
    for order in [["c", "sg"], ["sg", "c"]] {
        let m = model(
            vec![
                conv(&["x", "w", "b"], "c"),
                node("Sigmoid", &["c"], &["sg"]),
                node("Mul", &order, &["y"]),
                node("Relu", &["y"], &["z"]),
            ],
            vec![vi("x", &X)],
            &["z"],
        );
        let mut xv = x();
        if let Tensor::F32(a) = &mut xv {
            a[[0, 1, 2, 2]] = f32::NAN;
        }
        let feeds = [("x", xv)];
        assert_eq!(check(&m, &feeds), vec![4, 4, 2], "{order:?}");
        let want = plan(&m, GraphOptLevel::Disabled).run(&feeds).expect("test");
        let got = plan(&m, GraphOptLevel::Extended).run(&feeds).expect("test");
        let (w, g) = (
            want[0].1.as_f32().expect("test"),
            got[0].1.as_f32().expect("test"),
        );
        assert!(g.iter().any(|v| v.is_nan()), "NaN must pass through SiLU");
        for (a, b) in g.iter().zip(w.iter()) {
            assert!(
                a.to_bits() == b.to_bits() || a.is_nan() && b.is_nan(),
                "{a} vs {b}"
            );
        }
    }
    let not_silu = [
        // The sigmoid is a graph output too.
        (
            vec![
                node("Sigmoid", &["c"], &["sg"]),
                node("Mul", &["c", "sg"], &["y"]),
            ],
            vec!["y", "sg"],
            vec![3, 3, 3],
        ),
        // Mul by another value.
        (
            vec![
                node("Sigmoid", &["c"], &["sg"]),
                node("Relu", &["c"], &["r"]),
                node("Mul", &["r", "sg"], &["y"]),
            ],
            vec!["y"],
            vec![4, 4, 4],
        ),
        // Sigmoid squared: only the Sigmoid joins the convolution.
        (
            vec![
                node("Sigmoid", &["c"], &["sg"]),
                node("Mul", &["sg", "sg"], &["y"]),
            ],
            vec!["y"],
            vec![3, 3, 2],
        ),
    ];
    for (tail, outs, want) in not_silu {
        let mut nodes = vec![conv(&["x", "w", "b"], "c")];
        nodes.extend(tail);
        let m = model(nodes, vec![vi("x", &X)], &outs);
        assert_eq!(check(&m, &[("x", x())]), want, "{outs:?}");
    }
}

/// A model of `nodes` with the given initializers (opset 17).
fn model_with(
    nodes: Vec<Node>,
    inputs: Vec<ValueInfo>,
    outputs: &[&str],
    inits: Vec<(&str, Tensor)>,
) -> Model {
    let mut m = model(nodes, inputs, outputs);
    m.graph.initializers = inits.into_iter().map(|(n, t)| (n.to_owned(), t)).collect();
    m
}

/// Runs `m` unfused and fused; asserts the outputs are bit-identical (NaNs where the
/// unfused plan has them) and returns both step counts and the fused plan's sparse
/// steps.
fn check_bits(m: &Model, feeds: &[(&str, Tensor)]) -> (usize, usize, usize) {
    let base = plan(m, GraphOptLevel::Disabled);
    let want = base.run(feeds).expect("test");
    let fused = plan(m, GraphOptLevel::Extended);
    // Twice: the second run gets recycled buffers.
    for _ in 0..2 {
        let got = fused.run(feeds).expect("test");
        for ((gn, g), (wn, w)) in got.iter().zip(&want) {
            assert_eq!((gn, g.shape()), (wn, w.shape()));
            let (g, w) = (g.as_f32().expect("test"), w.as_f32().expect("test"));
            for (a, b) in g.iter().zip(w.iter()) {
                assert!(
                    a.to_bits() == b.to_bits() || a.is_nan() && b.is_nan(),
                    "{gn}: {a} vs {b}"
                );
            }
        }
    }
    (base.num_steps(), fused.num_steps(), fused.sparse_steps())
}

#[test]
fn matmul_with_a_constant_bias_add_is_one_step_bit_for_bit() {
    let w = t(&[6, 7], 21, -1.0, 1.0);
    let mut a = t(&[2, 5, 6], 22, -1.0, 1.0);
    if let Tensor::F32(x) = &mut a {
        x[[1, 2, 3]] = f32::NAN;
    }
    for (bshape, first) in [
        (vec![7], true),
        (vec![7], false),
        (vec![1, 7], true),
        (vec![1, 1, 7], false),
    ] {
        let ins = if first { ["p", "bias"] } else { ["bias", "p"] };
        let m = model_with(
            vec![
                node("MatMul", &["a", "w"], &["p"]),
                node("Add", &ins, &["y"]),
            ],
            vec![vi("a", &[2, 5, 6])],
            &["y"],
            vec![("w", w.clone()), ("bias", t(&bshape, 23, -1.0, 1.0))],
        );
        assert_eq!(check_bits(&m, &[("a", a.clone())]), (2, 1, 0), "{bshape:?}");
    }
    // A 1-D `A`: the product is [7] and a [1, 7] bias broadcasts it to [1, 7], which
    // the fused step leaves to the original `Add`.
    let m = model_with(
        vec![
            node("MatMul", &["a", "w"], &["p"]),
            node("Add", &["p", "bias"], &["y"]),
        ],
        vec![vi("a", &[6])],
        &["y"],
        vec![("w", w.clone()), ("bias", t(&[1, 7], 24, -1.0, 1.0))],
    );
    let out = plan(&m, GraphOptLevel::Extended)
        .run(&[("a", t(&[6], 25, -1.0, 1.0))])
        .expect("test");
    assert_eq!(out[0].1.shape(), &[1, 7]);
    assert_eq!(check_bits(&m, &[("a", t(&[6], 25, -1.0, 1.0))]), (2, 1, 0));
}

#[test]
fn matmul_bias_fusion_only_where_it_is_the_same_add() {
    let w = || ("w", t(&[6, 7], 31, -1.0, 1.0));
    let bias = |shape: &[usize]| ("bias", t(shape, 33, -1.0, 1.0));
    let a = || ("a", t(&[5, 6], 32, -1.0, 1.0));
    let mm_add = || {
        vec![
            node("MatMul", &["a", "w"], &["p"]),
            node("Add", &["p", "bias"], &["y"]),
        ]
    };
    let not_fused = |m: Model, feeds: &[(&str, Tensor)], why: &str| {
        let (base, fused, _) = check_bits(&m, feeds);
        assert_eq!(fused, base, "{why}: must not fuse");
    };
    let m = model_with(
        mm_add(),
        vec![vi("a", &[5, 6])],
        &["y"],
        vec![w(), bias(&[5, 7])],
    );
    not_fused(m, &[a()], "bias varying along rows");
    let ins = vec![vi("a", &[5, 6]), vi("bias", &[7])];
    let m = model_with(mm_add(), ins, &["y"], vec![w()]);
    not_fused(m, &[a(), bias(&[7])], "bias given at run time");
    let ins = vec![vi("a", &[5, 6]), vi("w", &[6, 7])];
    let m = model_with(mm_add(), ins, &["y"], vec![bias(&[7])]);
    not_fused(m, &[a(), w()], "weight given at run time");
    let mut nodes = mm_add();
    nodes.push(node("Relu", &["p"], &["r"]));
    let m = model_with(
        nodes,
        vec![vi("a", &[5, 6])],
        &["y", "r"],
        vec![w(), bias(&[7])],
    );
    not_fused(m, &[a()], "product read twice");
}

#[test]
fn matmul_bias_fusion_keeps_a_sparse_weight_sparse() {
    // 90% zeros: the fused step's MatMul still runs the sparse kernel.
    let mut w = t(&[40, 30], 41, -1.0, 1.0);
    if let Tensor::F32(x) = &mut w {
        for (i, v) in x.iter_mut().enumerate() {
            if i % 10 != 0 {
                *v = 0.0;
            }
        }
    }
    let m = model_with(
        vec![
            node("MatMul", &["a", "w"], &["p"]),
            node("Add", &["p", "bias"], &["y"]),
        ],
        vec![vi("a", &[3, 40])],
        &["y"],
        vec![("w", w), ("bias", t(&[30], 42, -1.0, 1.0))],
    );
    assert_eq!(
        check_bits(&m, &[("a", t(&[3, 40], 43, -1.0, 1.0))]),
        (2, 1, 1)
    );
}

#[test]
fn split_activations_and_softmax_rows_match_one_thread_bit_for_bit() {
    // 3·100·117 = 35,100 elements (above the 2¹⁵ split threshold, not a multiple of 16),
    // rows of 117 for the Softmax; run twice so the second run gets recycled buffers.
    let shape = [3, 100, 117];
    let mut sm = node("Softmax", &["g"], &["s"]);
    sm.attributes = vec![("axis".into(), Attribute::Int(-1))];
    let graph = Graph {
        nodes: vec![
            node("Gelu", &["x"], &["g"]),
            sm,
            node("Sigmoid", &["s"], &["y"]),
            node("Exp", &["x"], &["e"]),
        ],
        inputs: vec![vi("x", &shape)],
        outputs: vec![vi("y", &shape), vi("e", &shape)],
        ..Default::default()
    };
    let m = common::onnx_model(graph, 20);
    let x = t(&shape, 51, -6.0, 6.0);
    let one = Plan::new(&m, PlanOptions::with_threads(1)).expect("test");
    let want = one.run(&[("x", x.clone())]).expect("test");
    let two = Plan::new(&m, PlanOptions::with_threads(2)).expect("test");
    for _ in 0..2 {
        let got = two.run(&[("x", x.clone())]).expect("test");
        for ((gn, g), (_, w)) in got.iter().zip(&want) {
            let (g, w) = (g.as_f32().expect("test"), w.as_f32().expect("test"));
            assert_eq!(g.shape(), w.shape());
            let same = g
                .iter()
                .zip(w.iter())
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{gn} differs between 1 and 2 threads");
        }
    }
}

//! The table-driven activations and the 8-bit pools: bad parameters are typed errors
//! naming the node (at plan or run time, never a panic); tables built at run time (from
//! run-time scales) equal those built at plan time; and `fuse_qdq` leaves alone the
//! look-alike groups it cannot fuse exactly. Agreement with onnxruntime is checked by
//! the fixtures of `tests/onnx_ops.rs`.
#![cfg(feature = "onnx")]
#![allow(clippy::unwrap_used)]

use edgeml_core::{DType, ErrorKind};
use edgeml_onnx::{
    Attribute, Dim, Model, ModelBuilder, Node, Plan, PlanOptions, Tensor, ValueInfo,
};
use ndarray::{ArrayD, IxDyn};

fn arr<T: Clone>(shape: &[usize], v: Vec<T>) -> ArrayD<T> {
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

fn f(v: f32) -> Tensor {
    Tensor::F32(arr(&[], vec![v]))
}

fn u8s(v: u8) -> Tensor {
    Tensor::U8(arr(&[], vec![v]))
}

fn i8s(v: i8) -> Tensor {
    Tensor::I8(arr(&[], vec![v]))
}

fn dims(s: &[usize]) -> Vec<Dim> {
    s.iter().map(|&d| Dim::Known(d)).collect()
}

/// A one-node model `n1` reading runtime input `x` (u8, 1x1x2x2) and the initializers
/// `x_scale, x_zp, y_scale, y_zp` as its inputs 1..=4.
fn one_node(op: &str, domain: &str, params: [Tensor; 4], attrs: Vec<(&str, Attribute)>) -> Model {
    let mut node = Node::new(op, &["x", "xs", "xz", "ys", "yz"], &["y"])
        .with_name("n1")
        .with_domain(domain);
    for (k, v) in attrs {
        node = node.with_attr(k, v);
    }
    let mut b = ModelBuilder::new(21)
        .opset(domain, 1)
        .input(ValueInfo::tensor("x", DType::U8, dims(&[1, 1, 2, 2])))
        .output(ValueInfo::named("y"))
        .node(node);
    for (name, t) in ["xs", "xz", "ys", "yz"].into_iter().zip(params) {
        b = b.initializer(name, t);
    }
    b.build_unchecked()
}

fn x() -> Tensor {
    Tensor::U8(arr(&[1, 1, 2, 2], vec![0, 100, 128, 255]))
}

/// Plans and runs `m`; returns the error (the test fails if it succeeds).
fn fails(m: &Model) -> edgeml_onnx::Error {
    let reg = edgeml_quant::onnx::registry();
    let r = Plan::with_registry(m, PlanOptions::with_threads(1), &reg)
        .and_then(|p| p.run(&[("x", x())]).map(|_| ()));
    let e = r.expect_err("bad parameters must be refused");
    assert!(
        e.to_string().contains("\"n1\""),
        "the error names the node: {e}"
    );
    assert_ne!(e.kind(), ErrorKind::Internal, "{e}");
    e
}

/// An operator under test: type, domain, and attributes that make it valid.
type OpCase = (&'static str, &'static str, Vec<(&'static str, Attribute)>);

/// The operators under test.
fn ops() -> Vec<OpCase> {
    let ms = "com.microsoft";
    vec![
        ("QLinearSigmoid", ms, vec![]),
        (
            "QLinearLeakyRelu",
            ms,
            vec![("alpha", Attribute::Float(0.1))],
        ),
        (
            "QLinearLookup",
            "com.edgeml",
            vec![("activation", Attribute::String(b"Gelu".to_vec()))],
        ),
        (
            "QLinearAveragePool",
            ms,
            vec![("kernel_shape", Attribute::Ints(vec![2, 2]))],
        ),
    ]
}

#[test]
fn the_operators_run_with_good_parameters() {
    // The control for the error cases below: the same models with valid parameters.
    for (op, dom, attrs) in ops() {
        let m = one_node(op, dom, [f(0.05), u8s(128), f(0.01), u8s(10)], attrs);
        let reg = edgeml_quant::onnx::registry();
        let plan = Plan::with_registry(&m, PlanOptions::with_threads(1), &reg).unwrap();
        let y = plan.run(&[("x", x())]).unwrap();
        assert_eq!(y[0].1.dtype(), DType::U8, "{op}");
    }
}

#[test]
fn scales_must_be_finite_and_positive() {
    for (op, dom, attrs) in ops() {
        for s in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            for which in [0, 2] {
                let mut p = [f(0.05), u8s(128), f(0.01), u8s(10)];
                p[which] = f(s);
                let e = fails(&one_node(op, dom, p, attrs.clone()));
                assert_eq!(e.kind(), ErrorKind::InvalidInput, "{op} scale {s}: {e}");
                assert!(e.to_string().contains("scale"), "{e}");
            }
        }
    }
}

#[test]
fn zero_points_of_the_wrong_type_are_refused() {
    for (op, dom, attrs) in ops() {
        // An int8 input zero point for uint8 data.
        let e = fails(&one_node(
            op,
            dom,
            [f(0.05), i8s(0), f(0.01), u8s(10)],
            attrs.clone(),
        ));
        assert!(e.to_string().contains("zero point"), "{op}: {e}");
        // A float zero point.
        let e = fails(&one_node(
            op,
            dom,
            [f(0.05), f(1.0), f(0.01), u8s(10)],
            attrs.clone(),
        ));
        assert!(e.to_string().contains("zero point"), "{op}: {e}");
        // Several zero points where one is expected.
        let two = Tensor::U8(arr(&[2], vec![1, 2]));
        let e = fails(&one_node(
            op,
            dom,
            [f(0.05), two, f(0.01), u8s(10)],
            attrs.clone(),
        ));
        assert!(e.to_string().contains("zero point"), "{op}: {e}");
        // The com.microsoft operators have one type T: an int8 output zero point too.
        if dom == "com.microsoft" {
            let e = fails(&one_node(
                op,
                dom,
                [f(0.05), u8s(1), f(0.01), i8s(0)],
                attrs,
            ));
            assert_eq!(e.kind(), ErrorKind::InvalidModel, "{op}: {e}");
        }
    }
}

#[test]
fn bad_attributes_and_inputs_are_refused() {
    let p = || [f(0.05), u8s(128), f(0.01), u8s(10)];
    let s = |v: &str| Attribute::String(v.as_bytes().to_vec());
    let e = fails(&one_node(
        "QLinearLookup",
        "com.edgeml",
        p(),
        vec![("activation", s("Swish"))],
    ));
    assert!(e.to_string().contains("Swish"), "{e}");
    let e = fails(&one_node(
        "QLinearLookup",
        "com.edgeml",
        p(),
        vec![("activation", s("Gelu")), ("approximate", s("erf"))],
    ));
    assert!(e.to_string().contains("approximate"), "{e}");
    let e = fails(&one_node(
        "QLinearAveragePool",
        "com.microsoft",
        p(),
        vec![
            ("kernel_shape", Attribute::Ints(vec![2, 2])),
            ("dilations", Attribute::Ints(vec![2, 2])),
        ],
    ));
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    // A float input to an 8-bit operator.
    let mut m = one_node("QLinearSigmoid", "com.microsoft", p(), vec![]);
    m.graph.inputs[0] = ValueInfo::tensor("x", DType::F32, dims(&[4]));
    let reg = edgeml_quant::onnx::registry();
    let r = Plan::with_registry(&m, PlanOptions::with_threads(1), &reg)
        .and_then(|p| p.run(&[("x", Tensor::F32(arr(&[4], vec![0.0; 4])))]));
    let e = r.expect_err("a float input is refused");
    assert!(e.to_string().contains("\"n1\""), "{e}");
}

#[test]
fn tables_built_at_run_time_equal_tables_built_at_plan_time() {
    // x_scale as a graph input: the table is built at each run.
    let xs = Tensor::U8(arr(&[256], (0..=255).collect()));
    let reg = edgeml_quant::onnx::registry();
    for (op, dom, attrs) in ops().into_iter().take(3) {
        let mut constant = one_node(op, dom, [f(0.05), u8s(128), f(0.01), u8s(10)], attrs);
        constant.graph.inputs[0] = ValueInfo::tensor("x", DType::U8, dims(&[256]));
        let mut runtime = constant.clone();
        runtime.graph.initializers.retain(|(k, _)| k != "xs");
        runtime
            .graph
            .inputs
            .push(ValueInfo::tensor("xs", DType::F32, vec![]));
        let want = Plan::with_registry(&constant, PlanOptions::with_threads(1), &reg)
            .unwrap()
            .run(&[("x", xs.clone())])
            .unwrap();
        let plan = Plan::with_registry(&runtime, PlanOptions::with_threads(1), &reg).unwrap();
        assert_eq!(plan.inputs().len(), 2, "{op}: x_scale is a run-time input");
        let got = plan.run(&[("x", xs.clone()), ("xs", f(0.05))]).unwrap();
        assert_eq!(got[0].1, want[0].1, "{op}");
        // A bad run-time scale is an error at run time.
        let e = plan.run(&[("x", xs.clone()), ("xs", f(-1.0))]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{op}: {e}");
        assert!(e.to_string().contains("\"n1\""), "{e}");
    }
}

/// `DQ(x; xs, xz) → op → Q(ys, yz) → y` with u8 codes; `extra` are more initializers.
fn qdq(op: Node, xz: Tensor, yz: Tensor, extra: Vec<(&str, Tensor)>) -> Model {
    let mut b = ModelBuilder::new(13)
        .input(ValueInfo::tensor("x", DType::U8, dims(&[1, 2, 4, 4])))
        .output(ValueInfo::named("y"))
        .node(Node::new("DequantizeLinear", &["x", "xs", "xz"], &["xf"]))
        .node(op)
        .node(Node::new("QuantizeLinear", &["f", "ys", "yz"], &["y"]))
        .initializer("xs", f(0.1))
        .initializer("xz", xz)
        .initializer("ys", f(0.1))
        .initializer("yz", yz);
    for (k, v) in extra {
        b = b.initializer(k, v);
    }
    b.build_unchecked()
}

#[test]
fn fusion_takes_the_groups_it_can_and_leaves_the_look_alikes() {
    let fused = |mut m: Model| edgeml_quant::onnx::fuse_qdq(&mut m).total();
    let i64s = |v: Vec<i64>| Tensor::I64(arr(&[v.len()], v));
    // Fused: a Sigmoid, a Pad whose value is a code (0.1 · (7 − 5)), a nearest Resize.
    let sig = || Node::new("Sigmoid", &["xf"], &["f"]);
    assert_eq!(fused(qdq(sig(), u8s(5), u8s(0), vec![])), 1);
    let pads = i64s(vec![0, 0, 1, 1, 0, 0, 1, 1]);
    let pad = |c: f32| {
        qdq(
            Node::new("Pad", &["xf", "p", "c"], &["f"]),
            u8s(5),
            u8s(5),
            vec![("p", pads.clone()), ("c", f(c))],
        )
    };
    assert_eq!(fused(pad(0.1 * 2.0)), 1);
    let scales = Tensor::F32(arr(&[4], vec![1.0, 1.0, 2.0, 2.0]));
    let resize = |mode: &str| {
        let n = Node::new("Resize", &["xf", "", "sc"], &["f"])
            .with_attr("mode", Attribute::String(mode.as_bytes().to_vec()));
        qdq(n, u8s(5), u8s(5), vec![("sc", scales.clone())])
    };
    assert_eq!(fused(resize("nearest")), 1);
    // Left alone: a pad value between codes, a linear Resize, an exact op whose two
    // sides differ, a pool from u8 to i8, a Sigmoid whose float output is also read.
    assert_eq!(fused(pad(0.123)), 0);
    assert_eq!(fused(resize("linear")), 0);
    let tr = || Node::new("Transpose", &["xf"], &["f"]);
    assert_eq!(fused(qdq(tr(), u8s(5), u8s(6), vec![])), 0);
    let gap = Node::new("GlobalAveragePool", &["xf"], &["f"]);
    assert_eq!(fused(qdq(gap, u8s(5), i8s(6), vec![])), 0);
    let mut m = qdq(sig(), u8s(5), u8s(0), vec![]);
    m.graph.outputs.push(ValueInfo::named("f"));
    assert_eq!(fused(m), 0);
    // A Sigmoid whose input scale is a run-time value.
    let mut m = qdq(sig(), u8s(5), u8s(0), vec![]);
    m.graph.initializers.retain(|(k, _)| k != "xs");
    m.graph
        .inputs
        .push(ValueInfo::tensor("xs", DType::F32, vec![]));
    assert_eq!(fused(m), 0);
}

#[test]
fn a_fused_pad_runs_on_codes_and_pads_with_the_code() {
    let pads = Tensor::I64(arr(&[8], vec![0, 0, 1, 0, 0, 0, 0, 0]));
    let mut m = qdq(
        Node::new("Pad", &["xf", "p", "c"], &["f"]),
        u8s(5),
        u8s(5),
        vec![("p", pads), ("c", f(0.1 * 2.0))],
    );
    let report = edgeml_quant::onnx::fuse_qdq(&mut m);
    assert_eq!(report.fused.get("8-bit exact ops"), Some(&1), "{report}");
    assert!(
        m.graph.nodes.iter().all(|n| n.op_type == "Pad"),
        "{:?}",
        m.graph.nodes
    );
    let reg = edgeml_quant::onnx::registry();
    let plan = Plan::with_registry(&m, PlanOptions::with_threads(1), &reg).unwrap();
    let x = Tensor::U8(arr(&[1, 2, 4, 4], vec![9; 32]));
    let y = plan.run(&[("x", x)]).unwrap();
    let Tensor::U8(y) = &y[0].1 else {
        panic!("u8 output expected")
    };
    assert_eq!(y.shape(), &[1, 2, 5, 4]);
    // The padded row holds code 7 (0.2 / 0.1 + 5), the rest the input.
    assert!(y.slice(ndarray::s![.., .., 0, ..]).iter().all(|&v| v == 7));
    assert!(
        y.slice(ndarray::s![.., .., 1.., ..])
            .iter()
            .all(|&v| v == 9)
    );
}

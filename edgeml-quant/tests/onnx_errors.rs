//! Bad quantization parameters and inputs give typed errors that name the node, at plan
//! or run time, never a panic or a silent wrong answer.
#![cfg(feature = "onnx")]
#![allow(clippy::unwrap_used)]

use edgeml_core::{DType, ErrorKind};
use edgeml_onnx::{
    Attribute, Dim, Graph, Model, Node, OpsetImport, Plan, PlanOptions, Tensor, ValueInfo,
};
use ndarray::{ArrayD, IxDyn};

fn arr<T: Clone>(shape: &[usize], v: Vec<T>) -> ArrayD<T> {
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

fn scalar_f32(v: f32) -> Tensor {
    Tensor::F32(arr(&[], vec![v]))
}

/// A one-node model: `inputs` are runtime inputs (name, dtype, shape), `inits` the
/// initializers, `ins` the node's input names in order.
fn model(
    op: &str,
    domain: &str,
    ins: &[&str],
    inits: Vec<(&str, Tensor)>,
    attrs: Vec<(&str, Attribute)>,
    x: (DType, &[usize]),
) -> Model {
    let node = Node {
        name: "n1".into(),
        op_type: op.into(),
        domain: domain.into(),
        inputs: ins.iter().map(|s| (*s).to_owned()).collect(),
        outputs: vec!["y".into()],
        attributes: attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        ..Default::default()
    };
    let mut opsets = vec![OpsetImport {
        domain: String::new(),
        version: 21,
    }];
    if !domain.is_empty() {
        opsets.push(OpsetImport {
            domain: domain.into(),
            version: 1,
        });
    }
    Model {
        ir_version: 10,
        opset_imports: opsets,
        graph: Graph {
            name: "g".into(),
            nodes: vec![node],
            inputs: vec![ValueInfo {
                name: "x".into(),
                dtype: Some(x.0),
                shape: Some(x.1.iter().map(|&d| Dim::Known(d)).collect()),
                doc_string: String::new(),
            }],
            outputs: vec![ValueInfo {
                name: "y".into(),
                dtype: None,
                shape: None,
                doc_string: String::new(),
            }],
            initializers: inits.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Plans and runs `m` on `x`; returns the error (the test fails if it succeeds).
fn fails(m: &Model, x: Tensor) -> edgeml_onnx::Error {
    let reg = edgeml_quant::onnx::registry();
    let r = Plan::with_registry(m, PlanOptions::with_threads(1), &reg)
        .and_then(|p| p.run(&[("x", x)]).map(|_| ()));
    let e = r.expect_err("bad parameters must be refused");
    let msg = e.to_string();
    assert!(msg.contains("\"n1\""), "the error names the node: {msg}");
    e
}

fn q(scale: Tensor, zp: Option<Tensor>, attrs: Vec<(&str, Attribute)>) -> Model {
    let mut inits = vec![("s", scale)];
    let mut ins = vec!["x", "s"];
    if let Some(z) = zp {
        inits.push(("z", z));
        ins.push("z");
    }
    model(
        "QuantizeLinear",
        "",
        &ins,
        inits,
        attrs,
        (DType::F32, &[2, 3]),
    )
}

fn x23() -> Tensor {
    Tensor::F32(arr(&[2, 3], vec![0.1, -0.2, 0.3, 1.0, 2.0, -3.0]))
}

#[test]
fn scales_must_be_finite_and_positive() {
    for s in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let e = fails(&q(scalar_f32(s), None, vec![]), x23());
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "scale {s}: {e}");
        assert!(e.to_string().contains("scale"), "{e}");
    }
}

#[test]
fn zero_points_of_unsupported_types_and_wrong_pairs_are_refused() {
    // A float zero point.
    let e = fails(&q(scalar_f32(0.1), Some(scalar_f32(3.0)), vec![]), x23());
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    // DequantizeLinear of u8 data with an i8 zero point (the spec requires one type).
    let m = model(
        "DequantizeLinear",
        "",
        &["x", "s", "z"],
        vec![("s", scalar_f32(0.1)), ("z", Tensor::I8(arr(&[], vec![1])))],
        vec![],
        (DType::U8, &[4]),
    );
    let e = fails(&m, Tensor::U8(arr(&[4], vec![1, 2, 3, 4])));
    assert_eq!(e.kind(), ErrorKind::InvalidModel, "{e}");
    // An int32 DequantizeLinear with a non-zero zero point.
    let m = model(
        "DequantizeLinear",
        "",
        &["x", "s", "z"],
        vec![
            ("s", scalar_f32(0.1)),
            ("z", Tensor::I32(arr(&[], vec![5]))),
        ],
        vec![],
        (DType::I32, &[2]),
    );
    let e = fails(&m, Tensor::I32(arr(&[2], vec![1, 2])));
    assert!(e.to_string().contains("zero point of 0"), "{e}");
}

#[test]
fn per_axis_parameters_must_match_the_axis() {
    let s = Tensor::F32(arr(&[4], vec![0.1, 0.2, 0.3, 0.4]));
    let e = fails(
        &q(s.clone(), None, vec![("axis", Attribute::Int(1))]),
        x23(),
    );
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch, "{e}");
    let e = fails(&q(s, None, vec![("axis", Attribute::Int(5))]), x23());
    assert_ne!(e.kind(), ErrorKind::Internal, "{e}");
    // Scales and zero points of different lengths.
    let e = fails(
        &q(
            Tensor::F32(arr(&[3], vec![0.1, 0.2, 0.3])),
            Some(Tensor::U8(arr(&[2], vec![1, 2]))),
            vec![("axis", Attribute::Int(1))],
        ),
        x23(),
    );
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch, "{e}");
}

#[test]
fn unsupported_attributes_are_named() {
    let e = fails(
        &q(
            scalar_f32(0.1),
            None,
            vec![("block_size", Attribute::Int(2))],
        ),
        x23(),
    );
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("block_size"), "{e}");
    let e = fails(
        &q(
            scalar_f32(0.1),
            None,
            vec![("output_dtype", Attribute::Int(17))],
        ),
        x23(),
    );
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("output_dtype"), "{e}");
}

#[test]
fn mixed_or_mismatched_operands_are_errors() {
    // QLinearMatMul: A u8 with an i8 zero point.
    let b = Tensor::I8(arr(&[3, 2], vec![1, 2, 3, 4, 5, 6]));
    let m = model(
        "QLinearMatMul",
        "",
        &["x", "as", "az", "b", "bs", "bz", "ys", "yz"],
        vec![
            ("as", scalar_f32(0.1)),
            ("az", Tensor::I8(arr(&[], vec![0]))),
            ("b", b.clone()),
            ("bs", scalar_f32(0.1)),
            ("bz", Tensor::I8(arr(&[], vec![0]))),
            ("ys", scalar_f32(0.1)),
            ("yz", Tensor::U8(arr(&[], vec![0]))),
        ],
        vec![],
        (DType::U8, &[2, 3]),
    );
    let e = fails(&m, Tensor::U8(arr(&[2, 3], vec![1; 6])));
    assert_eq!(e.kind(), ErrorKind::InvalidModel, "{e}");
    // MatMulInteger with K mismatched.
    let m = model(
        "MatMulInteger",
        "",
        &["x", "b"],
        vec![("b", b)],
        vec![],
        (DType::U8, &[2, 4]),
    );
    let e = fails(&m, Tensor::U8(arr(&[2, 4], vec![1; 8])));
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch, "{e}");
    // QLinearAdd of u8 and i8.
    let m = model(
        "QLinearAdd",
        "com.microsoft",
        &["x", "s", "z", "b", "s", "bz", "s", "z"],
        vec![
            ("s", scalar_f32(0.1)),
            ("z", Tensor::U8(arr(&[], vec![0]))),
            ("b", Tensor::I8(arr(&[2], vec![1, 2]))),
            ("bz", Tensor::I8(arr(&[], vec![0]))),
        ],
        vec![],
        (DType::U8, &[2]),
    );
    let e = fails(&m, Tensor::U8(arr(&[2], vec![1, 2])));
    assert_ne!(e.kind(), ErrorKind::Internal, "{e}");
}

#[test]
fn non_finite_inputs_to_dynamic_quantization_are_errors() {
    let m = model(
        "DynamicQuantizeLinear",
        "",
        &["x"],
        vec![],
        vec![],
        (DType::F32, &[3]),
    );
    let mut m = m;
    m.graph.nodes[0].outputs = vec!["y".into(), "ys".into(), "yz".into()];
    let e = fails(&m, Tensor::F32(arr(&[3], vec![1.0, f32::NAN, 2.0])));
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

#[test]
fn nan_quantizes_to_the_lowest_code_as_onnxruntime_does() {
    let m = q(scalar_f32(0.5), Some(Tensor::I8(arr(&[], vec![3]))), vec![]);
    let reg = edgeml_quant::onnx::registry();
    let plan = Plan::with_registry(&m, PlanOptions::with_threads(1), &reg).unwrap();
    let x = Tensor::F32(arr(&[2, 3], vec![f32::NAN, 1e30, -1e30, 0.25, 0.75, -0.25]));
    let y = plan.run(&[("x", x)]).unwrap();
    // 0.25/0.5 = 0.5 -> 0 (ties to even) + 3; 0.75/0.5 = 1.5 -> 2 + 3; -0.5 -> -0 + 3.
    assert_eq!(
        y[0].1,
        Tensor::I8(arr(&[2, 3], vec![-128, 127, -128, 3, 5, 3]))
    );
}

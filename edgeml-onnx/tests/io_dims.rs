//! `dim_value: -1` in a declared type (some exporters' spelling of a dynamic
//! dimension) loads as `Dim::Unknown`, as onnxruntime reads it; -2 stays an error.

use edgeml_core::DType;
use edgeml_onnx::{Dim, Error, Model, ModelBuilder, Node, Plan, PlanOptions, Tensor, ValueInfo};
use ndarray::{ArrayD, IxDyn};
use onnx_protobuf::ModelProto;
use protobuf::Message;

/// Relu over `x: float[2, 3]`, with `x`'s first dimension rewritten to `dim`.
fn bytes_with_first_dim(dim: i64) -> Vec<u8> {
    let m = ModelBuilder::new(13)
        .input(ValueInfo::tensor("x", DType::F32, vec![2.into(), 3.into()]))
        .node(Node::new("Relu", &["x"], &["y"]))
        .output(ValueInfo::tensor("y", DType::F32, vec![2.into(), 3.into()]))
        .build()
        .expect("model");
    let mut p = ModelProto::parse_from_bytes(&m.to_bytes().expect("encode")).expect("decode");
    let g = p.graph.mut_or_insert_default();
    g.input[0]
        .type_
        .mut_or_insert_default()
        .mut_tensor_type()
        .shape
        .mut_or_insert_default()
        .dim[0]
        .set_dim_value(dim);
    p.write_to_bytes().expect("encode")
}

#[test]
fn minus_one_is_an_unknown_dimension() {
    let m = Model::from_bytes(&bytes_with_first_dim(-1)).expect("loads");
    assert_eq!(
        m.graph.inputs[0].shape,
        Some(vec![Dim::Unknown, Dim::Known(3)])
    );
    // Any extent is accepted at run time.
    let plan = Plan::new(&m, PlanOptions::with_threads(1)).expect("plan");
    let x = Tensor::F32(ArrayD::from_elem(IxDyn(&[5, 3]), -1.0));
    let out = plan.run(&[("x", x)]).expect("run");
    assert_eq!(out[0].1.shape(), &[5, 3]);
}

#[test]
fn other_negative_dimensions_are_still_invalid() {
    let e = Model::from_bytes(&bytes_with_first_dim(-2)).expect_err("invalid");
    assert!(
        matches!(e, Error::InvalidModel(ref m) if m.contains("-2")),
        "{e}"
    );
}

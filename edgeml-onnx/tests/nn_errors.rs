//! The neural-network operators name the offending node as every other operator does
//! (`ops::attr::describe`: `Conv "c1"`), with the shared error kinds.

#![allow(clippy::unwrap_used)]

use edgeml_core::ErrorKind;
use edgeml_onnx::ops::attr::describe;
use edgeml_onnx::ops::default_registry;
use edgeml_onnx::{Attribute, BuildContext, Error, Node, Tensor};
use ndarray::{ArrayD, IxDyn};

fn node(op: &str, name: &str, attrs: Vec<(&str, Attribute)>) -> Node {
    Node {
        op_type: op.into(),
        name: name.into(),
        inputs: vec!["x".into(), "w".into()],
        outputs: vec!["y".into()],
        attributes: attrs.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        ..Default::default()
    }
}

fn f32s(shape: &[usize]) -> Tensor {
    Tensor::F32(ArrayD::from_elem(IxDyn(shape), 1.0))
}

/// Builds `n` (opset 17) and runs it on `inputs`; returns the error.
fn error(n: &Node, inputs: &[Tensor]) -> Error {
    let reg = default_registry();
    let f = reg.lookup(&n.domain, &n.op_type, 17).unwrap();
    let ins: Vec<Option<&Tensor>> = inputs.iter().map(Some).collect();
    let op = match f.build(&BuildContext::new(n, 17, vec![None; n.inputs.len()])) {
        Ok(op) => op,
        Err(e) => return e,
    };
    op.run(&ins).expect_err("must fail")
}

fn check(e: &Error, n: &Node, kind: ErrorKind, words: &str) {
    let msg = e.to_string();
    assert_eq!(e.kind(), kind, "{msg}");
    assert!(
        msg.contains(&describe(n)),
        "names the node as describe does: {msg}"
    );
    assert!(!msg.contains('\''), "no single-quoted node names: {msg}");
    assert!(msg.contains(words), "{msg}");
}

#[test]
fn nn_errors_name_the_node_one_way() {
    let (x, w) = (f32s(&[1, 2, 5, 5]), f32s(&[3, 2, 3, 3]));
    let n = node("Conv", "c1", vec![("strides", Attribute::Int(2))]);
    check(
        &error(&n, &[x.clone(), w.clone()]),
        &n,
        ErrorKind::InvalidModel,
        "attribute \"strides\" must be INTS, found INT",
    );
    assert!(describe(&n).contains("Conv \"c1\""));
    let n = node(
        "Conv",
        "c2",
        vec![("kernel_shape", Attribute::Ints(vec![2, 2]))],
    );
    check(
        &error(&n, &[x.clone(), w.clone()]),
        &n,
        ErrorKind::ShapeMismatch,
        "kernel_shape [2, 2] but weight spatial shape [3, 3]",
    );
    let n = node("Conv", "c3", vec![("group", Attribute::Int(0))]);
    check(
        &error(&n, &[x.clone(), w.clone()]),
        &n,
        ErrorKind::InvalidModel,
        "group must be positive",
    );
    let n = node(
        "MaxPool",
        "p1",
        vec![("kernel_shape", Attribute::Ints(vec![-1, 2]))],
    );
    check(
        &error(&n, std::slice::from_ref(&x)),
        &n,
        ErrorKind::InvalidModel,
        "attribute \"kernel_shape\" has a negative entry -1",
    );
    let n = node(
        "MaxPool",
        "p2",
        vec![
            ("kernel_shape", Attribute::Ints(vec![2, 2])),
            ("pads", Attribute::Ints(vec![1])),
        ],
    );
    check(
        &error(&n, std::slice::from_ref(&x)),
        &n,
        ErrorKind::InvalidModel,
        "attribute \"pads\" has 1 entries, expected 4",
    );
    let n = node("MatMul", "", vec![]);
    check(
        &error(&n, &[f32s(&[2, 3, 4]), f32s(&[3, 4, 5])]),
        &n,
        ErrorKind::ShapeMismatch,
        "do not broadcast",
    );
    let n = node(
        "LSTM",
        "l1",
        vec![("direction", Attribute::String(b"sideways".to_vec()))],
    );
    check(
        &error(&n, &[x]),
        &n,
        ErrorKind::InvalidModel,
        "unknown direction",
    );
}

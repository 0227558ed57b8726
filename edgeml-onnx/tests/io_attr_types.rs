//! Attributes of the wrong type (e.g. `Conv`'s `kernel_shape` as a string) are a
//! validation error at load time, as onnxruntime refuses them, not only when planning.

use edgeml_core::DType;
use edgeml_onnx::{
    Attribute, Error, LoadOptions, Model, ModelBuilder, Node, Plan, PlanOptions, Tensor, ValueInfo,
};
use ndarray::{ArrayD, IxDyn};

fn conv(kernel_shape: Attribute) -> Model {
    ModelBuilder::new(13)
        .input(ValueInfo::tensor(
            "x",
            DType::F32,
            vec![1.into(), 1.into(), 4.into(), 4.into()],
        ))
        .initializer("w", Tensor::F32(ArrayD::ones(IxDyn(&[1, 1, 3, 3]))))
        .node(Node::new("Conv", &["x", "w"], &["y"]).with_attr("kernel_shape", kernel_shape))
        .output(ValueInfo::named("y"))
        .build_unchecked()
}

#[test]
fn a_string_kernel_shape_is_refused_at_load() {
    let bad = conv(Attribute::String(b"3,3".to_vec()));
    let e = bad.validate().expect_err("wrong attribute type");
    let msg = e.to_string();
    assert!(matches!(e, Error::InvalidModel(_)), "{msg}");
    assert!(
        msg.contains("kernel_shape") && msg.contains("INTS") && msg.contains("STRING"),
        "{msg}"
    );
    let bytes = bad.to_bytes().expect("encode");
    assert!(matches!(
        Model::from_bytes(&bytes),
        Err(Error::InvalidModel(_))
    ));
    // Without validation it loads, and planning refuses it the same way.
    let m = Model::from_bytes_with(&bytes, &LoadOptions::new().validate(false)).expect("loads");
    assert!(matches!(
        Plan::new(&m, PlanOptions::with_threads(1)),
        Err(Error::InvalidModel(_))
    ));
}

#[test]
fn right_types_and_ints_for_floats_are_accepted() {
    conv(Attribute::Ints(vec![3, 3])).validate().expect("valid");
    let m = ModelBuilder::new(13)
        .input(ValueInfo::tensor("x", DType::F32, vec![2.into()]))
        .node(Node::new("LeakyRelu", &["x"], &["y"]).with_attr("alpha", Attribute::Int(0)))
        .output(ValueInfo::named("y"))
        .build();
    assert!(m.is_ok(), "{m:?}");
    let bad = ModelBuilder::new(13)
        .input(ValueInfo::tensor("x", DType::F32, vec![2.into()]))
        .node(
            Node::new("LeakyRelu", &["x"], &["y"]).with_attr("alpha", Attribute::Floats(vec![0.1])),
        )
        .output(ValueInfo::named("y"))
        .build();
    assert!(matches!(bad, Err(Error::InvalidModel(ref s)) if s.contains("alpha")));
}

//! A panicking operator (a bug, or a user-registered op) becomes a typed
//! `ErrorKind::Internal` error naming the node, at run time and during constant folding.

use edgeml_core::{DType, ErrorKind};
use edgeml_onnx::ops::default_registry;
use edgeml_onnx::{
    BuildContext, Dim, Graph, Model, Node, Operator, OpsetImport, Plan, PlanOptions, Result,
    Tensor, ValueInfo,
};
use ndarray::array;

#[derive(Debug)]
struct Boom;

impl Operator for Boom {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let v: Vec<usize> = Vec::new();
        // Index out of bounds on purpose: the kind of bug the guard exists for.
        let i = v[inputs.len()];
        Ok(vec![Tensor::F32(ndarray::ArrayD::zeros(vec![i]))])
    }
}

fn model(input_is_constant: bool) -> Model {
    let x = ValueInfo {
        name: "x".into(),
        dtype: Some(DType::F32),
        shape: Some(vec![Dim::Known(2)]),
        ..Default::default()
    };
    let mut g = Graph {
        nodes: vec![Node {
            name: "boom0".into(),
            op_type: "Boom".into(),
            domain: "test.edgeml".into(),
            inputs: vec!["x".into()],
            outputs: vec!["y".into()],
            ..Default::default()
        }],
        outputs: vec![ValueInfo {
            name: "y".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    if input_is_constant {
        g.initializers = vec![("x".into(), Tensor::F32(array![1.0f32, 2.0].into_dyn()))];
    } else {
        g.inputs = vec![x];
    }
    Model {
        ir_version: 8,
        opset_imports: vec![
            OpsetImport {
                domain: String::new(),
                version: 17,
            },
            OpsetImport {
                domain: "test.edgeml".into(),
                version: 1,
            },
        ],
        graph: g,
        ..Default::default()
    }
}

fn registry() -> edgeml_onnx::Registry {
    let mut r = default_registry();
    r.register(
        "test.edgeml",
        "Boom",
        1,
        i64::MAX,
        |_: &BuildContext<'_>| Ok(Box::new(Boom) as Box<dyn Operator>),
    );
    r
}

#[test]
fn panic_at_run_time_is_an_internal_error() {
    let plan = Plan::with_registry(&model(false), PlanOptions::with_threads(1), &registry())
        .expect("plans");
    let x = Tensor::F32(array![1.0f32, 2.0].into_dyn());
    let err = plan.run(&[("x", x)]).expect_err("the operator panics");
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(err.to_string().contains("Boom"), "{err}");
    // The plan is still usable afterwards (nothing was left poisoned).
    let x = Tensor::F32(array![3.0f32, 4.0].into_dyn());
    assert_eq!(
        plan.run(&[("x", x)]).expect_err("again").kind(),
        ErrorKind::Internal
    );
}

#[test]
fn panic_while_folding_constants_is_an_internal_error() {
    let err = Plan::with_registry(&model(true), PlanOptions::with_threads(2), &registry())
        .expect_err("folding runs the operator");
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(err.to_string().contains("boom0"), "{err}");
}

//! Planner and run-time behaviour on graphs built in code: folding, liveness, input
//! validation, unknown operators, control flow, threads.

mod common;

use edgeml_core::{DType, ErrorKind};
use edgeml_onnx::{
    Attribute, Dim, Graph, Model, Node, OpsetImport, Plan, PlanOptions, Tensor, ValueInfo,
};
use ndarray::{ArrayD, IxDyn, array};

fn vi(name: &str, dtype: DType, shape: Option<Vec<Dim>>) -> ValueInfo {
    ValueInfo {
        name: name.into(),
        dtype: Some(dtype),
        shape,
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> Node {
    Node {
        op_type: op.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// `y = OP(x)` with `OP` in its own `domain` (imported at `version`), for registry tests.
fn custom_op_model(op: &str, domain: &str, version: i64) -> Model {
    let mut n = node(op, &["x"], &["y"]);
    n.domain = domain.into();
    let g = Graph {
        nodes: vec![n],
        inputs: vec![vi("x", DType::F32, None)],
        outputs: vec![vi("y", DType::F32, None)],
        ..Default::default()
    };
    let mut m = common::onnx_model(g, 17);
    m.opset_imports.push(OpsetImport {
        domain: domain.into(),
        version,
    });
    m
}

fn f32t(v: ArrayD<f32>) -> Tensor {
    Tensor::F32(v)
}

/// y = relu(x + b) with b an initializer, x of shape [batch, 3].
fn add_relu() -> Model {
    let g = Graph {
        nodes: vec![
            node("Add", &["x", "b"], &["s"]),
            node("Relu", &["s"], &["y"]),
        ],
        inputs: vec![vi(
            "x",
            DType::F32,
            Some(vec![Dim::Symbolic("batch".into()), Dim::Known(3)]),
        )],
        outputs: vec![vi("y", DType::F32, None)],
        initializers: vec![("b".into(), f32t(array![1.0f32, -1.0, 0.5].into_dyn()))],
        ..Default::default()
    };
    common::onnx_model(g, 17)
}

#[test]
fn runs_a_small_graph_and_binds_symbolic_dims() {
    let plan = Plan::new(&add_relu(), PlanOptions::with_threads(1)).unwrap();
    for batch in [1usize, 4] {
        let x = ArrayD::from_elem(IxDyn(&[batch, 3]), 0.25f32);
        let out = plan.run(&[("x", f32t(x))]).unwrap();
        assert_eq!(out[0].0, "y");
        let y = out[0].1.as_f32().unwrap();
        assert_eq!(y.shape(), &[batch, 3]);
        assert_eq!(
            y.iter().take(3).copied().collect::<Vec<_>>(),
            vec![1.25, 0.0, 0.75]
        );
    }
}

#[test]
fn input_validation_errors_are_typed() {
    let plan = Plan::new(&add_relu(), PlanOptions::with_threads(1)).unwrap();
    let good = f32t(ArrayD::zeros(IxDyn(&[2, 3])));
    let e = plan.run(&[]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("missing input \"x\""), "{e}");
    let e = plan
        .run(&[("x", good.clone()), ("z", good.clone())])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("\"z\""), "{e}");
    let e = plan
        .run(&[("x", Tensor::I64(ArrayD::zeros(IxDyn(&[2, 3]))))])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = plan
        .run(&[("x", f32t(ArrayD::zeros(IxDyn(&[2, 4]))))])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
    let e = plan
        .run(&[("x", f32t(ArrayD::zeros(IxDyn(&[3]))))])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
}

#[test]
fn symbolic_dims_must_agree_across_inputs() {
    let d = || Some(vec![Dim::Symbolic("n".into())]);
    let g = Graph {
        nodes: vec![node("Add", &["a", "b"], &["y"])],
        inputs: vec![vi("a", DType::F32, d()), vi("b", DType::F32, d())],
        outputs: vec![vi("y", DType::F32, None)],
        ..Default::default()
    };
    let plan = Plan::new(&common::onnx_model(g, 17), PlanOptions::with_threads(1)).unwrap();
    let t = |n| f32t(ArrayD::zeros(IxDyn(&[n])));
    assert!(plan.run(&[("a", t(3)), ("b", t(3))]).is_ok());
    let e = plan.run(&[("a", t(3)), ("b", t(1))]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
    // "?" (paddle2onnx's "unknown") binds nothing: [N, 3, ?, ?] takes 48 × 192.
    let g = Graph {
        nodes: vec![node("Relu", &["a"], &["y"])],
        inputs: vec![vi(
            "a",
            DType::F32,
            Some(vec![Dim::Symbolic("?".into()), Dim::Symbolic("?".into())]),
        )],
        outputs: vec![vi("y", DType::F32, None)],
        ..Default::default()
    };
    let plan = Plan::new(&common::onnx_model(g, 17), PlanOptions::with_threads(1)).unwrap();
    let x = f32t(ArrayD::zeros(IxDyn(&[48, 192])));
    assert!(plan.run(&[("a", x)]).is_ok());
}

#[test]
fn unknown_operator_fails_at_plan_time_naming_it() {
    let m = custom_op_model("FancyOp", "com.example", 3);
    let e = Plan::new(&m, PlanOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    let s = e.to_string();
    assert!(
        s.contains("FancyOp") && s.contains("com.example") && s.contains('3'),
        "{s}"
    );
}

#[test]
fn undefined_values_and_cycles_are_invalid_models() {
    let g = Graph {
        nodes: vec![node("Relu", &["nope"], &["y"])],
        outputs: vec![vi("y", DType::F32, None)],
        ..Default::default()
    };
    let e = Plan::new(&common::onnx_model(g, 17), PlanOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidModel);
    let g = Graph {
        nodes: vec![node("Relu", &["b"], &["a"]), node("Relu", &["a"], &["b"])],
        outputs: vec![vi("b", DType::F32, None)],
        ..Default::default()
    };
    let e = Plan::new(&common::onnx_model(g, 17), PlanOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidModel);
}

#[test]
fn constant_subgraphs_are_folded_and_out_of_order_nodes_sorted() {
    // shape = Shape(c); r = Reshape(x, shape) where c is an initializer; nodes reversed.
    let g = Graph {
        nodes: vec![
            node("Reshape", &["x", "shp"], &["y"]),
            node("Shape", &["c"], &["shp"]),
        ],
        inputs: vec![vi("x", DType::F32, None)],
        outputs: vec![vi("y", DType::F32, None)],
        initializers: vec![("c".into(), f32t(ArrayD::zeros(IxDyn(&[2, 3]))))],
        ..Default::default()
    };
    let plan = Plan::new(&common::onnx_model(g, 17), PlanOptions::with_threads(1)).unwrap();
    assert_eq!(plan.num_steps(), 1, "Shape of a constant must be folded");
    let out = plan
        .run(&[("x", f32t(ArrayD::zeros(IxDyn(&[6]))))])
        .unwrap();
    assert_eq!(out[0].1.shape(), &[2, 3]);
}

fn if_model(cond_const: Option<bool>) -> Model {
    let branch = |op: &str, out: &str| Graph {
        nodes: vec![node(op, &["x", "x"], &[out])],
        outputs: vec![vi(out, DType::F32, None)],
        ..Default::default()
    };
    let mut n = node("If", &["c"], &["y"]);
    n.attributes = vec![
        (
            "then_branch".into(),
            Attribute::Graph(Box::new(branch("Add", "t"))),
        ),
        (
            "else_branch".into(),
            Attribute::Graph(Box::new(branch("Mul", "e"))),
        ),
    ];
    let mut inputs = vec![vi("x", DType::F32, None)];
    let mut initializers = vec![];
    match cond_const {
        Some(c) => initializers.push((
            "c".to_string(),
            Tensor::Bool(ArrayD::from_elem(IxDyn(&[]), c)),
        )),
        None => inputs.push(vi("c", DType::Bool, Some(vec![]))),
    }
    common::onnx_model(
        Graph {
            nodes: vec![n],
            inputs,
            outputs: vec![vi("y", DType::F32, None)],
            initializers,
            ..Default::default()
        },
        13,
    )
}

#[test]
fn if_runs_the_branch_selected_at_run_time() {
    let plan = Plan::new(&if_model(None), PlanOptions::with_threads(1)).unwrap();
    let x = f32t(array![3.0f32].into_dyn());
    let b = |v| Tensor::Bool(ArrayD::from_elem(IxDyn(&[]), v));
    let t = plan.run(&[("x", x.clone()), ("c", b(true))]).unwrap();
    let e = plan.run(&[("x", x), ("c", b(false))]).unwrap();
    assert_eq!(t[0].1.as_f32().unwrap()[[0]], 6.0);
    assert_eq!(e[0].1.as_f32().unwrap()[[0]], 9.0);
}

#[test]
fn if_with_a_constant_condition_is_inlined() {
    let plan = Plan::new(&if_model(Some(false)), PlanOptions::with_threads(1)).unwrap();
    assert_eq!(plan.num_steps(), 1);
    let out = plan.run(&[("x", f32t(array![3.0f32].into_dyn()))]).unwrap();
    assert_eq!(out[0].1.as_f32().unwrap()[[0]], 9.0);
}

#[test]
fn plans_are_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Plan>();
    let plan = Plan::new(&add_relu(), PlanOptions::with_threads(2)).unwrap();
    assert_eq!(plan.threads(), 2);
    std::thread::scope(|s| {
        for k in 0..4 {
            let plan = &plan;
            s.spawn(move || {
                let x = ArrayD::from_elem(IxDyn(&[k + 1, 3]), 1.0f32);
                let out = plan.run(&[("x", f32t(x))]).unwrap();
                assert_eq!(out[0].1.shape(), &[k + 1, 3]);
            });
        }
    });
}

#[test]
fn observer_sees_every_computed_value() {
    let plan = Plan::new(&add_relu(), PlanOptions::with_threads(1)).unwrap();
    let mut seen = Vec::new();
    let x = f32t(ArrayD::zeros(IxDyn(&[1, 3])));
    plan.run_observed(&[("x", &x)], &mut |n, _| seen.push(n.to_owned()))
        .unwrap();
    assert_eq!(seen, vec!["s", "y"]);
}

#[test]
fn from_model_moves_initializers_and_plans_the_same() {
    let reg = edgeml_onnx::ops::default_registry();
    let a = Plan::new(&add_relu(), PlanOptions::with_threads(1)).unwrap();
    let b = Plan::from_model(add_relu(), PlanOptions::with_threads(1), &reg).unwrap();
    assert_eq!(b.inputs().len(), 1);
    let x = || f32t(ArrayD::from_elem(IxDyn(&[2, 3]), -0.75f32));
    assert_eq!(a.run(&[("x", x())]).unwrap(), b.run(&[("x", x())]).unwrap());
}

#[test]
fn factories_see_declared_and_constant_input_types() {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<Option<edgeml_onnx::InputType>>>> = Arc::default();
    let mut reg = edgeml_onnx::ops::default_registry();
    let s2 = seen.clone();
    reg.register(
        "",
        "Add",
        1,
        i64::MAX,
        move |c: &edgeml_onnx::BuildContext<'_>| {
            *s2.lock().unwrap() = c.input_types.clone();
            edgeml_onnx::ops::default_registry()
                .lookup("", "Add", c.opset)
                .expect("Add")
                .build(c)
        },
    );
    Plan::with_registry(&add_relu(), PlanOptions::with_threads(1), &reg).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let x = seen[0].clone().expect("x is declared");
    assert_eq!(x.dtype, Some(DType::F32));
    assert_eq!(
        x.shape,
        Some(vec![Dim::Symbolic("batch".into()), Dim::Known(3)])
    );
    let b = seen[1].clone().expect("b is constant");
    assert_eq!(b.shape, Some(vec![Dim::Known(3)]));
}

/// A user operator (domain "probe") that passes its input through and records whether it
/// ran on a worker of a multi-thread pool.
#[derive(Debug)]
struct Probe(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl edgeml_onnx::Operator for Probe {
    fn run(&self, inputs: &[Option<&Tensor>]) -> edgeml_onnx::Result<Vec<Tensor>> {
        if edgeml_onnx::kernels::in_parallel_pool() {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(vec![inputs[0].cloned().expect("probe input")])
    }
}

#[test]
fn tiny_runs_stay_on_the_calling_thread_big_ones_use_the_pool() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let pooled = Arc::new(AtomicUsize::new(0));
    let mut reg = edgeml_onnx::ops::default_registry();
    let p = pooled.clone();
    reg.register(
        "probe",
        "Probe",
        1,
        i64::MAX,
        move |_: &edgeml_onnx::BuildContext<'_>| {
            Ok(Box::new(Probe(p.clone())) as Box<dyn edgeml_onnx::Operator>)
        },
    );
    let m = custom_op_model("Probe", "probe", 1);
    let plan = Plan::with_registry(&m, PlanOptions::with_threads(2), &reg).unwrap();
    let small = f32t(ArrayD::zeros(IxDyn(&[4, 64])));
    plan.run(&[("x", small)]).unwrap();
    assert_eq!(
        pooled.load(Ordering::SeqCst),
        0,
        "a 256-element run entered the pool"
    );
    let big = f32t(ArrayD::zeros(IxDyn(&[256, 256])));
    let out = plan.run(&[("x", big)]).unwrap();
    assert_eq!(out[0].1.shape(), &[256, 256]);
    assert_eq!(
        pooled.load(Ordering::SeqCst),
        1,
        "a 64 Ki-element run did not use the pool"
    );
}

/// A reshape at its input's last use takes the input's memory (`Operator::run_consuming`);
/// one whose input is read again later, or is a graph input, must leave it intact. All
/// give the values a copying reshape gives, run after run (recycled buffers included).
#[test]
fn reshapes_reuse_or_keep_their_input_as_liveness_allows() {
    let shape3 = Some(vec![Dim::Known(2), Dim::Known(3), Dim::Known(4)]);
    let g = Graph {
        nodes: vec![
            node("Relu", &["x"], &["r"]),
            // `r` is read again by Neg: not handed over.
            node("Reshape", &["r", "shape"], &["a"]),
            node("Neg", &["r"], &["n"]),
            // Last use of `n`: handed over by value.
            node("Flatten", &["n"], &["b"]),
            // A graph input is borrowed, never taken.
            node("Reshape", &["x", "shape"], &["c"]),
        ],
        inputs: vec![vi("x", DType::F32, shape3)],
        outputs: vec![
            vi("a", DType::F32, None),
            vi("b", DType::F32, None),
            vi("c", DType::F32, None),
        ],
        initializers: vec![("shape".into(), Tensor::I64(array![4i64, -1].into_dyn()))],
        ..Default::default()
    };
    let plan = Plan::new(&common::onnx_model(g, 17), PlanOptions::with_threads(1)).unwrap();
    let xs: Vec<f32> = (0..24).map(|i| i as f32 - 12.0).collect();
    for _ in 0..3 {
        let x = ArrayD::from_shape_vec(IxDyn(&[2, 3, 4]), xs.clone()).unwrap();
        let out = plan.run(&[("x", f32t(x))]).unwrap();
        let get = |i: usize| out[i].1.as_f32().unwrap().clone();
        let relu: Vec<f32> = xs.iter().map(|&v| v.max(0.0)).collect();
        let neg: Vec<f32> = relu.iter().map(|&v| -v).collect();
        assert_eq!(get(0).shape(), &[4, 6]);
        assert_eq!(get(0).iter().copied().collect::<Vec<_>>(), relu);
        assert_eq!(get(1).shape(), &[2, 12]);
        assert_eq!(get(1).iter().copied().collect::<Vec<_>>(), neg);
        assert_eq!(get(2).shape(), &[4, 6]);
        assert_eq!(get(2).iter().copied().collect::<Vec<_>>(), xs);
    }
}

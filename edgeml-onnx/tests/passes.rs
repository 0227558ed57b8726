//! The graph passes: each rewrite gives the original outputs through our own `Plan`
//! (planned with `GraphOptLevel::Disabled`, so the planner's own rewrites do not hide a
//! wrong pass), bad graphs are typed errors, skips are documented, pipelines are
//! idempotent.

mod common;

use common::passes::{assert_close, bn, bn_params, f32s, ops, unoptimized, vi};
use edgeml_core::DType;
use edgeml_onnx::passes::{
    ConstantToInitializer, EliminateDeadCode, EliminateIdentity, FoldBatchNorm, FoldConstants,
    InferShapes, OptimizeLevel, Pass, Pipeline, infer_shapes, infer_value_types,
};
use edgeml_onnx::{
    Attribute, Dim, Error, GraphOptLevel, Model, ModelBuilder, Node, Plan, PlanOptions, Tensor,
    ValueInfo,
};
use ndarray::{ArrayD, IxDyn};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

#[test]
fn constants_fold_through_the_runtime_operators() {
    let m = ModelBuilder::new(13)
        .input(vi("x", &[2, 3]))
        .initializer("a", f32s(&[2, 3], 1, -1.0, 2.0))
        .node(
            Node::new("Constant", &[], &["k"])
                .with_attr("value_floats", Attribute::Floats(vec![1.5, -2.0, 0.25])),
        )
        .node(Node::new("Mul", &["a", "k"], &["ak"]))
        .node(Node::new("Exp", &["ak"], &["e"]))
        .node(Node::new("Identity", &["e"], &["e2"]))
        .node(Node::new("Add", &["x", "e2"], &["y"]))
        .output(vi("y", &[2, 3]))
        .build()
        .expect("model");
    let x = f32s(&[2, 3], 5, -1.0, 2.0);
    let want = unoptimized(&m, &[("x", x.clone())]);
    let mut opt = m.clone();
    let report = Pipeline::for_level(OptimizeLevel::Basic)
        .run(&mut opt)
        .expect("optimize");
    assert_eq!(ops(&opt), BTreeMap::from([("Add".to_owned(), 1)]));
    assert_eq!(
        opt.graph.initializers.len(),
        1,
        "only the folded value is left"
    );
    // The folded `e` and `e2` are equal constants: merged into the first.
    assert_eq!(opt.graph.nodes[0].inputs, ["x", "e"]);
    assert_close(&unoptimized(&opt, &[("x", x)]), &want, 0.0);
    // Idempotent: a second run changes nothing.
    let again = opt.clone();
    let r2 = Pipeline::for_level(OptimizeLevel::Basic)
        .run(&mut opt)
        .expect("optimize");
    assert_eq!(r2.total(), 0, "{r2:?} after {report:?}");
    assert_eq!(opt, again);
}

#[test]
fn folding_skips_outputs_above_the_size_limit() {
    let shape = |n: i64| Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[2]), vec![n, n]).expect("s"));
    let build = |n: i64| {
        ModelBuilder::new(13)
            .input(vi("x", &[1]))
            .initializer("shape", shape(n))
            .node(Node::new("ConstantOfShape", &["shape"], &["big"]))
            .node(Node::new("ReduceSum", &["big"], &["s"]).with_attr("keepdims", Attribute::Int(0)))
            .node(Node::new("Cast", &["s"], &["sf"]).with_attr("to", Attribute::Int(1)))
            .node(Node::new("Add", &["x", "sf"], &["y"]))
            .output(vi("y", &[1]))
            .build()
            .expect("model")
    };
    let limit = FoldConstants { max_elements: 100 };
    // 10x10 = 100 elements: folded, and everything after it.
    let mut small = build(10);
    assert_eq!(limit.run(&mut small).expect("fold"), 3);
    assert_eq!(ops(&small), BTreeMap::from([("Add".to_owned(), 1)]));
    // 4096 x 4096 = 16 Mi elements: never materialised, the node stays.
    let mut big = build(4096);
    let before = big.clone();
    assert_eq!(limit.run(&mut big).expect("fold"), 0);
    assert_eq!(big, before);
    // Also under the default limit (2^22 elements).
    assert_eq!(FoldConstants::default().run(&mut big).expect("fold"), 0);
    assert_eq!(big, before);
}

#[test]
fn identity_and_inference_dropout_are_removed_even_before_graph_outputs() {
    let m = ModelBuilder::new(13)
        .input(vi("x", &[2, 3]))
        .node(Node::new("Relu", &["x"], &["r"]))
        .node(Node::new("Dropout", &["r"], &["d", ""]))
        .node(Node::new("Identity", &["d"], &["y"]))
        .node(Node::new("Identity", &["x"], &["x_copy"]))
        .output(vi("y", &[2, 3]))
        .output(vi("x_copy", &[2, 3]))
        .value_info(vi("r", &[2, 3]))
        .build()
        .expect("model");
    let x = f32s(&[2, 3], 3, -1.0, 2.0);
    let want = unoptimized(&m, &[("x", x.clone())]);
    let mut opt = m.clone();
    assert_eq!(EliminateIdentity.run(&mut opt).expect("pass"), 2);
    // The Identity from a graph input to a graph output must stay.
    assert_eq!(
        ops(&opt),
        BTreeMap::from([("Identity".to_owned(), 1), ("Relu".to_owned(), 1)])
    );
    assert_eq!(opt.graph.nodes[0].outputs, ["y"], "Relu writes the output");
    assert!(opt.graph.value_info.is_empty(), "stale value_info of r");
    assert_eq!(unoptimized(&opt, &[("x", x)]), want);
    opt.validate().expect("valid");
}

#[test]
fn training_dropout_and_used_masks_stay() {
    let m = ModelBuilder::new(13)
        .input(vi("x", &[2, 3]))
        .initializer("ratio", Tensor::F32(ArrayD::from_elem(IxDyn(&[]), 0.5)))
        .initializer("t", Tensor::Bool(ArrayD::from_elem(IxDyn(&[]), true)))
        .node(Node::new("Dropout", &["x", "ratio", "t"], &["d"]))
        .node(Node::new("Dropout", &["d"], &["e", "mask"]))
        .output(vi("e", &[2, 3]))
        .output(ValueInfo::named("mask"))
        .build()
        .expect("model");
    let mut opt = m.clone();
    assert_eq!(EliminateIdentity.run(&mut opt).expect("pass"), 0);
    assert_eq!(opt, m);
}

#[test]
fn dead_code_removal_drops_nodes_initializers_inputs_and_value_info() {
    let mut m = ModelBuilder::new(13)
        .input(vi("x", &[2]))
        .input(vi("unused_w", &[2]))
        .input(vi("free", &[2]))
        .initializer("unused_w", f32s(&[2], 1, 0.0, 1.0))
        .node(Node::new("Neg", &["x"], &["y"]))
        .node(Node::new("Relu", &["unused_w"], &["dead"]))
        .value_info(vi("dead", &[2]))
        .value_info(vi("y", &[2]))
        .value_info(vi("y", &[2]))
        .output(vi("y", &[2]))
        .build()
        .expect("model");
    let d = m.graph.remove_dead();
    assert_eq!(
        (d.nodes, d.initializers, d.inputs, d.value_info),
        (1, 1, 1, 2)
    );
    let names: Vec<&str> = m.graph.inputs.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        ["x", "free"],
        "inputs without initializer are the interface"
    );
    assert_eq!(EliminateDeadCode.run(&mut m).expect("pass"), 0);
}

#[test]
fn constant_to_initializer_keeps_graph_output_constants() {
    let k = |name: &str| {
        Node::new("Constant", &[], &[name]).with_attr("value_float", Attribute::Float(2.0))
    };
    let mut m = ModelBuilder::new(13)
        .input(vi("x", &[]))
        .node(k("two"))
        .node(k("out_const"))
        .node(Node::new("Mul", &["x", "two"], &["y"]))
        .output(vi("y", &[]))
        .output(ValueInfo::named("out_const"))
        .build()
        .expect("model");
    assert_eq!(ConstantToInitializer.run(&mut m).expect("pass"), 1);
    assert_eq!(m.graph.nodes.len(), 2);
    assert!(m.graph.initializer("two").is_some());
}

#[test]
fn bad_graphs_are_typed_errors_not_panics() {
    let cycle = ModelBuilder::new(13)
        .input(vi("x", &[2]))
        .node(Node::new("Add", &["x", "b"], &["a"]))
        .node(Node::new("Relu", &["a"], &["b"]))
        .output(vi("b", &[2]))
        .build_unchecked();
    let dangling = ModelBuilder::new(13)
        .input(vi("x", &[2]))
        .node(Node::new("Add", &["x", "ghost"], &["y"]))
        .output(vi("y", &[2]))
        .build_unchecked();
    for m in [cycle, dangling] {
        for level in [OptimizeLevel::Basic, OptimizeLevel::Extended] {
            let mut c = m.clone();
            let e = Pipeline::for_level(level).run(&mut c).expect_err("invalid");
            assert!(matches!(e, Error::InvalidModel(_)), "{e}");
        }
        let mut c = m.clone();
        assert!(matches!(
            FoldConstants::default().run(&mut c),
            Err(Error::InvalidModel(_))
        ));
        assert!(matches!(
            InferShapes.run(&mut c),
            Err(Error::InvalidModel(_))
        ));
        for p in [
            &FoldBatchNorm as &dyn Pass,
            &EliminateIdentity,
            &EliminateDeadCode,
        ] {
            let mut c = m.clone();
            p.run(&mut c)
                .expect("structural passes do not need an order");
        }
    }
}

#[test]
fn shape_inference_writes_value_info_and_reports_contradictions() {
    let m = ModelBuilder::new(13)
        .input(ValueInfo::tensor(
            "x",
            DType::F32,
            vec!["N".into(), 3.into(), 8.into(), 8.into()],
        ))
        .initializer("w", f32s(&[4, 3, 3, 3], 1, -1.0, 2.0))
        .node(Node::new("Conv", &["x", "w"], &["c"]))
        .node(Node::new("Relu", &["c"], &["r"]))
        .node(Node::new("Flatten", &["r"], &["y"]))
        .output(ValueInfo::named("y"))
        .build()
        .expect("model");
    let mut inferred = m.clone();
    assert_eq!(infer_shapes(&mut inferred).expect("infer"), 3);
    let r = inferred
        .graph
        .value_info
        .iter()
        .find(|v| v.name == "r")
        .expect("r annotated");
    assert_eq!(
        r.shape,
        Some(vec![
            Dim::Symbolic("N".into()),
            Dim::Known(4),
            Dim::Known(6),
            Dim::Known(6)
        ])
    );
    assert_eq!(
        inferred.graph.outputs[0].shape,
        Some(vec![Dim::Symbolic("N".into()), Dim::Known(144)])
    );
    assert_eq!(infer_shapes(&mut inferred).expect("again"), 0, "idempotent");
    let types = infer_value_types(&m).expect("types");
    assert_eq!(types["c"].dtype, Some(DType::F32));

    let mut bad = m;
    bad.graph.value_info.push(vi("r", &[1, 5, 6, 6]));
    let e = infer_shapes(&mut bad).expect_err("contradiction");
    assert!(
        matches!(e, Error::ShapeMismatch(ref s) if s.contains("\"r\"")),
        "{e}"
    );
}

#[test]
fn extended_level_fuses_conv_and_activation_for_onnxruntime() {
    let m = ModelBuilder::new(13)
        .input(vi("x", &[1, 2, 5, 5]))
        .initializer("w", f32s(&[3, 2, 3, 3], 1, -1.0, 2.0))
        .node(Node::new("Conv", &["x", "w"], &["c"]))
        .node(Node::new("LeakyRelu", &["c"], &["y"]).with_attr("alpha", Attribute::Float(0.2)))
        .output(vi("y", &[1, 3, 3, 3]))
        .build()
        .expect("model");
    let x = f32s(&[1, 2, 5, 5], 2, -1.0, 2.0);
    let want = unoptimized(&m, &[("x", x.clone())]);
    let mut basic = m.clone();
    Pipeline::for_level(OptimizeLevel::Basic)
        .run(&mut basic)
        .expect("basic");
    assert_eq!(basic, m, "basic keeps standard operators");
    let mut ext = m;
    Pipeline::for_level(OptimizeLevel::Extended)
        .run(&mut ext)
        .expect("extended");
    assert_eq!(ops(&ext), BTreeMap::from([("FusedConv".to_owned(), 1)]));
    assert_eq!(ext.opset("com.microsoft"), Some(1));
    assert_close(&unoptimized(&ext, &[("x", x)]), &want, 1e-6);
}

/// Every bundled model under `digits/`, `models/` and `prune/` (the operator cases of
/// `ops/` are checked by `tests/ops_fixtures.rs`, the exporters' models of
/// `onnx-backend/` by `tests/onnx_backend.rs`, the INT8 ones by edgeml-quant's tests):
/// the basic pipeline keeps its outputs (compared at batch 1 on deterministic inputs)
/// and a second run changes nothing.
/// Bundled models edgeml cannot run, with the reason (reviewed; an entry must name a
/// model).
const NOT_RUNNABLE: &[(&str, &str)] = &[
    (
        "models/encodings.onnx",
        "a sparse `Constant`, which the runtime does not plan (the file exercises tensor \
         encodings; tests/io_encodings.rs reads and re-encodes it)",
    ),
    (
        "models/skl_logreg_pipeline.onnx",
        "ai.onnx.ml operators (Scaler, LinearClassifier, ZipMap) are not implemented \
         (scripts/optimize_interop.py checks its optimized file against onnxruntime)",
    ),
    (
        "models/skl_tree_regressor.onnx",
        "ai.onnx.ml TreeEnsembleRegressor is not implemented (scripts/optimize_interop.py \
         checks its optimized file against onnxruntime)",
    ),
    (
        "models/extras.onnx",
        "a string input, and edgeml has no string tensors (scripts/optimize_interop.py \
         checks its optimized file against onnxruntime)",
    ),
];

#[test]
fn fixture_models_keep_their_outputs_and_optimize_idempotently() {
    let mut models: Vec<String> = Vec::new();
    for dir in ["digits", "models", "prune"] {
        for e in std::fs::read_dir(fixtures().join(dir))
            .expect(dir)
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".onnx") {
                models.push(format!("{dir}/{name}"));
            }
        }
    }
    models.sort();
    assert!(models.len() >= 16, "{models:?}");
    // Under an emulator (scripts/test-aarch64.sh sets EDGEML_TEST_RUNNER) the large
    // light models would take minutes each; they are checked natively.
    let emulated = std::env::var_os("EDGEML_TEST_RUNNER").is_some();
    const LARGE: &[&str] = &[
        "models/light_bvlc_alexnet.onnx",
        "models/light_densenet121.onnx",
        "models/light_inception_v1.onnx",
        "models/light_inception_v2.onnx",
        "models/light_resnet50.onnx",
        "models/light_vgg19.onnx",
        "models/light_zfnet512.onnx",
    ];
    if emulated {
        println!("EDGEML_TEST_RUNNER is set: skipping the large light models {LARGE:?}");
        models.retain(|m| !LARGE.contains(&m.as_str()));
    }
    for (name, _) in NOT_RUNNABLE {
        assert!(
            models.iter().any(|m| m == name),
            "NOT_RUNNABLE names {name}, not a model"
        );
    }
    for rel in &models {
        let rel = rel.as_str();
        if let Some((_, why)) = NOT_RUNNABLE.iter().find(|(n, _)| *n == rel) {
            println!("SKIP: {rel}: {why}");
            continue;
        }
        println!("{rel}");
        let m = Model::load(fixtures().join(rel)).expect(rel);
        let inputs: Vec<(String, Tensor)> = m
            .graph
            .inputs
            .iter()
            .filter(|i| m.graph.initializer(&i.name).is_none())
            .enumerate()
            .map(|(k, i)| {
                let shape: Vec<usize> = i
                    .shape
                    .iter()
                    .flatten()
                    .map(|d| if let Dim::Known(n) = d { *n } else { 1 })
                    .collect();
                let t = match i.dtype {
                    Some(DType::Bool) => Tensor::Bool(ArrayD::from_elem(IxDyn(&shape), true)),
                    Some(DType::I64) => Tensor::I64(ArrayD::zeros(IxDyn(&shape))),
                    _ => f32s(&shape, k as u32 + 1, -1.0, 2.0),
                };
                (i.name.clone(), t)
            })
            .collect();
        let refs: Vec<(&str, Tensor)> = inputs
            .iter()
            .map(|(n, t)| (n.as_str(), t.clone()))
            .collect();
        let want = unoptimized(&m, &refs);
        let mut opt = m.clone();
        let r = Pipeline::for_level(OptimizeLevel::Basic)
            .run(&mut opt)
            .expect(rel);
        assert!(opt.graph.nodes.len() <= m.graph.nodes.len(), "{rel}: {r:?}");
        assert_close(&unoptimized(&opt, &refs), &want, 1e-4);
        let before = opt.clone();
        let r2 = Pipeline::for_level(OptimizeLevel::Basic)
            .run(&mut opt)
            .expect(rel);
        assert_eq!(r2.total(), 0, "{rel}: second run {r2:?}");
        assert_eq!(opt, before, "{rel}");
        // Round trip through bytes: what `edgeml optimize` writes loads and validates.
        let back = Model::from_bytes(&opt.to_bytes().expect("encode")).expect(rel);
        assert_eq!(back.graph.nodes.len(), opt.graph.nodes.len());
    }
}

#[test]
fn shape_of_a_static_value_folds_and_a_symbolic_one_stays() {
    let i64s = |v: Vec<i64>| Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("s"));
    let build = |first: Dim| {
        ModelBuilder::new(13)
            .input(ValueInfo::tensor(
                "x",
                DType::F32,
                vec![first, 3.into(), 4.into()],
            ))
            .initializer("zero", Tensor::I64(ArrayD::from_elem(IxDyn(&[]), 0)))
            .initializer("axes", i64s(vec![0]))
            .initializer("minus1", i64s(vec![-1]))
            .node(Node::new("Relu", &["x"], &["r"]))
            .node(Node::new("Shape", &["r"], &["s"]))
            .node(Node::new("Gather", &["s", "zero"], &["n"]))
            .node(Node::new("Unsqueeze", &["n", "axes"], &["n1"]))
            .node(
                Node::new("Concat", &["n1", "minus1"], &["shape"])
                    .with_attr("axis", Attribute::Int(0)),
            )
            .node(Node::new("Reshape", &["r", "shape"], &["y"]))
            .output(ValueInfo::named("y"))
            .build()
            .expect("model")
    };
    let m = build(Dim::from(2));
    let x = f32s(&[2, 3, 4], 4, -1.0, 2.0);
    let want = unoptimized(&m, &[("x", x.clone())]);
    let mut opt = m.clone();
    Pipeline::for_level(OptimizeLevel::Basic)
        .run(&mut opt)
        .expect("optimize");
    let kinds: Vec<&str> = opt.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(kinds, ["Relu", "Reshape"]);
    assert_eq!(
        opt.graph
            .initializer("shape")
            .and_then(Tensor::as_i64)
            .map(|a| a.iter().copied().collect::<Vec<i64>>()),
        Some(vec![2, -1])
    );
    assert_eq!(unoptimized(&opt, &[("x", x.clone())]), want);

    let sym = build(Dim::from("N"));
    let mut opt = sym.clone();
    Pipeline::for_level(OptimizeLevel::Basic)
        .run(&mut opt)
        .expect("optimize");
    assert_eq!(opt, sym, "the batch size is only known at run time");
    assert_eq!(unoptimized(&opt, &[("x", x)]), want);
}

#[test]
fn casts_to_the_type_a_value_already_has_are_removed() {
    let m = ModelBuilder::new(13)
        .input(vi("x", &[2]))
        .node(Node::new("Cast", &["x"], &["same"]).with_attr("to", Attribute::Int(1)))
        .node(Node::new("Cast", &["same"], &["y"]).with_attr("to", Attribute::Int(11)))
        .output(ValueInfo::named("y"))
        .build()
        .expect("model");
    let mut opt = m.clone();
    assert_eq!(EliminateIdentity.run(&mut opt).expect("pass"), 1);
    assert_eq!(opt.graph.nodes.len(), 1);
    assert_eq!(
        opt.graph.nodes[0].inputs,
        ["x"],
        "the f64 Cast reads x directly"
    );
    let x = f32s(&[2], 1, -1.0, 2.0);
    let run = |m: &Model| {
        Plan::new(m, PlanOptions::with_threads(1))
            .expect("plan")
            .run(&[("x", x.clone())])
            .expect("run")
    };
    assert_eq!(run(&opt), run(&m));
}

/// `Plan::run_observed` with optimization disabled reports every node output of the
/// graph as written (what calibration needs), including the values that the default
/// level fuses away.
#[test]
fn unoptimized_plans_observe_every_value_fusion_would_remove() {
    let m = bn_params(
        ModelBuilder::new(13)
            .input(vi("x", &[1, 2, 4, 4]))
            .initializer("w", f32s(&[3, 2, 1, 1], 1, -1.0, 2.0)),
        3,
        2,
    )
    .node(Node::new("Conv", &["x", "w"], &["c"]))
    .node(bn("c", "n"))
    .node(Node::new("Relu", &["n"], &["r"]))
    .node(Node::new("Identity", &["r"], &["y"]))
    .output(ValueInfo::named("y"))
    .build()
    .expect("model");
    let x = f32s(&[1, 2, 4, 4], 3, -1.0, 2.0);
    let observe = |level: GraphOptLevel| {
        let mut o = PlanOptions::with_threads(1);
        o.optimization = level;
        let plan = Plan::new(&m, o).expect("plan");
        let mut seen = Vec::new();
        plan.run_observed(&[("x", &x)], &mut |n, _| seen.push(n.to_owned()))
            .expect("run");
        seen.sort();
        seen
    };
    assert_eq!(observe(GraphOptLevel::Disabled), ["c", "n", "r", "y"]);
    let fused = observe(GraphOptLevel::Extended);
    assert!(!fused.contains(&"c".to_owned()), "{fused:?}");
}

#[test]
fn transposes_merge_and_cancel() {
    let t = |x: &str, y: &str, p: Vec<i64>| {
        Node::new("Transpose", &[x], &[y]).with_attr("perm", Attribute::Ints(p))
    };
    let m = ModelBuilder::new(13)
        .input(vi("x", &[2, 3, 4]))
        .node(t("x", "a", vec![1, 0, 2]))
        .node(t("a", "b", vec![1, 0, 2]))
        .node(Node::new("Relu", &["b"], &["r"]))
        .node(t("r", "c", vec![2, 0, 1]))
        .node(t("c", "y", vec![0, 2, 1]))
        .node(t("r", "z", vec![0, 1, 2]))
        .output(ValueInfo::named("y"))
        .output(ValueInfo::named("z"))
        .build()
        .expect("model");
    let x = f32s(&[2, 3, 4], 6, -1.0, 2.0);
    let want = unoptimized(&m, &[("x", x.clone())]);
    let mut opt = m.clone();
    Pipeline::for_level(OptimizeLevel::Basic)
        .run(&mut opt)
        .expect("optimize");
    let kinds: Vec<&str> = opt.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
    // The identity Transpose to output z became an Identity, removed by letting the
    // Relu write z.
    assert_eq!(kinds, ["Relu", "Transpose"], "{opt:?}");
    assert_eq!(opt.graph.nodes[0].inputs, ["x"]);
    assert_eq!(opt.graph.nodes[0].outputs, ["z"]);
    assert_eq!(
        opt.graph.nodes[1].attr("perm"),
        Some(&Attribute::Ints(vec![2, 1, 0]))
    );
    assert_eq!(unoptimized(&opt, &[("x", x)]), want);
}

/// `x · clip(x + 3, 0, 6) / 6` in its two spellings (and operand orders) at `opset`.
fn hardswish_chains(opset: i64, leak: bool) -> Model {
    let s = |v: f32| Tensor::F32(ArrayD::from_elem(IxDyn(&[]), v));
    let mut b = ModelBuilder::new(opset)
        .input(vi("x", &[2, 3, 4, 5]))
        .initializer("three", s(3.0))
        .initializer("zero", s(0.0))
        .initializer("six", s(6.0))
        .initializer("sixth", s(1.0 / 6.0))
        // Form 1: Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6).
        .node(Node::new("Add", &["x", "three"], &["a1"]))
        .node(Node::new("Clip", &["a1", "zero", "six"], &["c1"]))
        .node(Node::new("Mul", &["c1", "x"], &["m1"]))
        .node(Node::new("Div", &["m1", "six"], &["y1"]))
        // Form 2: Mul(x, Mul(Clip(Add(3, x), 0, 6), 1/6)), on y1.
        .node(Node::new("Add", &["three", "y1"], &["a2"]))
        .node(Node::new("Clip", &["a2", "zero", "six"], &["c2"]))
        .node(Node::new("Mul", &["c2", "sixth"], &["d2"]))
        .node(Node::new("Mul", &["y1", "d2"], &["y"]))
        .output(vi("y", &[2, 3, 4, 5]));
    if leak {
        b = b.output(vi("c2", &[2, 3, 4, 5]));
    }
    b.build().expect("model")
}

#[test]
fn hardswish_chains_become_one_operator_within_a_few_ulp() {
    use edgeml_onnx::passes::FuseHardSwish;
    let m = hardswish_chains(14, false);
    let x = f32s(&[2, 3, 4, 5], 7, -8.0, 8.0);
    let want = unoptimized(&m, &[("x", x.clone())]);
    let mut opt = m.clone();
    assert_eq!(FuseHardSwish.run(&mut opt).expect("pass"), 2);
    opt.graph.remove_dead();
    assert_eq!(ops(&opt), BTreeMap::from([("HardSwish".to_owned(), 2)]));
    let got = unoptimized(&opt, &[("x", x.clone())]);
    // A different order of roundings: within 4 ulp of the result plus 2⁻²⁴·|x| per
    // application (where x/6 + 1/2 nearly cancels, around x = −3).
    let (g, w) = (
        got[0].1.as_f32().expect("f32"),
        want[0].1.as_f32().expect("f32"),
    );
    let xs = x.as_f32().expect("f32");
    for ((a, b), xv) in g.iter().zip(w.iter()).zip(xs.iter()) {
        let tol = 8.0 * f32::EPSILON * (b.abs() + xv.abs());
        assert!((a - b).abs() <= tol, "{a} vs {b} at x = {xv}");
    }
    // Extended pipelines include it; basic ones do not.
    let mut ext = m.clone();
    Pipeline::for_level(OptimizeLevel::Extended)
        .run(&mut ext)
        .expect("optimize");
    assert_eq!(ops(&ext), BTreeMap::from([("HardSwish".to_owned(), 2)]));
    let mut basic = m.clone();
    Pipeline::for_level(OptimizeLevel::Basic)
        .run(&mut basic)
        .expect("optimize");
    assert_eq!(ops(&basic).get("Clip"), Some(&2));
    // Opset 13 has no HardSwish; an intermediate read outside the pattern stays.
    let mut old = hardswish_chains(13, false);
    assert_eq!(FuseHardSwish.run(&mut old).expect("pass"), 0);
    let mut leak = hardswish_chains(14, true);
    assert_eq!(
        FuseHardSwish.run(&mut leak).expect("pass"),
        1,
        "only form 1 fuses"
    );
    assert_eq!(ops(&leak).get("Clip"), Some(&1));
}

// CSE, Transpose/Reshape simplification, MatMul + Add → Gemm (`passes/merge.rs`).
#[path = "passes/merge.rs"]
mod merge;

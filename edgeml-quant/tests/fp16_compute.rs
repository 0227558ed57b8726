//! Float16 compute. The runtime: onnxconverter-common's float16 digits models
//! (`tests/fixtures/fp16`, `scripts/make_fp16_fixtures.py`) run in edgeml within four
//! float16 steps of onnxruntime's stored outputs. The converter:
//! `fp16::convert_float_to_float16` writes the same graph as onnxconverter-common on
//! those models, every float weight float16, inputs and outputs float32 (or float16
//! when asked), kept nodes and blocked operators float32 between casts; bad models
//! are typed errors.
#![cfg(feature = "onnx")]

use edgeml_core::{DType, ErrorKind, f16};
use edgeml_onnx::{
    Attribute, Graph, Model, Node, OpsetImport, Plan, PlanOptions, Tensor, ValueInfo,
};
use edgeml_quant::fp16::{HalfOptions, convert_float_to_float16};
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::read_npy;
use std::path::PathBuf;

#[path = "../../tests/common/digits.rs"]
mod digits;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/fp16")
}

fn run(model: &Model, name: &str, x: Tensor) -> Tensor {
    let plan = Plan::new(model, PlanOptions::with_threads(1)).expect("plan");
    let mut out = plan.run(&[(name, x)]).expect("run");
    out.remove(0).1
}

fn as_f32(t: &Tensor) -> Vec<f32> {
    match t {
        Tensor::F32(a) => a.iter().copied().collect(),
        Tensor::F16(a) => a.iter().map(|v| v.to_f32()).collect(),
        other => panic!("float output expected, got {:?}", other.dtype()),
    }
}

/// The largest `|a − b|`.
fn worst(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&p, &q)| (p - q).abs())
        .fold(0.0, f32::max)
}

/// How far float16 probabilities may be from onnxruntime's: the digits models' logits
/// reach 8–16, where a float16 step is 2⁻⁷; through the Softmax (slope at most 1/4)
/// one step moves a probability by up to 2⁻⁹ ≈ 2e-3. onnxruntime rounds its operators
/// in its own order, so a step either way at the logits is allowed.
const TOL: f32 = 2.5e-3;

fn load(path: PathBuf) -> Model {
    Model::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn onnxconverter_float16_models_match_onnxruntime() {
    let (x, y) = digits::test_set();
    for name in ["cnn", "mlp"] {
        let model = load(fixtures().join(format!("{name}_fp16.onnx")));
        let want: ArrayD<f32> = read_npy(fixtures().join(format!("{name}_ort.npy"))).expect("npy");
        let got = run(&model, "x", Tensor::F32(x.clone()));
        let diff = worst(&as_f32(&got), &want.iter().copied().collect::<Vec<_>>());
        let acc = digits::accuracy(got.as_f32().expect("f32 output"), &y);
        println!("{name}: within {diff:.2e} of onnxruntime, accuracy {acc:.4}");
        assert!(diff <= TOL, "{name}: {diff} from onnxruntime");
    }
}

#[test]
fn digits_models_convert_as_onnxconverter_common_does() {
    let (x, y) = digits::test_set();
    for name in ["cnn", "mlp"] {
        let float = load(digits::dir().join(format!("{name}.onnx")));
        let theirs = load(fixtures().join(format!("{name}_fp16.onnx")));
        let (ours, report) =
            convert_float_to_float16(&float, &HalfOptions::default()).expect("convert");
        // The same operators in the same order (names aside).
        let ops = |m: &Model| -> Vec<String> {
            m.graph.nodes.iter().map(|n| n.op_type.clone()).collect()
        };
        assert_eq!(ops(&ours), ops(&theirs), "{name}");
        assert_eq!(report.converted.len(), float.graph.initializers.len());
        for (n, t) in &ours.graph.initializers {
            assert_eq!(t.dtype(), DType::F16, "{name}: {n}");
        }
        assert_eq!(ours.graph.inputs[0].dtype, Some(DType::F32));
        assert_eq!(ours.graph.outputs[0].dtype, Some(DType::F32));
        let want: ArrayD<f32> = read_npy(fixtures().join(format!("{name}_ort.npy"))).expect("npy");
        let got = run(&ours, "x", Tensor::F32(x.clone()));
        let diff = worst(&as_f32(&got), &want.iter().copied().collect::<Vec<_>>());
        let acc = digits::accuracy(got.as_f32().expect("f32"), &y);
        let float_acc = digits::accuracy(
            run(&float, "x", Tensor::F32(x.clone()))
                .as_f32()
                .expect("f32"),
            &y,
        );
        let size = ours.to_bytes().expect("save").len() as f64
            / float.to_bytes().expect("save").len() as f64;
        println!(
            "{name}: {diff:.2e} from onnxruntime on onnxconverter's file, accuracy \
             {acc:.4} (float {float_acc:.4}), {:.1}% of the float file",
            100.0 * size
        );
        assert!(diff <= TOL, "{name}: {diff}");
        assert!(acc >= float_acc - 0.005, "{name}: {acc} vs {float_acc}");
        assert!(size < 0.6, "{name}: {size}");
        // Float16 inputs and outputs when asked.
        let io = HalfOptions {
            keep_io_types: false,
            ..HalfOptions::default()
        };
        let (half_io, _) = convert_float_to_float16(&float, &io).expect("convert");
        assert_eq!(half_io.graph.inputs[0].dtype, Some(DType::F16));
        assert_eq!(half_io.graph.outputs[0].dtype, Some(DType::F16));
        assert!(half_io.graph.nodes.iter().all(|n| n.op_type != "Cast"));
        let got16 = run(&half_io, "x", Tensor::F16(x.mapv(f16::from_f32)));
        assert_eq!(got16.dtype(), DType::F16);
        // Only the final Cast differs: at most one float16 rounding of a probability.
        assert!(
            worst(&as_f32(&got16), &as_f32(&got)) <= 2f32.powi(-11),
            "{name}"
        );
    }
}

#[test]
fn kept_nodes_and_blocked_operators_stay_float32_between_casts() {
    let (x, _) = digits::test_set();
    let float = load(digits::dir().join("cnn.onnx"));
    let opts = HalfOptions {
        keep: vec!["Gemm".into()],
        ..HalfOptions::default()
    };
    let (m, _) = convert_float_to_float16(&float, &opts).expect("convert");
    let g = &m.graph;
    let gemm = g.nodes.iter().find(|n| n.op_type == "Gemm").expect("gemm");
    for w in &gemm.inputs[1..] {
        assert_eq!(g.initializer(w).map(Tensor::dtype), Some(DType::F32), "{w}");
    }
    let producer = |v: &str| g.nodes.iter().find(|n| n.outputs.iter().any(|o| o == v));
    let cast_to = |n: &Node| match n.attr("to") {
        Some(Attribute::Int(t)) => *t,
        _ => -1,
    };
    let into = producer(&gemm.inputs[0]).expect("the Gemm's input is cast");
    assert_eq!((into.op_type.as_str(), cast_to(into)), ("Cast", 1));
    // The Softmax after it computes in float16 again.
    let sm = g
        .nodes
        .iter()
        .find(|n| n.op_type == "Softmax")
        .expect("softmax");
    let back = producer(&sm.inputs[0]).expect("cast back");
    assert_eq!((back.op_type.as_str(), cast_to(back)), ("Cast", 10));
    let full = convert_float_to_float16(&float, &HalfOptions::default())
        .expect("convert")
        .0;
    let a = as_f32(&run(&m, "x", Tensor::F32(x.clone())));
    let b = as_f32(&run(&full, "x", Tensor::F32(x)));
    assert!(worst(&a, &b) <= TOL);

    // Max is on onnxconverter-common's block list: y = Max(x · 2, 0.5) keeps Max in
    // float32.
    let scalar = |v: f32| Tensor::F32(ArrayD::from_elem(IxDyn(&[]), v));
    let node = |op: &str, i: &[&str], o: &str| Node {
        op_type: op.into(),
        inputs: i.iter().map(|s| (*s).to_owned()).collect(),
        outputs: vec![o.into()],
        ..Node::default()
    };
    let vi = |n: &str| ValueInfo {
        name: n.into(),
        dtype: Some(DType::F32),
        shape: Some(vec![edgeml_onnx::Dim::Known(4)]),
        ..ValueInfo::default()
    };
    let model = Model {
        ir_version: 8,
        opset_imports: vec![OpsetImport {
            domain: String::new(),
            version: 13,
        }],
        graph: Graph {
            nodes: vec![
                node("Mul", &["x", "two"], "d"),
                node("Max", &["d", "half"], "y"),
            ],
            inputs: vec![vi("x")],
            outputs: vec![vi("y")],
            initializers: vec![("two".into(), scalar(2.0)), ("half".into(), scalar(0.5))],
            ..Graph::default()
        },
        ..Model::default()
    };
    let (h, report) = convert_float_to_float16(&model, &HalfOptions::default()).expect("convert");
    assert_eq!(
        report.converted,
        vec!["two".to_owned()],
        "only Mul's constant"
    );
    assert_eq!(
        h.graph.initializer("half").map(Tensor::dtype),
        Some(DType::F32)
    );
    let max = h
        .graph
        .nodes
        .iter()
        .find(|n| n.op_type == "Max")
        .expect("max");
    let into = h
        .graph
        .nodes
        .iter()
        .find(|n| n.outputs[0] == max.inputs[0])
        .expect("producer");
    assert_eq!((into.op_type.as_str(), cast_to(into)), ("Cast", 1));
    let xs = ArrayD::from_shape_vec(IxDyn(&[4]), vec![-1.0f32, 0.1, 0.3, 1.7]).expect("x");
    let got = as_f32(&run(&h, "x", Tensor::F32(xs)));
    let want: Vec<f32> = [-1.0f32, 0.1, 0.3, 1.7]
        .iter()
        .map(|v| {
            f16::from_f32(2.0 * f16::from_f32(*v).to_f32())
                .to_f32()
                .max(0.5)
        })
        .collect();
    assert_eq!(got, want);
}

#[test]
fn models_the_converter_cannot_type_are_refused() {
    let float = load(digits::dir().join("cnn.onnx"));
    // An old opset without Cast's `to` attribute.
    let mut old = float.clone();
    old.opset_imports[0].version = 5;
    let e = convert_float_to_float16(&old, &HalfOptions::default()).expect_err("opset 5");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    // A subgraph.
    let mut sub = float.clone();
    sub.graph.nodes[0]
        .attributes
        .push(("body".into(), Attribute::Graph(Box::default())));
    let e = convert_float_to_float16(&sub, &HalfOptions::default()).expect_err("subgraph");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("subgraph"), "{e}");
    // A value no rule types: an operator edgeml does not know.
    let mut unknown = float.clone();
    unknown.graph.nodes[1].op_type = "MysteryOp".into();
    unknown.graph.nodes[1].domain = "com.example".into();
    unknown
        .graph
        .value_info
        .retain(|v| v.name != unknown.graph.nodes[1].outputs[0]);
    let e = convert_float_to_float16(&unknown, &HalfOptions::default()).expect_err("untyped");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("element type"), "{e}");
    // A non-finite weight.
    let mut nan = float;
    if let Some((_, Tensor::F32(a))) = nan.graph.initializers.first_mut() {
        a.as_slice_mut().expect("contiguous")[0] = f32::NAN;
    }
    let e = convert_float_to_float16(&nan, &HalfOptions::default()).expect_err("NaN");
    assert_eq!(e.kind(), ErrorKind::NonFinite, "{e}");
}

//! The output forms of `edgeml_quant::quantize` on the bundled digits models:
//! `Format::QOperator` writes standard-domain quantized operators only,
//! `Format::QOperatorContrib` adds onnxruntime's `com.microsoft` ones, and both compute
//! exactly what the QDQ model computes once fused; dynamic quantization with
//! `Format::QOperatorContrib` writes `DynamicQuantizeMatMul`.
#![cfg(feature = "onnx")]

use edgeml_onnx::{Model, Plan, PlanOptions, Tensor};
use edgeml_quant::quantize::{Config, Format, quantize_dynamic, quantize_static};
use ndarray::ArrayD;
use std::collections::BTreeSet;

#[path = "../../tests/common/digits.rs"]
mod digits;

/// `model` on the test images through edgeml's INT8 execution (`prepare` fuses what
/// QDQ groups remain).
fn run(model: &Model, x: &ArrayD<f32>) -> ArrayD<f32> {
    let mut m = model.clone();
    let (reg, _) = edgeml_quant::onnx::prepare(&mut m);
    let plan = Plan::with_registry(&m, PlanOptions::with_threads(1), &reg).expect("plan");
    let out = plan.run(&[("x", Tensor::F32(x.clone()))]).expect("run");
    out[0].1.as_f32().expect("f32 output").to_owned()
}

/// The largest `|a − b|` over two outputs of the same shape.
fn worst(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f32::max)
}

/// The `(domain, op_type)` pairs of `m`'s nodes.
fn ops(m: &Model) -> BTreeSet<(String, String)> {
    m.graph
        .nodes
        .iter()
        .map(|n| (n.domain.clone(), n.op_type.clone()))
        .collect()
}

fn has(m: &Model, domain: &str, op: &str) -> bool {
    ops(m).contains(&(domain.to_owned(), op.to_owned()))
}

fn load(name: &str) -> Model {
    Model::load(digits::dir().join(format!("{name}.onnx"))).expect("load")
}

fn quantize(model: &Model, format: Format) -> (Model, edgeml_quant::quantize::Report) {
    let (x, _) = digits::test_set();
    let config = Config {
        per_channel: true,
        format,
        ..Config::default()
    };
    quantize_static(model, &digits::calibration(&x), &config).expect("quantize")
}

#[test]
fn qoperator_formats_compute_exactly_what_the_qdq_model_computes() {
    let (x, y) = digits::test_set();
    for name in ["cnn", "mlp"] {
        let model = load(name);
        let (qdq, r_qdq) = quantize(&model, Format::Qdq);
        assert_eq!(r_qdq.qoperator, None, "{name}: QDQ is not fused");
        let want = run(&qdq, &x);
        for format in [Format::QOperator, Format::QOperatorContrib] {
            let (q, report) = quantize(&model, format);
            let fused = report.qoperator.as_ref().expect("a fuse report");
            assert!(fused.total() > 0, "{name} {format:?}: nothing fused");
            // The MLP's MatMul + Add pairs are quantized as Gemm groups, except in the
            // standard-domain QOperator form, which has QLinearMatMul and no quantized
            // Gemm: there they stay MatMul + Add, so that model is not the QDQ one.
            let same_model = name == "cnn" || format == Format::QOperatorContrib;
            let core = match (name, format) {
                ("cnn", _) => "QLinearConv",
                (_, Format::QOperator) => "QLinearMatMul",
                _ => "QGemm",
            };
            let core_domain = if core == "QGemm" { "com.microsoft" } else { "" };
            assert!(
                has(&q, core_domain, core),
                "{name} {format:?}: no {core}: {:?}",
                ops(&q)
            );
            // Every domain is standard, plus com.microsoft only when asked; edgeml's
            // own com.edgeml operators never reach a file.
            for (domain, op) in ops(&q) {
                let allowed = domain.is_empty()
                    || (domain == "com.microsoft" && format == Format::QOperatorContrib);
                assert!(allowed, "{name} {format:?}: {domain}.{op} written");
            }
            if name == "cnn" {
                // The Gemm: QGemm only with contrib operators, else a QDQ Gemm.
                let contrib = format == Format::QOperatorContrib;
                assert_eq!(has(&q, "com.microsoft", "QGemm"), contrib, "{format:?}");
                assert_eq!(has(&q, "", "Gemm"), !contrib, "{format:?}");
            }
            // No initializer is left that nothing reads.
            let read: BTreeSet<&str> = q
                .graph
                .nodes
                .iter()
                .flat_map(|n| n.inputs.iter().map(String::as_str))
                .collect();
            for (init, _) in &q.graph.initializers {
                assert!(read.contains(init.as_str()), "{name}: {init} unused");
            }
            // The same quantized arithmetic: bit for bit the fused QDQ model's output.
            let got = run(&q, &x);
            if same_model {
                assert_eq!(got, want, "{name} {format:?}: outputs differ from QDQ");
            } else {
                let (a, b) = (digits::accuracy(&got, &y), digits::accuracy(&want, &y));
                assert!((a - b).abs() <= 0.01, "{name} {format:?}: {a} vs QDQ {b}");
            }
            let q2 = Model::from_bytes(&q.to_bytes().expect("save")).expect("reload");
            assert_eq!(run(&q2, &x), got, "{name} {format:?}: after a round trip");
            println!(
                "{name} {format:?}: {fused}; accuracy {:.4}",
                digits::accuracy(&got, &y)
            );
        }
    }
}

#[test]
fn dynamic_with_contrib_ops_writes_dynamic_quantize_matmul() {
    let (x, _) = digits::test_set();
    let model = load("mlp");
    for per_channel in [false, true] {
        let config = Config {
            per_channel,
            ..Config::default()
        };
        let (standard, _) = quantize_dynamic(&model, &config).expect("dynamic");
        let contrib_cfg = Config {
            format: Format::QOperatorContrib,
            ..config
        };
        let (contrib, report) = quantize_dynamic(&model, &contrib_cfg).expect("dynamic");
        assert_eq!(report.quantized.len(), 2, "both MatMuls");
        let count = |m: &Model, op: &str| m.graph.nodes.iter().filter(|n| n.op_type == op).count();
        assert_eq!(count(&contrib, "DynamicQuantizeMatMul"), 2);
        assert_eq!(count(&contrib, "DynamicQuantizeLinear"), 0);
        assert_eq!(count(&contrib, "MatMulInteger"), 0);
        assert!(
            contrib
                .opset_imports
                .iter()
                .any(|o| o.domain == "com.microsoft")
        );
        assert_eq!(count(&standard, "MatMulInteger"), 2);
        // The same u8 activations and i32 products; only the float scaling rounds in
        // another order.
        let worst = worst(&run(&standard, &x), &run(&contrib, &x));
        assert!(worst <= 1e-5, "per_channel={per_channel}: {worst}");
    }
}

#[test]
fn dynamic_contrib_adds_a_two_dimensional_gemm_bias_after_the_product() {
    // A Gemm whose C is [1, N] cannot inline its bias into DynamicQuantizeMatMul: an Add
    // follows it.
    let mut model = load("cnn");
    let gemm = model
        .graph
        .nodes
        .iter()
        .position(|n| n.op_type == "Gemm")
        .expect("the CNN has a Gemm");
    let c = model.graph.nodes[gemm].inputs[2].clone();
    let (_, t) = model
        .graph
        .initializers
        .iter_mut()
        .find(|(n, _)| *n == c)
        .expect("bias initializer");
    let v = t.as_f32().expect("f32 bias").to_owned();
    let n = v.len();
    *t = Tensor::F32(v.into_shape_with_order(vec![1, n]).expect("reshape"));
    let (x, _) = digits::test_set();
    let config = Config {
        format: Format::QOperatorContrib,
        ..Config::default()
    };
    let (standard, _) = quantize_dynamic(&model, &Config::default()).expect("dynamic");
    let (contrib, _) = quantize_dynamic(&model, &config).expect("dynamic");
    let adds_after = contrib
        .graph
        .nodes
        .iter()
        .filter(|n| n.op_type == "Add" && n.inputs.contains(&c))
        .count();
    assert_eq!(adds_after, 1, "the [1, N] bias is added after the product");
    let worst = worst(&run(&standard, &x), &run(&contrib, &x));
    assert!(worst <= 1e-5, "{worst}");
}

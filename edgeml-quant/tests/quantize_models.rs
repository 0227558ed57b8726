//! `edgeml_quant::quantize::quantize_static` on the bundled digits models, calibrated on
//! the first 100 test images: the QDQ model is fully fused by `prepare`, keeps accuracy
//! within 1 point of float on all 450 images, and the CNN file shrinks below 40%.
//! Bad inputs are typed errors.
#![cfg(feature = "onnx")]

use edgeml_core::ErrorKind;
use edgeml_onnx::{Model, Plan, PlanOptions, Tensor};
use edgeml_quant::quantize::{
    Config, Method, quantize_dynamic, quantize_static, quantize_weight_only,
};
use ndarray::{ArrayD, s};

#[path = "../../tests/common/digits.rs"]
mod digits;

use digits::{calibration, test_set as data};

fn accuracy(model: &Model, x: &ArrayD<f32>, y: &ArrayD<i64>) -> (f64, usize) {
    let mut m = model.clone();
    let (reg, report) = edgeml_quant::onnx::prepare(&mut m);
    let plan = Plan::with_registry(&m, PlanOptions::with_threads(1), &reg).expect("plan");
    let out = plan.run(&[("x", Tensor::F32(x.clone()))]).expect("run");
    let p = out[0].1.as_f32().expect("f32 output");
    (digits::accuracy(p, y), report.total())
}

fn check(name: &str, float_acc: f64, per_channel: bool, method: Method) -> (f64, f64) {
    let (x, y) = data();
    let path = digits::dir().join(format!("{name}.onnx"));
    let model = Model::load(&path).expect("load");
    let config = Config {
        per_channel,
        method,
        ..Config::default()
    };
    let (q, report) = quantize_static(&model, &calibration(&x), &config).expect("quantize");
    assert!(!report.quantized.is_empty());
    let (acc, fused) = accuracy(&q, &x, &y);
    let (facc, _) = accuracy(&model, &x, &y);
    assert!((facc - float_acc).abs() < 1e-3, "float accuracy {facc}");
    assert!(fused > 0, "{name}: nothing fused");
    assert_eq!(
        fused,
        report.quantized.len(),
        "{name}: every quantized node must fuse"
    );
    assert!(
        acc >= float_acc - 0.01,
        "{name}: accuracy {acc} vs float {float_acc}"
    );
    let before = std::fs::metadata(&path).expect("size").len() as f64;
    let after = q.to_bytes().expect("bytes").len() as f64;
    println!(
        "{name} per_channel={per_channel} {method:?}: accuracy {acc:.4} (float {float_acc}), \
         size {after}/{before} = {:.1}%, {} quantized, {} folded, int8 exact {}, float: {:?}",
        100.0 * after / before,
        report.quantized.len(),
        report.folded.len(),
        report.int8_exact_ops.len(),
        report
            .float_nodes
            .iter()
            .map(|f| &f.node.name)
            .collect::<Vec<_>>()
    );
    (acc, after / before)
}

#[test]
fn digits_cnn_quantizes_within_one_point_and_shrinks() {
    let (_, ratio) = check("cnn", 0.9667, false, Method::MinMax);
    assert!(ratio < 0.40, "size ratio {ratio}");
    // Per-channel adds 18 scales and zero points: 43% on this 1.4 k-weight model.
    let (_, ratio) = check("cnn", 0.9667, true, Method::MinMax);
    assert!(ratio < 0.45, "size ratio {ratio}");
    check("cnn", 0.9667, true, Method::PERCENTILE);
    check("cnn", 0.9667, true, Method::ENTROPY);
    check("cnn", 0.9667, true, Method::MSE);
    check("cnn", 0.9667, true, Method::MOVING_AVERAGE);
}

#[test]
fn digits_mlp_quantizes_within_one_point() {
    check("mlp", 0.9733, false, Method::MinMax);
    check("mlp", 0.9733, true, Method::MinMax);
    check("mlp", 0.9733, true, Method::PERCENTILE);
    check("mlp", 0.9733, true, Method::ENTROPY);
    check("mlp", 0.9733, true, Method::MSE);
    check("mlp", 0.9733, true, Method::MOVING_AVERAGE);
}

#[test]
fn bad_calibration_and_weights_are_typed_errors() {
    let (x, _) = data();
    let model = Model::load(digits::dir().join("cnn.onnx")).expect("load");
    let c = Config::default();
    let e = quantize_static::<ArrayD<f32>>(&model, &[], &c).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let wrong = x.slice(s![0..10, .., 0..4, ..]).to_owned().into_dyn();
    let e = quantize_static(&model, &[wrong], &c).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch, "{e}");
    let flat = x.slice(s![0..10, 0, 0, ..]).to_owned().into_dyn();
    let e = quantize_static(&model, &[flat], &c).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch, "{e}");
    let mut nan = x.slice(s![0..10, .., .., ..]).to_owned().into_dyn();
    nan[[0, 0, 0, 0]] = f32::NAN;
    let e = quantize_static(&model, &[nan], &c).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonFinite, "{e}");

    let mut bad = model.clone();
    for (n, t) in &mut bad.graph.initializers {
        if n == "wc"
            && let Tensor::F32(a) = t
        {
            a[[0, 0, 0, 0]] = f32::INFINITY;
        }
    }
    let e = quantize_static(&bad, &calibration(&x), &c).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonFinite, "{e}");
    assert!(e.to_string().contains("wc"), "{e}");

    // Everything excluded: nothing to quantize.
    let all = Config {
        exclude: vec!["Conv".into(), "Gemm".into()],
        ..Config::default()
    };
    let e = quantize_static(&model, &calibration(&x), &all).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    // Excluding one op type leaves it in float and reports it.
    let some = Config {
        exclude: vec!["Gemm".into()],
        ..Config::default()
    };
    let (_, r) = quantize_static(&model, &calibration(&x), &some).expect("quantize");
    assert_eq!(r.quantized.len(), 1);
    assert!(
        r.float_nodes
            .iter()
            .any(|f| f.node.op_type == "Gemm" && f.reason == "excluded")
    );
}

#[test]
fn constant_zero_input_gets_a_valid_scale() {
    let model = Model::load(digits::dir().join("mlp.onnx")).expect("load");
    let zeros = ArrayD::<f32>::zeros(ndarray::IxDyn(&[4, 1, 8, 8]));
    let (q, r) = quantize_static(&model, &[zeros], &Config::default()).expect("quantize");
    for a in &r.activations {
        assert!(a.scale.is_finite() && a.scale > 0.0, "{a:?}");
    }
    let x_range = r.activations.iter().find(|a| a.name == "xf").expect("xf");
    assert_eq!((x_range.scale, x_range.zero_point), (1.0, 0));
    let reg = edgeml_quant::onnx::registry();
    assert!(Plan::with_registry(&q, PlanOptions::with_threads(1), &reg).is_ok());
}

#[test]
fn weight_only_keeps_accuracy_and_shrinks() {
    let (x, y) = data();
    for (name, float_acc) in [("cnn", 0.9667), ("mlp", 0.9733)] {
        let path = digits::dir().join(format!("{name}.onnx"));
        let model = Model::load(&path).expect("load");
        let config = Config {
            per_channel: true,
            ..Config::default()
        };
        let (q, report) = quantize_weight_only(&model, &config).expect("quantize");
        assert_eq!(report.quantized.len(), 2);
        assert!(report.activations.is_empty());
        let (acc, fused) = accuracy(&q, &x, &y);
        assert_eq!(fused, 0, "weight-only models compute in float");
        assert!(acc >= float_acc - 0.01, "{name}: accuracy {acc}");
        let ratio = q.to_bytes().expect("bytes").len() as f64
            / std::fs::metadata(&path).expect("size").len() as f64;
        println!(
            "{name} weight-only per-channel: accuracy {acc:.4}, size {:.1}%",
            100.0 * ratio
        );
        assert!(ratio < 0.5, "{name}: size ratio {ratio}");
    }
}

#[test]
fn dynamic_keeps_accuracy_within_one_point() {
    let (x, y) = data();
    for (name, float_acc) in [("cnn", 0.9667), ("mlp", 0.9733)] {
        let path = digits::dir().join(format!("{name}.onnx"));
        let model = Model::load(&path).expect("load");
        for per_channel in [false, true] {
            let config = Config {
                per_channel,
                ..Config::default()
            };
            let (q, report) = quantize_dynamic(&model, &config).expect("quantize");
            assert_eq!(report.quantized.len(), 2, "{name}");
            assert!(report.activations.is_empty());
            let ops: Vec<&str> = q.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
            let count = |op: &str| ops.iter().filter(|o| **o == op).count();
            // One run-time quantization per quantized node here (no shared inputs).
            assert_eq!(count("DynamicQuantizeLinear"), 2, "{name}: {ops:?}");
            assert_eq!(
                count("MatMulInteger") + count("ConvInteger"),
                2,
                "{name}: {ops:?}"
            );
            assert!(!ops.contains(&"MatMul") && !ops.contains(&"Gemm") && !ops.contains(&"Conv"));
            assert!(
                q.graph
                    .initializers
                    .iter()
                    .all(|(_, t)| t.as_f32().is_none_or(|a| a.len() < 200)),
                "{name}: a float weight is left"
            );
            // onnxruntime's ConvInteger accepts only a scalar weight zero point.
            for n in q.graph.nodes.iter().filter(|n| n.op_type == "ConvInteger") {
                let zp = q
                    .graph
                    .initializer(&n.inputs[3])
                    .expect("constant zero point");
                assert_eq!(zp.shape(), &[] as &[usize], "{name}");
            }
            let (acc, _) = accuracy(&q, &x, &y);
            println!(
                "{name} dynamic per_channel={per_channel}: accuracy {acc:.4} (float {float_acc})"
            );
            assert!(
                acc >= float_acc - 0.01,
                "{name}: accuracy {acc} vs float {float_acc}"
            );
        }
    }
    // Opset 11 suffices, per-channel too (no QuantizeLinear with an axis is written);
    // opset 10 has no DynamicQuantizeLinear.
    let mut old = Model::load(digits::dir().join("mlp.onnx")).expect("load");
    for o in &mut old.opset_imports {
        o.version = 11;
    }
    let per_channel = Config {
        per_channel: true,
        ..Config::default()
    };
    assert!(quantize_dynamic(&old, &per_channel).is_ok());
    for o in &mut old.opset_imports {
        o.version = 10;
    }
    let e = quantize_dynamic(&old, &Config::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
}

#[test]
fn layer_errors_report_sqnr_of_each_quantized_node() {
    let (x, _) = data();
    let model = Model::load(digits::dir().join("cnn.onnx")).expect("load");
    let config = Config {
        per_channel: true,
        layer_errors: true,
        ..Config::default()
    };
    let cal = calibration(&x);
    let (q, report) = quantize_static(&model, &cal, &config).expect("quantize");
    assert_eq!(report.layers.len(), report.quantized.len());
    for l in &report.layers {
        println!(
            "{} {}: {:.2} dB, max |e| {}",
            l.node.name, l.tensor, l.sqnr_db, l.max_abs_error
        );
        // 8-bit codes: an ideal 8-bit quantizer of a full-range signal gives ~50 dB;
        // earlier layers' errors and skewed ranges lower it, never below 15 dB here.
        assert!(
            l.sqnr_db.is_finite() && l.sqnr_db > 15.0 && l.sqnr_db < 80.0,
            "{l:?}"
        );
    }
    // Recomputed here for the Gemm's output z: the float model's z against the
    // quantized model's DequantizeLinear of Q(z), run as written.
    let gemm = report.layers.iter().find(|l| l.tensor == "z").expect("z");
    let qn = q
        .graph
        .nodes
        .iter()
        .find(|n| n.op_type == "QuantizeLinear" && n.inputs[0] == "z")
        .expect("Q(z)");
    let dq = q
        .graph
        .nodes
        .iter()
        .find(|n| n.op_type == "DequantizeLinear" && n.inputs[0] == qn.outputs[0])
        .expect("DQ(Q(z))");
    let mut opts = PlanOptions::with_threads(1);
    opts.optimization = edgeml_onnx::GraphOptLevel::Disabled;
    let fplan = Plan::new(&model, opts.clone()).expect("plan");
    let reg = edgeml_quant::onnx::registry();
    let qplan = Plan::with_registry(&q, opts, &reg).expect("plan q");
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    for b in &cal {
        let input = Tensor::F32(b.clone());
        let (mut f, mut g) = (Vec::new(), Vec::new());
        fplan
            .run_observed(&[("x", &input)], &mut |n, t| {
                if n == "z" {
                    f = t.as_f32().expect("f32").iter().copied().collect();
                }
            })
            .expect("run");
        qplan
            .run_observed(&[("x", &input)], &mut |n, t| {
                if n == dq.outputs[0] {
                    g = t.as_f32().expect("f32").iter().copied().collect();
                }
            })
            .expect("run q");
        assert_eq!(f.len(), g.len());
        for (a, b) in f.iter().zip(&g) {
            signal += f64::from(*a).powi(2);
            noise += (f64::from(*a) - f64::from(*b)).powi(2);
        }
    }
    let want = 10.0 * (signal / noise).log10();
    assert!(
        (gemm.sqnr_db - want).abs() < 1e-3,
        "{} vs {want}",
        gemm.sqnr_db
    );
}

#[test]
fn parallel_calibration_merges_to_the_sequential_ranges() {
    let (x, _) = data();
    let model = Model::load(digits::dir().join("cnn.onnx")).expect("load");
    let cal = calibration(&x);
    for method in [
        Method::MinMax,
        Method::ENTROPY,
        Method::MSE,
        Method::MOVING_AVERAGE,
    ] {
        let ranges = |threads: usize| {
            let config = Config {
                method,
                calibration_threads: threads,
                ..Config::default()
            };
            let mut calls = 0;
            let (_, r) = edgeml_quant::quantize::quantize_static_with_progress(
                &model,
                &cal,
                &config,
                &mut |done| {
                    calls += 1;
                    assert_eq!(done, calls);
                },
            )
            .expect("quantize");
            assert_eq!(calls, cal.len());
            r.activations
        };
        let one = ranges(1);
        for threads in [2, 3, 0] {
            let many = ranges(threads);
            assert_eq!(one.len(), many.len());
            for (a, b) in one.iter().zip(&many) {
                if method == Method::MOVING_AVERAGE {
                    // Merging appends: equal up to rounding of the average.
                    let close = |x: f32, y: f32| (x - y).abs() <= 1e-5 * x.abs().max(1.0);
                    assert!(
                        close(a.range.0, b.range.0) && close(a.range.1, b.range.1),
                        "{a:?} {b:?}"
                    );
                } else {
                    assert_eq!(a, b, "{method:?} with {threads} threads");
                }
            }
        }
    }
}

#[test]
fn constant_weights_and_batch_norms_are_prepared_as_onnxruntime_does() {
    // The digits CNN with its weights as `Constant` nodes and a BatchNormalization
    // (per-channel scale 2, shift 0.1) after the Conv: the weights are found, the
    // BatchNormalization is folded into the Conv and quantized with it.
    let (x, y) = data();
    let mut model = Model::load(digits::dir().join("cnn.onnx")).expect("load");
    let g = &mut model.graph;
    let inits = std::mem::take(&mut g.initializers);
    let mut nodes: Vec<edgeml_onnx::Node> = inits
        .into_iter()
        .map(|(name, t)| edgeml_onnx::Node {
            op_type: "Constant".into(),
            outputs: vec![name],
            attributes: vec![("value".into(), edgeml_onnx::Attribute::Tensor(t))],
            ..edgeml_onnx::Node::default()
        })
        .collect();
    g.inputs.retain(|i| i.name == "x");
    let conv = g
        .nodes
        .iter()
        .position(|n| n.op_type == "Conv")
        .expect("conv");
    let conv_out = g.nodes[conv].outputs[0].clone();
    g.nodes[conv].outputs[0] = "pre_bn".into();
    let c = 8;
    let vec1 = |v: f32| Tensor::F32(ArrayD::from_elem(ndarray::IxDyn(&[c]), v));
    for (n, v) in [("s", 2.0), ("b", 0.1), ("m", 0.0), ("v", 1.0)] {
        g.initializers.push((format!("bn_{n}"), vec1(v)));
    }
    let bn = edgeml_onnx::Node {
        op_type: "BatchNormalization".into(),
        inputs: ["pre_bn", "bn_s", "bn_b", "bn_m", "bn_v"]
            .map(String::from)
            .to_vec(),
        outputs: vec![conv_out],
        attributes: vec![("epsilon".into(), edgeml_onnx::Attribute::Float(0.0))],
        ..edgeml_onnx::Node::default()
    };
    g.nodes.insert(conv + 1, bn);
    nodes.append(&mut g.nodes);
    g.nodes = nodes;
    let (float_acc, _) = accuracy(&model, &x, &y);
    let (q, report) =
        quantize_static(&model, &calibration(&x), &Config::default()).expect("quantize");
    let ops: Vec<&str> = report
        .quantized
        .iter()
        .map(|n| n.op_type.as_str())
        .collect();
    assert_eq!(ops, ["Conv", "Gemm"], "{report:?}");
    assert!(
        q.graph
            .nodes
            .iter()
            .all(|n| n.op_type != "BatchNormalization" && n.op_type != "Constant"),
        "folded and hoisted"
    );
    // The Conv's unfolded float weight is gone with the BatchNormalization.
    assert!(
        q.graph
            .initializers
            .iter()
            .all(|(_, t)| t.dtype() != edgeml_core::DType::F32 || t.len() <= 10),
        "only scales and small float values are left"
    );
    let (acc, fused) = accuracy(&q, &x, &y);
    assert_eq!(fused, 2);
    assert!(acc >= float_acc - 0.01, "{acc} vs {float_acc}");
}

#[test]
fn model_outputs_keep_their_full_range_with_clipping_methods() {
    // The digits CNN without its Softmax: the Gemm's logits are the model's output.
    // The histogram methods may clip inner tensors, but the output's range is its
    // minimum and maximum over the calibration data, as MinMax finds them.
    let (x, _) = data();
    let mut model = Model::load(digits::dir().join("cnn.onnx")).expect("load");
    let sm = model
        .graph
        .nodes
        .iter()
        .position(|n| n.op_type == "Softmax")
        .expect("softmax");
    let logits = model.graph.nodes[sm].inputs[0].clone();
    model.graph.nodes.remove(sm);
    model.graph.outputs[0].name.clone_from(&logits);
    let cal = calibration(&x);
    let range_of = |method: Method, name: &str| {
        let config = Config {
            method,
            // The methods' own ranges, not the output-SQNR check's choice.
            range_check: false,
            ..Config::default()
        };
        let (_, r) = quantize_static(&model, &cal, &config).expect("quantize");
        r.activations
            .iter()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("{name} not calibrated"))
            .range
    };
    let want = range_of(Method::MinMax, &logits);
    for method in [Method::ENTROPY, Method::PERCENTILE, Method::MSE] {
        assert_eq!(range_of(method, &logits), want, "{method:?}");
    }
    // An inner tensor (the Conv's output after Relu) is still the method's own: Entropy
    // clips it below the maximum.
    let inner = &model.graph.nodes[1].outputs[0];
    let (lo, hi) = range_of(Method::MinMax, inner);
    let (_, clipped) = range_of(Method::ENTROPY, inner);
    assert!(clipped < hi, "entropy kept [{lo}, {hi}] for {inner}");
}

#[test]
fn silu_sigmoid_outputs_are_quantized_as_onnxruntime_does() {
    // The digits CNN with a SiLU, `c · Sigmoid(c)`, in place of its Relu and a Sigmoid
    // in place of its Softmax. The SiLU's Sigmoid reads the quantized Conv output, so
    // its output gets a Q → DQ pair too (onnxruntime's QDQ rule for Sigmoid) and the
    // Mul reads two dequantized values; the output Sigmoid keeps the graph output in
    // float. `prepare` fuses the SiLU's Sigmoid into an INT8 table.
    let (x, y) = data();
    let mut model = Model::load(digits::dir().join("cnn.onnx")).expect("load");
    let g = &mut model.graph;
    let at = |g: &edgeml_onnx::Graph, op: &str| {
        g.nodes.iter().position(|n| n.op_type == op).expect("node")
    };
    let relu = at(g, "Relu");
    g.nodes[relu] = edgeml_onnx::Node::new("Sigmoid", &["c"], &["sg"]);
    g.nodes.insert(
        relu + 1,
        edgeml_onnx::Node::new("Mul", &["c", "sg"], &["r"]),
    );
    let sm = at(g, "Softmax");
    g.nodes[sm] = edgeml_onnx::Node::new("Sigmoid", &["z"], &["probs"]);
    let (float_acc, _) = accuracy(&model, &x, &y);
    let quantized = |config: &Config| {
        let (q, _) = quantize_static(&model, &calibration(&x), config).expect("quantize");
        let reads = |t: &str| {
            q.graph
                .nodes
                .iter()
                .any(|n| n.op_type == "QuantizeLinear" && n.inputs[0] == t)
        };
        (reads("sg"), reads("probs"), q)
    };
    let (sg, probs, q) = quantized(&Config::default());
    assert!(sg, "the SiLU's Sigmoid output is quantized");
    assert!(!probs, "the graph output stays float");
    let mul = &q.graph.nodes[at(&q.graph, "Mul")];
    for v in &mul.inputs {
        let p = q.graph.nodes.iter().find(|n| n.outputs.contains(v));
        assert_eq!(
            p.map(|n| n.op_type.as_str()),
            Some("DequantizeLinear"),
            "{v}"
        );
    }
    let mut fused = q.clone();
    let (_, report) = edgeml_quant::onnx::prepare(&mut fused);
    println!("{report}");
    assert!(
        fused
            .graph
            .nodes
            .iter()
            .all(|n| !(n.op_type == "Sigmoid" && n.outputs[0] == "sg")),
        "the Sigmoid runs fused: {report}"
    );
    let (acc, _) = accuracy(&q, &x, &y);
    assert!(acc >= float_acc - 0.01, "{acc} vs {float_acc}");
    // An excluded Sigmoid stays between float tensors.
    let (sg, _, _) = quantized(&Config {
        exclude: vec!["Sigmoid".into()],
        ..Config::default()
    });
    assert!(!sg);
}

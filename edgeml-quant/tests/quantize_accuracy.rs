//! Accuracy options of `quantize_static` on the bundled digits models, calibrated on
//! the first 100 test images: the model output SQNR (checked against a recomputation
//! here), the `target_sqnr` loop that keeps the worst layers in float, and empirical
//! bias correction (the per-channel mean error of the corrected layers falls).
//! `cargo test -p edgeml-quant --test quantize_accuracy -- --nocapture` prints the
//! numbers quoted in BENCHMARKS.md.
#![cfg(feature = "onnx")]

use edgeml_core::ErrorKind;
use edgeml_onnx::{GraphOptLevel, Model, Plan, PlanOptions, Tensor};
use edgeml_quant::quantize::{
    Config, Method, quantize_dynamic, quantize_static, quantize_weight_only,
};
use ndarray::{ArrayD, Axis};
use ndarray_npy::read_npy;

#[path = "../../tests/common/digits.rs"]
mod digits;

use digits::{calibration, test_set as data};

/// Accuracy of the model fused onto the INT8 kernels, on all 450 images.
fn accuracy(model: &Model, x: &ArrayD<f32>, y: &ArrayD<i64>) -> f64 {
    let mut m = model.clone();
    let (reg, _) = edgeml_quant::onnx::prepare(&mut m);
    let plan = Plan::with_registry(&m, PlanOptions::with_threads(1), &reg).expect("plan");
    let out = plan.run(&[("x", Tensor::F32(x.clone()))]).expect("run");
    digits::accuracy(out[0].1.as_f32().expect("f32 output"), y)
}

/// Every value of tensor `name` over the batches (reference QDQ operators, no fusion).
fn values(model: &Model, name: &str, batches: &[ArrayD<f32>]) -> Vec<ArrayD<f32>> {
    let mut opts = PlanOptions::with_threads(1);
    opts.optimization = GraphOptLevel::Disabled;
    let reg = edgeml_quant::onnx::registry();
    let plan = Plan::with_registry(model, opts, &reg).expect("plan");
    batches
        .iter()
        .map(|b| {
            let mut v = None;
            let out = plan
                .run_observed(&[("x", &Tensor::F32(b.clone()))], &mut |n, t| {
                    if n == name {
                        v = t.as_f32().cloned();
                    }
                })
                .expect("run");
            v.or_else(|| {
                out.into_iter()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, t)| t.as_f32().cloned())
            })
            .unwrap_or_else(|| panic!("{name} not computed"))
        })
        .collect()
}

fn sqnr(f: &[ArrayD<f32>], q: &[ArrayD<f32>]) -> f64 {
    let (mut s, mut n) = (0.0f64, 0.0f64);
    for (a, b) in f.iter().zip(q) {
        assert_eq!(a.shape(), b.shape());
        for (x, y) in a.iter().zip(b) {
            s += f64::from(*x).powi(2);
            n += (f64::from(*x) - f64::from(*y)).powi(2);
        }
    }
    10.0 * (s / n).log10()
}

#[test]
fn output_sqnr_is_the_float_against_quantized_outputs() {
    let (x, _) = data();
    let cal = calibration(&x);
    for name in ["cnn", "mlp"] {
        let model = Model::load(digits::dir().join(format!("{name}.onnx"))).expect("load");
        let config = Config {
            layer_errors: true,
            ..Config::default()
        };
        let (q, r) = quantize_static(&model, &cal, &config).expect("quantize");
        let got = r.output_sqnr_db.expect("measured");
        let want = sqnr(&values(&model, "probs", &cal), &values(&q, "probs", &cal));
        println!("{name} per-tensor: output SQNR {got:.2} dB");
        assert!((got - want).abs() < 1e-6, "{name}: {got} vs {want}");
        assert!(got.is_finite() && got > 10.0, "{name}: {got}");
        // Not measured unless asked.
        let (_, r) = quantize_static(&model, &cal, &Config::default()).expect("quantize");
        assert_eq!(r.output_sqnr_db, None);
        assert!(r.layers.is_empty());
    }
}

#[test]
fn range_check_keeps_the_better_of_the_method_and_the_full_ranges() {
    let (x, _) = data();
    let cal = calibration(&x);
    let mut kept = [0usize; 2];
    for name in ["cnn", "mlp"] {
        let model = Model::load(digits::dir().join(format!("{name}.onnx"))).expect("load");
        let run = |method: Method, range_check: bool| {
            let config = Config {
                method,
                range_check,
                per_channel: true,
                layer_errors: true,
                bias_check: false,
                ..Config::default()
            };
            quantize_static(&model, &cal, &config).expect("quantize")
        };
        // The full ranges are MinMax's; MinMax itself has nothing to check.
        let (q_full, r_full) = run(Method::MinMax, true);
        assert_eq!(r_full.range_check, None);
        let full = r_full.output_sqnr_db.expect("measured");
        for method in [
            Method::ENTROPY,
            Method::PERCENTILE,
            Method::MSE,
            Method::MOVING_AVERAGE,
        ] {
            let (q_method, r_method) = run(method, false);
            assert_eq!(r_method.range_check, None);
            let own = r_method.output_sqnr_db.expect("measured");
            let (q, r) = run(method, true);
            let Some(c) = r.range_check else {
                // Skipped only when the method kept every full range.
                println!("{name} {method:?}: the method's ranges are the full ranges");
                assert_eq!(q_method, q_full, "{name} {method:?}");
                assert_eq!(q, q_full, "{name} {method:?}");
                continue;
            };
            println!(
                "{name} {method:?}: {own:.2} dB with its ranges, {full:.2} dB with the full \
                 ranges; kept full: {}",
                c.kept_full_range
            );
            assert!((c.method_sqnr_db - own).abs() < 1e-9, "{c:?} vs {own}");
            assert!(
                (c.full_range_sqnr_db - full).abs() < 1e-9,
                "{c:?} vs {full}"
            );
            // The full ranges must win by 0.1 dB.
            let better = full > own + 0.1;
            assert_eq!(c.kept_full_range, better, "{name} {method:?}");
            let want = if better { full } else { own };
            assert_eq!(r.output_sqnr_db, Some(want), "{name} {method:?}");
            assert_eq!(q, if better { &q_full } else { &q_method }.clone());
            kept[usize::from(c.kept_full_range)] += 1;
        }
    }
    // Both outcomes occur on these models: the test sees the check choose each way.
    assert!(kept[0] > 0 && kept[1] > 0, "kept method / full: {kept:?}");
}

#[test]
fn bias_check_keeps_the_correction_where_it_raises_the_output_sqnr() {
    let (x, _) = data();
    let cal = calibration(&x);
    let mut kept = [0usize; 2];
    for name in ["cnn", "mlp"] {
        let model = Model::load(digits::dir().join(format!("{name}.onnx"))).expect("load");
        for per_channel in [false, true] {
            let run = |bias_correction: bool, bias_check: bool| {
                let config = Config {
                    per_channel,
                    bias_correction,
                    bias_check,
                    layer_errors: true,
                    ..Config::default()
                };
                quantize_static(&model, &cal, &config).expect("quantize")
            };
            let (q_off, r_off) = run(false, false);
            let (q_on, r_on) = run(true, false);
            // Forced either way, nothing is checked.
            assert_eq!((r_off.bias_check, r_on.bias_check), (None, None));
            // Forced on, the check does not run either.
            assert_eq!(run(true, true).1.bias_check, None);
            let (off, on) = (
                r_off.output_sqnr_db.expect("measured"),
                r_on.output_sqnr_db.expect("measured"),
            );
            let (q, r) = run(false, true);
            let c = r.bias_check.expect("checked");
            println!(
                "{name} per_channel={per_channel}: {off:.2} dB without bias correction, \
                 {on:.2} dB with; kept: {}",
                c.kept_correction
            );
            assert!((c.without_sqnr_db - off).abs() < 1e-9, "{c:?} vs {off}");
            assert!((c.with_sqnr_db - on).abs() < 1e-9, "{c:?} vs {on}");
            let better = on > off + 0.1;
            assert_eq!(
                c.kept_correction, better,
                "{name} per_channel={per_channel}"
            );
            assert_eq!(r.output_sqnr_db, Some(if better { on } else { off }));
            assert_eq!(q, if better { &q_on } else { &q_off }.clone());
            assert_eq!(r.bias_corrections.is_empty(), !better);
            kept[usize::from(better)] += 1;
        }
    }
    println!("bias correction not kept / kept: {kept:?}");
    // Both outcomes occur on these models: the test sees the check choose each way.
    assert!(kept[0] > 0 && kept[1] > 0, "{kept:?}");
}

#[test]
fn target_sqnr_keeps_the_worst_layers_in_float_until_met() {
    let (x, y) = data();
    let cal = calibration(&x);
    for name in ["cnn", "mlp"] {
        let model = Model::load(digits::dir().join(format!("{name}.onnx"))).expect("load");
        let base = Config {
            layer_errors: true,
            ..Config::default()
        };
        let (q0, r0) = quantize_static(&model, &cal, &base).expect("quantize");
        let s0 = r0.output_sqnr_db.expect("measured");
        let worst = r0
            .layers
            .iter()
            .min_by(|a, b| a.sqnr_db.total_cmp(&b.sqnr_db))
            .expect("layers");

        // A target already met changes nothing.
        let met = Config {
            target_sqnr: Some(s0 - 1.0),
            ..Config::default()
        };
        let (q1, r1) = quantize_static(&model, &cal, &met).expect("quantize");
        assert!(r1.kept_float.is_empty());
        assert_eq!(q1, q0, "{name}");
        assert_eq!(r1.output_sqnr_db, Some(s0));

        for extra in [3.0, 10.0, 1000.0] {
            let target = s0 + extra;
            let config = Config {
                target_sqnr: Some(target),
                ..Config::default()
            };
            let (q, r) = quantize_static(&model, &cal, &config).expect("quantize");
            let got = r.output_sqnr_db.expect("measured");
            let kept: Vec<&str> = r.kept_float.iter().map(|k| k.node.name.as_str()).collect();
            let acc = accuracy(&q, &x, &y);
            println!(
                "{name} target {target:.2} dB (all-INT8 {s0:.2}): kept in float {kept:?}, \
                 output SQNR {got:.2} dB, {} quantized, accuracy {acc:.4}",
                r.quantized.len()
            );
            assert!(!r.kept_float.is_empty(), "{name}");
            assert_eq!(
                r.kept_float[0].node, worst.node,
                "{name}: worst layer first"
            );
            assert_eq!(r.kept_float[0].output_sqnr_db, s0);
            for k in &r.kept_float {
                assert!(k.output_sqnr_db < target, "{k:?}");
                assert!(
                    r.float_nodes.iter().any(|f| f.node == k.node
                        && f.reason == "kept in float to reach the target SQNR"),
                    "{name}: {k:?} not reported float"
                );
                assert!(!r.quantized.contains(&k.node));
            }
            assert_eq!(r.quantized.len() + r.kept_float.len(), r0.quantized.len());
            assert!(
                got >= target || r.quantized.is_empty(),
                "{name}: {got} dB below {target} with {} quantized",
                r.quantized.len()
            );
            // Every layer float is the float model itself (prepared: the MLP's MatMul and
            // Add are one Gemm), with no quantization node left.
            if r.quantized.is_empty() {
                assert!(
                    q.graph
                        .nodes
                        .iter()
                        .all(|n| !n.op_type.contains("Quantize")),
                    "{name}"
                );
                let (f, g) = (values(&model, "probs", &cal), values(&q, "probs", &cal));
                assert!(sqnr(&f, &g) > 120.0, "{name}");
                assert_eq!(got, f64::INFINITY);
            }
            // The ranges are the first round's: no recalibration.
            for a in &r.activations {
                let b = r0
                    .activations
                    .iter()
                    .find(|b| b.name == a.name)
                    .expect("calibrated");
                assert_eq!(a.range, b.range);
            }
            assert!(acc >= 0.95, "{name}: accuracy {acc}");
        }
    }
}

#[test]
fn bad_targets_and_static_only_options_are_typed_errors() {
    let (x, _) = data();
    let cal = calibration(&x);
    let model = Model::load(digits::dir().join("cnn.onnx")).expect("load");
    for t in [f64::NAN, -1.0, f64::INFINITY, f64::NEG_INFINITY] {
        let c = Config {
            target_sqnr: Some(t),
            ..Config::default()
        };
        let e = quantize_static(&model, &cal, &c).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{t}: {e}");
    }
    for c in [
        Config {
            target_sqnr: Some(30.0),
            ..Config::default()
        },
        Config {
            bias_correction: true,
            ..Config::default()
        },
    ] {
        let e = quantize_dynamic(&model, &c).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        let e = quantize_weight_only(&model, &c).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    }
}

/// Per output channel, the mean of `q − f` (channels on axis 1).
fn channel_mean_error(f: &[ArrayD<f32>], q: &[ArrayD<f32>]) -> Vec<f64> {
    let c = f[0].len_of(Axis(1));
    let (mut sum, mut count) = (vec![0.0f64; c], 0usize);
    for (a, b) in f.iter().zip(q) {
        for (i, (fa, qb)) in a.axis_iter(Axis(1)).zip(b.axis_iter(Axis(1))).enumerate() {
            sum[i] += fa
                .iter()
                .zip(&qb)
                .map(|(x, y)| f64::from(*y) - f64::from(*x))
                .sum::<f64>();
        }
        count += a.len() / c;
    }
    sum.iter().map(|s| s / count as f64).collect()
}

fn rms(v: &[f64]) -> f64 {
    (v.iter().map(|e| e * e).sum::<f64>() / v.len() as f64).sqrt()
}

#[test]
fn bias_correction_lowers_the_mean_error_of_corrected_layers() {
    let (x, y) = data();
    let cal = calibration(&x);
    // (model, layers as (float tensor, tensor in the quantized model)): the CNN's Conv
    // output before its folded Relu (the quantized Conv writes `r` unclipped; the
    // QuantizeLinear after it clips) and its Gemm; the MLP's MatMul + Add outputs (one
    // Gemm each once prepared, the first with its Relu folded the same way).
    let cases = [
        ("cnn", [("c", "r"), ("z", "z")]),
        ("mlp", [("h1", "h"), ("z", "z")]),
    ];
    for (name, layers) in cases {
        let model = Model::load(digits::dir().join(format!("{name}.onnx"))).expect("load");
        for per_channel in [false, true] {
            let plain = Config {
                per_channel,
                layer_errors: true,
                ..Config::default()
            };
            let corrected = Config {
                bias_correction: true,
                ..plain.clone()
            };
            let (q0, r0) = quantize_static(&model, &cal, &plain).expect("quantize");
            let (q1, r1) = quantize_static(&model, &cal, &corrected).expect("quantize");
            assert!(r0.bias_corrections.is_empty());
            assert_eq!(r1.bias_corrections.len(), 2, "{name}");
            // The QDQ structure is the same; only bias values differ.
            let ops = |m: &Model| -> Vec<String> {
                m.graph.nodes.iter().map(|n| n.op_type.clone()).collect()
            };
            assert_eq!(ops(&q0), ops(&q1));
            assert_ne!(q0, q1);
            for (f, qn) in layers {
                let fv = values(&model, f, &cal);
                let e0 = rms(&channel_mean_error(&fv, &values(&q0, qn, &cal)));
                let e1 = rms(&channel_mean_error(&fv, &values(&q1, qn, &cal)));
                println!(
                    "{name} per_channel={per_channel} {f}: RMS over channels of the mean \
                     error {e0:.3e} -> {e1:.3e} with bias correction"
                );
                assert!(e1 < e0, "{name} {f}: {e1} >= {e0}");
            }
            let (a0, a1) = (accuracy(&q0, &x, &y), accuracy(&q1, &x, &y));
            println!(
                "{name} per_channel={per_channel}: output SQNR {:.2} -> {:.2} dB, accuracy \
                 {a0:.4} -> {a1:.4}",
                r0.output_sqnr_db.unwrap_or(f64::NAN),
                r1.output_sqnr_db.unwrap_or(f64::NAN)
            );
            assert!(a1 >= 0.95, "{name}: accuracy {a1}");
        }
    }
}

/// `x → Conv(2→4, 3×3, pad 1) → act → Conv(4→3, 1×1) → y` with output channels of the
/// first convolution scaled by 0.01, 1, 20, 0.2 (ranges far apart, as after BN folding).
fn conv_pair(act: &str) -> Model {
    use edgeml_onnx::{Attribute, Graph, Node, OpsetImport, ValueInfo};
    let wave = |i: usize| ((i as f32 * 0.7).sin() + 0.3 * (i as f32 * 1.3).cos()) * 0.5;
    let gain = [0.01f32, 1.0, 20.0, 0.2];
    let w1 = ArrayD::from_shape_fn(ndarray::IxDyn(&[4, 2, 3, 3]), |i| {
        wave(i[0] * 18 + i[1] * 9 + i[2] * 3 + i[3]) * gain[i[0]]
    });
    let b1 = ArrayD::from_shape_fn(ndarray::IxDyn(&[4]), |i| 0.1 * gain[i[0]]);
    let w2 = ArrayD::from_shape_fn(ndarray::IxDyn(&[3, 4, 1, 1]), |i| {
        wave(100 + i[0] * 4 + i[1]) / gain[i[1]].sqrt()
    });
    let b2 = ArrayD::from_shape_fn(ndarray::IxDyn(&[3]), |i| 0.05 * i[0] as f32);
    let conv = |inputs: [&str; 3], out: &str, pad: i64| Node {
        op_type: "Conv".into(),
        inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
        outputs: vec![out.into()],
        attributes: vec![("pads".into(), Attribute::Ints(vec![pad; 4]))],
        ..Node::default()
    };
    let graph = Graph {
        nodes: vec![
            conv(["x", "w1", "b1"], "c1", 1),
            Node {
                op_type: act.into(),
                inputs: vec!["c1".into()],
                outputs: vec!["a".into()],
                ..Node::default()
            },
            conv(["a", "w2", "b2"], "y", 0),
        ],
        inputs: vec![ValueInfo {
            name: "x".into(),
            ..ValueInfo::default()
        }],
        outputs: vec![ValueInfo {
            name: "y".into(),
            ..ValueInfo::default()
        }],
        initializers: vec![
            ("w1".into(), Tensor::F32(w1)),
            ("b1".into(), Tensor::F32(b1)),
            ("w2".into(), Tensor::F32(w2)),
            ("b2".into(), Tensor::F32(b2)),
        ],
        ..Graph::default()
    };
    Model {
        ir_version: 8,
        opset_imports: vec![OpsetImport {
            domain: String::new(),
            version: 13,
        }],
        graph,
        ..Model::default()
    }
}

fn weight(m: &Model, name: &str) -> ArrayD<f32> {
    m.graph
        .initializer(name)
        .and_then(Tensor::as_f32)
        .expect("weight")
        .clone()
}

#[test]
fn equalization_keeps_the_float_function_and_balances_ranges() {
    let model = conv_pair("Relu");
    let (eq, pairs) = edgeml_quant::quantize::equalize(&model).expect("equalize");
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].0.name, "Conv(c1)");
    assert_eq!(pairs[0].1.name, "Conv(y)");
    // Ranges per channel are equal after: max|W1[i]| = max|W2[:, i]|.
    let (w1, w2) = (weight(&eq, "w1"), weight(&eq, "w2"));
    for (row, col) in w1.axis_iter(Axis(0)).zip(w2.axis_iter(Axis(1))) {
        let r1 = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let r2 = col.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!((r1 - r2).abs() <= 1e-5 * r1.max(r2), "{r1} vs {r2}");
    }
    assert_ne!(weight(&model, "w1"), w1);
    // Equal float outputs.
    let batches: Vec<ArrayD<f32>> = (0..4)
        .map(|b| {
            ArrayD::from_shape_fn(ndarray::IxDyn(&[5, 2, 6, 6]), |i| {
                (((i[0] * 7 + i[1] * 5 + i[2] * 3 + i[3] + b * 11) % 13) as f32 - 4.0) * 0.25
            })
        })
        .collect();
    let (f, g) = (values(&model, "y", &batches), values(&eq, "y", &batches));
    let s = sqnr(&f, &g);
    assert!(s > 100.0, "float outputs differ: {s} dB");
    // Per-tensor weights: equalization raises the output SQNR of the quantized model.
    let plain = Config {
        layer_errors: true,
        ..Config::default()
    };
    let with = Config {
        equalize: true,
        ..plain.clone()
    };
    let (_, r0) = quantize_static(&model, &batches, &plain).expect("quantize");
    let (q1, r1) = quantize_static(&model, &batches, &with).expect("quantize");
    let (s0, s1) = (
        r0.output_sqnr_db.expect("measured"),
        r1.output_sqnr_db.expect("measured"),
    );
    println!("conv pair per-tensor: output SQNR {s0:.2} dB -> {s1:.2} dB with equalization");
    assert!(s1 > s0 + 3.0, "{s0} -> {s1}");
    assert!(r0.equalized.is_empty());
    assert_eq!(r1.equalized, pairs);
    // Measured against the original model.
    let want = sqnr(&f, &values(&q1, "y", &batches));
    assert!((s1 - want).abs() < 1e-6, "{s1} vs {want}");
    // A Sigmoid between them is not scale-equivariant: nothing changes.
    let (eq, pairs) = edgeml_quant::quantize::equalize(&conv_pair("Sigmoid")).expect("equalize");
    assert!(pairs.is_empty());
    assert_eq!(eq, conv_pair("Sigmoid"));
    let e = quantize_dynamic(&model, &with).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
}

#[test]
fn target_sqnr_on_training_images_meets_the_target() {
    // The training split (u8 pixel values 0..16, scaled to [0, 1]) in batches of 100.
    let raw: ArrayD<u8> = read_npy(digits::dir().join("x_train_u8.npy")).expect("x_train_u8");
    let x = raw.mapv(|v| f32::from(v) / 16.0);
    let cal: Vec<ArrayD<f32>> = x
        .axis_chunks_iter(Axis(0), 100)
        .map(|c| c.to_owned())
        .collect();
    for name in ["cnn", "mlp"] {
        let model = Model::load(digits::dir().join(format!("{name}.onnx"))).expect("load");
        let base = Config {
            per_channel: true,
            layer_errors: true,
            ..Config::default()
        };
        let (_, r0) = quantize_static(&model, &cal, &base).expect("quantize");
        let s0 = r0.output_sqnr_db.expect("measured");
        let target = s0 + 2.0;
        let config = Config {
            target_sqnr: Some(target),
            ..base
        };
        let (_, r) = quantize_static(&model, &cal, &config).expect("quantize");
        let got = r.output_sqnr_db.expect("measured");
        println!(
            "{name} per-channel, train calibration: all-INT8 {s0:.2} dB, target {target:.2}: \
             kept {:?}, {got:.2} dB",
            r.kept_float
                .iter()
                .map(|k| &k.node.name)
                .collect::<Vec<_>>()
        );
        assert!(!r.kept_float.is_empty(), "{name}");
        assert!(got >= target || r.quantized.is_empty(), "{name}: {got}");
    }
}

//! `edgeml_quant::fp16::convert_weights` on the bundled digits models and on edge
//! values: the file halves, the outputs stay within float16 rounding of float, and
//! out-of-range weights are clamped as onnxconverter-common clamps them.
#![cfg(feature = "onnx")]

use edgeml_core::{DType, ErrorKind, f16};
use edgeml_onnx::{Model, ModelBuilder, Node, Plan, PlanOptions, Tensor, ValueInfo};
use edgeml_quant::fp16::{convert_weights, convert_weights_bf16};
use ndarray::{ArrayD, IxDyn};

use std::path::Path;

#[path = "../../tests/common/digits.rs"]
mod digits;

fn run(model: &Model, x: &ArrayD<f32>) -> ArrayD<f32> {
    let plan = Plan::new(model, PlanOptions::with_threads(1)).expect("plan");
    let out = plan.run(&[("x", Tensor::F32(x.clone()))]).expect("run");
    out[0].1.as_f32().expect("f32 output").clone()
}

#[test]
fn digits_models_halve_and_keep_their_outputs() {
    let (x, y) = digits::test_set();
    for name in ["cnn", "mlp"] {
        let path = digits::dir().join(format!("{name}.onnx"));
        let model = Model::load(&path).expect("load");
        let (h, report) = convert_weights(&model, &[]).expect("fp16");
        let floats = model
            .graph
            .initializers
            .iter()
            .filter(|(_, t)| t.as_f32().is_some())
            .count();
        assert_eq!(report.converted.len(), floats, "{name}");
        // The MLP holds weights below the smallest float16 subnormal (decayed weights of
        // always-blank pixels): those, and only those, are clamped.
        let out_of_range = model
            .graph
            .initializers
            .iter()
            .filter_map(|(_, t)| t.as_f32())
            .flat_map(|a| a.iter())
            .filter(|v| v.abs() > 65504.0 || (**v != 0.0 && v.abs() < 5.96e-8))
            .count();
        assert_eq!(report.clamped, out_of_range, "{name}");
        assert!(
            h.graph
                .initializers
                .iter()
                .all(|(_, t)| t.as_f32().is_none())
        );
        // Reloaded from bytes, it runs and agrees within float16 rounding.
        compare_on_digits(
            &format!("{name} fp16"),
            &model,
            &path,
            &h,
            (&x, &y),
            5e-3,
            1,
        );
    }
}

/// Reloads `converted` (of `model`, read from `path`) from its bytes, runs both on the
/// digits test set `(x, y)` and checks: the worst probability difference below
/// `max_dp`, accuracy within `max_flips` of the 450 test images of float's, the file
/// under 75% of the original. Prints the figures.
fn compare_on_digits(
    what: &str,
    model: &Model,
    path: &Path,
    converted: &Model,
    (x, y): (&ArrayD<f32>, &ArrayD<i64>),
    max_dp: f32,
    max_flips: u32,
) {
    let bytes = converted.to_bytes().expect("bytes");
    let h = Model::from_bytes(&bytes).expect("reload");
    let (pf, ph) = (run(model, x), run(&h, x));
    let worst = pf
        .iter()
        .zip(ph.iter())
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    let (af, ah) = (digits::accuracy(&pf, y), digits::accuracy(&ph, y));
    let ratio = bytes.len() as f64 / std::fs::metadata(path).expect("size").len() as f64;
    println!(
        "{what}: worst |dp| {worst:.2e}, accuracy {ah:.4} (float {af:.4}), size {:.1}%",
        100.0 * ratio
    );
    assert!(worst < max_dp, "{what}: {worst}");
    assert!(
        (af - ah).abs() <= f64::from(max_flips) / 450.0 + 1e-9,
        "{what}: {ah} vs {af}"
    );
    assert!(ratio < 0.75, "{what}: size ratio {ratio}");
}

fn tiny(w: Vec<f32>) -> Model {
    let n = w.len();
    ModelBuilder::new(13)
        .input(ValueInfo::tensor(
            "x",
            DType::F32,
            vec![edgeml_onnx::Dim::Known(n)],
        ))
        .output(ValueInfo::named("y"))
        .node(Node::new("Mul", &["x", "w"], &["y"]))
        .initializer(
            "w",
            Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[n]), w).expect("shape")),
        )
        .build()
        .expect("model")
}

#[test]
fn out_of_range_weights_are_clamped_and_non_finite_refused() {
    let w = vec![1e6, -1e6, 1e-9, -1e-9, 0.0, 1.0, 65504.0, 0.1];
    let (h, report) = convert_weights(&tiny(w), &[]).expect("fp16");
    assert_eq!(report.clamped, 4);
    let (_, t) = h
        .graph
        .initializers
        .iter()
        .find(|(n, _)| n == "w_fp16")
        .expect("w_fp16");
    let Tensor::F16(a) = t else {
        panic!("not f16: {t:?}")
    };
    let got: Vec<f32> = a.iter().map(|v| v.to_f32()).collect();
    let sub = f16::from_f32(5.96e-8).to_f32();
    assert_eq!(got[..7], [65504.0, -65504.0, sub, -sub, 0.0, 1.0, 65504.0]);
    assert_eq!(got[7], f16::from_f32(0.1).to_f32());
    assert!(sub > 0.0);
    let x = ArrayD::from_elem(IxDyn(&[8]), 1.0f32);
    let plan = Plan::new(&h, PlanOptions::with_threads(1)).expect("plan");
    let y = plan.run(&[("x", Tensor::F32(x))]).expect("run");
    let y: Vec<f32> = y[0].1.as_f32().expect("f32").iter().copied().collect();
    assert_eq!(y, got);
    // Kept names stay float32; NaN is refused.
    let (k, report) = convert_weights(&tiny(vec![1.0, 2.0]), &["w".into()]).expect("keep");
    assert!(report.converted.is_empty());
    assert!(k.graph.initializer("w").and_then(Tensor::as_f32).is_some());
    let e = convert_weights(&tiny(vec![f32::NAN]), &[]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonFinite, "{e}");
}

/// bfloat16 by its definition: the upper 16 bits of the float32, rounded to nearest
/// even (finite values whose rounding does not overflow).
fn bf16_reference(v: f32) -> f32 {
    let b = v.to_bits();
    let r = b.wrapping_add(0x7fff + ((b >> 16) & 1));
    f32::from_bits(r & 0xffff_0000)
}

#[test]
fn bf16_weights_round_to_nearest_even_and_clamp_only_overflow() {
    let big = f32::MAX; // above bfloat16's largest finite value: clamped, not infinite
    let w = vec![
        big,
        -big,
        3.0e38,
        1e-40,
        0.1,
        -1.0 / 3.0,
        1.0 + 1.0 / 256.0,
        0.0,
    ];
    let (h, report) = convert_weights_bf16(&tiny(w.clone()), &[]).expect("bf16");
    assert_eq!(report.clamped, 2);
    assert_eq!(report.converted, ["w"]);
    let (_, t) = h
        .graph
        .initializers
        .iter()
        .find(|(n, _)| n == "w_bf16")
        .expect("w_bf16");
    let Tensor::BF16(a) = t else {
        panic!("not bf16: {t:?}")
    };
    let got: Vec<f32> = a.iter().map(|v| v.to_f32()).collect();
    let max = f32::from_bits(0x7f7f_0000); // bfloat16's largest finite value
    assert_eq!(got[..2], [max, -max]);
    for (g, v) in got[2..].iter().zip(&w[2..]) {
        assert_eq!(*g, bf16_reference(*v), "{v}");
    }
    // 1 + 2^-8 lies halfway between two bfloat16 values: ties go to the even one (1.0).
    assert_eq!(got[6], 1.0);
    let x = ArrayD::from_elem(IxDyn(&[8]), 1.0f32);
    let plan = Plan::new(&h, PlanOptions::with_threads(1)).expect("plan");
    let y = plan.run(&[("x", Tensor::F32(x))]).expect("run");
    let y: Vec<f32> = y[0].1.as_f32().expect("f32").iter().copied().collect();
    assert_eq!(y, got);
    // Opset 12 has no Cast from bfloat16.
    let mut old = tiny(vec![1.0]);
    for o in &mut old.opset_imports {
        if o.domain.is_empty() {
            o.version = 12;
        }
    }
    let e = convert_weights_bf16(&old, &[]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let e = convert_weights_bf16(&tiny(vec![f32::INFINITY]), &[]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonFinite, "{e}");
}

#[test]
fn digits_models_in_bf16_halve_and_keep_their_accuracy() {
    let (x, y) = digits::test_set();
    for name in ["cnn", "mlp"] {
        let path = digits::dir().join(format!("{name}.onnx"));
        let model = Model::load(&path).expect("load");
        let (h, report) = convert_weights_bf16(&model, &[]).expect("bf16");
        assert_eq!(report.clamped, 0, "{name}");
        compare_on_digits(
            &format!("{name} bf16"),
            &model,
            &path,
            &h,
            (&x, &y),
            5e-2,
            2,
        );
    }
}

//! Calibration of models with several inputs ([`Feeds`]): the digits CNN given its image
//! as two inputs, the top and bottom halves joined by a `Concat`, quantizes to the same
//! model (bit for bit, on all 450 test images) as the single-input CNN calibrated on the
//! same images, and keeps its accuracy; wrong feeds are typed errors naming the input.
#![cfg(feature = "onnx")]

use edgeml_core::{DType, ErrorKind};
use edgeml_onnx::{Attribute, Dim, Model, Node, Plan, PlanOptions, Tensor, ValueInfo};
use edgeml_quant::quantize::{Config, Feeds, quantize_static};
use ndarray::{ArrayD, Axis, s};

#[path = "../../tests/common/digits.rs"]
mod digits;

use digits::{calibration, test_set};

/// The digits CNN with its `x` `[N, 1, 8, 8]` given as `top` and `bottom`
/// (`[N, 1, 4, 8]` each), joined on axis 2.
fn two_input_cnn() -> Model {
    let mut m = Model::load(digits::dir().join("cnn.onnx")).expect("load");
    let g = &mut m.graph;
    let half = |name: &str| {
        ValueInfo::tensor(
            name,
            DType::F32,
            vec![
                Dim::Symbolic("N".into()),
                Dim::Known(1),
                Dim::Known(4),
                Dim::Known(8),
            ],
        )
    };
    g.inputs.retain(|i| i.name != "x");
    g.inputs.insert(0, half("top"));
    g.inputs.insert(1, half("bottom"));
    g.nodes.insert(
        0,
        Node::new("Concat", &["top", "bottom"], &["x"]).with_attr("axis", Attribute::Int(2)),
    );
    m
}

/// The halves of `x` as feeds.
fn split(x: &ArrayD<f32>) -> Feeds {
    vec![
        (
            "top".into(),
            Tensor::F32(x.slice(s![.., .., 0..4, ..]).to_owned().into_dyn()),
        ),
        (
            "bottom".into(),
            Tensor::F32(x.slice(s![.., .., 4..8, ..]).to_owned().into_dyn()),
        ),
    ]
}

fn run(model: &Model, feeds: &Feeds) -> ArrayD<f32> {
    let mut m = model.clone();
    let (reg, _) = edgeml_quant::onnx::prepare(&mut m);
    let plan = Plan::with_registry(&m, PlanOptions::with_threads(1), &reg).expect("plan");
    let inputs: Vec<(&str, Tensor)> = feeds.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let out = plan.run(&inputs).expect("run");
    out[0].1.as_f32().expect("f32 output").clone()
}

#[test]
fn two_inputs_quantize_like_one() {
    let plain = Config {
        per_channel: true,
        ..Config::default()
    };
    same_as_one_input(&plain);
    // Bias correction and the SQNR measurement run the float model on the feeds too.
    same_as_one_input(&Config {
        bias_correction: true,
        layer_errors: true,
        ..plain
    });
}

fn same_as_one_input(config: &Config) {
    let (x, y) = test_set();
    let one = Model::load(digits::dir().join("cnn.onnx")).expect("load");
    let (q_one, _) = quantize_static(&one, &calibration(&x), config).expect("one input");
    let batches: Vec<Feeds> = calibration(&x).iter().map(split).collect();
    let two = two_input_cnn();
    let (q_two, report) = quantize_static(&two, &batches, config).expect("two inputs");
    assert_eq!(report.batches, 10);
    if config.layer_errors {
        assert!(
            report.output_sqnr_db.is_some_and(|db| db > 10.0),
            "{report:?}"
        );
    }
    assert!(report.quantized.iter().any(|n| n.op_type == "Conv"));
    let a = run(&q_one, &vec![("x".into(), Tensor::F32(x.clone()))]);
    let b = run(&q_two, &split(&x));
    assert_eq!(a.shape(), b.shape());
    let differ = a.iter().zip(&b).filter(|(p, q)| p != q).count();
    assert_eq!(differ, 0, "{differ} of {} outputs differ", a.len());
    let float = run(&two, &split(&x));
    let (acc_q, acc_f) = (digits::accuracy(&b, &y), digits::accuracy(&float, &y));
    println!("two-input CNN: float {acc_f:.4}, int8 {acc_q:.4}");
    assert!(acc_q >= acc_f - 0.01, "int8 {acc_q} vs float {acc_f}");
}

#[test]
fn wrong_feeds_are_typed_errors() {
    let (x, _) = test_set();
    let model = two_input_cnn();
    let c = Config::default();
    let x10 = x.slice_axis(Axis(0), (0..10).into()).to_owned();
    let expect = |batches: Vec<Feeds>, kind: ErrorKind, words: &[&str]| {
        let e = quantize_static(&model, &batches, &c).unwrap_err();
        assert_eq!(e.kind(), kind, "{e}");
        for w in words {
            assert!(e.to_string().contains(w), "{e:?} lacks {w:?}");
        }
    };
    let good = split(&x10);
    expect(
        vec![good[..1].to_vec()],
        ErrorKind::ShapeMismatch,
        &["bottom", "no value"],
    );
    let mut twice = good.clone();
    twice.push(good[0].clone());
    expect(
        vec![twice],
        ErrorKind::ShapeMismatch,
        &["top", "more than once"],
    );
    let mut unknown = good.clone();
    unknown.push(("x".into(), good[0].1.clone()));
    expect(
        vec![unknown],
        ErrorKind::ShapeMismatch,
        &["\"x\"", "top, bottom"],
    );
    let mut ints = good.clone();
    ints[1].1 = Tensor::I64(ArrayD::zeros(vec![10, 1, 4, 8]));
    expect(vec![ints], ErrorKind::ShapeMismatch, &["bottom", "I64"]);
    let mut shape = good.clone();
    shape[0].1 = Tensor::F32(x10.clone());
    expect(
        vec![good.clone(), shape],
        ErrorKind::ShapeMismatch,
        &["batch 1", "top"],
    );
    let mut nan = good.clone();
    if let Tensor::F32(a) = &mut nan[1].1 {
        a[[3, 0, 1, 2]] = f32::NAN;
    }
    expect(vec![nan], ErrorKind::NonFinite, &["NaN", "bottom"]);
    // One array per batch needs a single-input model, and says what to give instead.
    let e = quantize_static(&model, &calibration(&x), &c).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("Feeds"), "{e}");
}

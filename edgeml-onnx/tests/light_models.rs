//! The nine "light" models of the onnx package (AlexNet, DenseNet-121, Inception v1/v2,
//! ResNet-50, ShuffleNet, SqueezeNet, VGG-19, ZFNet-512) must match onnxruntime within
//! rtol 1e-3 / atol 1e-5 (`scripts/make_light_fixtures.py` made the references).
//!
//! Run all nine with `cargo test -p edgeml-onnx --release --test light_models`, or in
//! any build with `EDGEML_LIGHT_MODELS=all` (as `scripts/ci/onnx-backend.sh` does).
//! Otherwise debug and test builds run only the cheapest two (SqueezeNet, ShuffleNet) to
//! keep `cargo test` quick.
//! A model may fail to plan with `Unsupported` only if it is in [`EXPECTED_UNSUPPORTED`],
//! a reviewed list (empty today: all nine plan); it is then skipped with a `SKIP:`
//! line. Any other failure fails the test, and so does a listed model that plans.

mod common;

use edgeml_onnx::{Error, Model, Plan, PlanOptions, Tensor};
use ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};

const MODELS: [&str; 9] = [
    "light_bvlc_alexnet",
    "light_densenet121",
    "light_inception_v1",
    "light_inception_v2",
    "light_resnet50",
    "light_shufflenet",
    "light_squeezenet",
    "light_vgg19",
    "light_zfnet512",
];

/// Models expected to fail planning with `Unsupported`, each with the reason. Reviewed:
/// adding an entry needs a reason a reviewer accepts; an entry whose model plans fails
/// the test, so the list cannot go stale.
const EXPECTED_UNSUPPORTED: &[(&str, &str)] = &[];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// The deterministic input of `make_light_fixtures.py`, bit for bit.
fn det_input(shape: &[usize]) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n as i64)
        .map(|i| ((i * 7919) % 256) as f32 / 255.0f32 - 0.5f32)
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape")
}

/// Ok(true) = matched, Ok(false) = skipped (listed in [`EXPECTED_UNSUPPORTED`] and
/// failed to plan with `Unsupported`).
fn run_model(name: &str) -> Result<bool, String> {
    let model =
        Model::load(fixtures().join(format!("models/{name}.onnx"))).map_err(|e| e.to_string())?;
    let expected = EXPECTED_UNSUPPORTED.iter().find(|(n, _)| *n == name);
    let plan = match (Plan::new(&model, PlanOptions::default()), expected) {
        (Ok(p), None) => p,
        (Ok(_), Some((_, why))) => {
            return Err(format!(
                "plans now, but EXPECTED_UNSUPPORTED lists it ({why}): remove it from the list"
            ));
        }
        (Err(Error::Unsupported(m)), Some((_, why))) => {
            println!("SKIP: {name}: expected unsupported ({why}): {m}");
            return Ok(false);
        }
        (Err(e), _) => return Err(format!("plan: {e}")),
    };
    let info = &plan.inputs()[0];
    let shape: Vec<usize> = info
        .shape
        .as_ref()
        .ok_or("input has no shape")?
        .iter()
        .map(|d| match d {
            edgeml_onnx::Dim::Known(k) => *k,
            _ => 1,
        })
        .collect();
    let x = Tensor::F32(det_input(&shape));
    let out = plan
        .run(&[(info.name.as_str(), x)])
        .map_err(|e| format!("run: {e}"))?;
    let want = common::read_any(&fixtures().join(format!("light/{name}.out0.npy")));
    common::compare(&out[0].1, &want, 1e-3, 1e-5)?;
    Ok(true)
}

#[test]
fn light_models_match_onnxruntime() {
    for (name, _) in EXPECTED_UNSUPPORTED {
        assert!(
            MODELS.contains(name),
            "EXPECTED_UNSUPPORTED names {name}, not a model"
        );
    }
    let all = std::env::var("EDGEML_LIGHT_MODELS").is_ok_and(|v| v == "all");
    let chosen: Vec<&str> = if cfg!(debug_assertions) && !all {
        println!(
            "SKIP: debug build: the seven largest light models run only with --release \
             or EDGEML_LIGHT_MODELS=all"
        );
        vec!["light_squeezenet", "light_shufflenet"]
    } else {
        MODELS.to_vec()
    };
    let mut failed = Vec::new();
    for name in chosen {
        let t = std::time::Instant::now();
        match run_model(name) {
            Ok(true) => eprintln!("{name}: ok in {:.2?}", t.elapsed()),
            Ok(false) => {}
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Idle workers spin during a run unless `spin` is off. Concurrent runs of one
/// 2-thread plan from several callers (whose spinning workers may pick up each other's
/// tasks) must all finish and agree bit for bit with a plan whose workers sleep, which
/// splits the work the same way.
#[test]
fn spinning_and_sleeping_workers_agree_under_concurrent_callers() {
    let name = "light_squeezenet";
    let model = Model::load(fixtures().join(format!("models/{name}.onnx"))).expect("model");
    let mut quiet = PlanOptions::with_threads(2);
    quiet.spin = false;
    let sleeping = Plan::new(&model, quiet).expect("plan");
    let spinning = Plan::new(&model, PlanOptions::with_threads(2)).expect("plan");
    let x = Tensor::F32(det_input(&[1, 3, 224, 224]));
    let want = sleeping.run(&[("data_0", x.clone())]).expect("run");
    let want = want[0].1.as_f32().expect("f32");
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..2 {
                    let got = spinning.run(&[("data_0", x.clone())]).expect("run");
                    let got = got[0].1.as_f32().expect("f32");
                    assert!(
                        got.iter()
                            .zip(want.iter())
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "spinning plan differs from the sleeping one"
                    );
                }
            });
        }
    });
}

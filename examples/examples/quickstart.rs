//! Quickstart: load the bundled digits CNN, print what `edgeml inspect` prints, round-trip
//! it through an atomic save/load, then plan it once, classify the held-out split and
//! report accuracy and latency.
//!
//! ```text
//! cargo run --release -p edgeml-examples --example quickstart
//! ```
//!
//! The model and data come from `scripts/make_fixtures.py` (scikit-learn's digits set,
//! 8×8 images, 10 classes; a small CNN trained with numpy and exported to ONNX).

use anyhow::{Context, ensure};
use edgeml::onnx::{Model, Plan, PlanOptions, Tensor};
use ndarray::{ArrayD, Axis};
use ndarray_npy::read_npy;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn argmax(row: ndarray::ArrayViewD<'_, f32>) -> usize {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
        )
        .0
}

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/digits");
    let model = Model::load(dir.join("cnn.onnx")).context("loading the digits CNN")?;
    print!("{}", model.summary());

    // Round trip through an atomic save in a fresh temporary folder.
    let tmp = std::env::temp_dir().join(format!("edgeml-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let copy = tmp.join("cnn.onnx");
    model.save(&copy)?;
    let back = Model::load(&copy)?;
    std::fs::remove_dir_all(&tmp)?;
    ensure!(back == model, "the round-tripped model differs");
    println!("round trip through save/load: identical");

    let t = Instant::now();
    let plan = Plan::new(&model, PlanOptions::with_threads(1))?;
    println!(
        "planned in {:.2?} ({} steps after folding)",
        t.elapsed(),
        plan.num_steps()
    );

    let x: ArrayD<f32> = read_npy(dir.join("x_test.npy"))?;
    let y: ArrayD<i64> = read_npy(dir.join("y_test.npy"))?;
    let n = x.shape()[0];

    // The whole split as one batch.
    let t = Instant::now();
    let out = plan.run(&[("x", Tensor::F32(x.clone()))])?;
    let batch_time = t.elapsed();
    let probs = out[0].1.as_f32().context("probs are f32")?;
    let correct = probs
        .outer_iter()
        .zip(y.iter())
        .filter(|(p, label)| argmax(p.view()) as i64 == **label)
        .count();
    println!(
        "accuracy: {:.2}% ({correct}/{n}); batch of {n} in {batch_time:.2?}",
        100.0 * correct as f64 / n as f64
    );

    // One image at a time, as a device would see them.
    let mut times: Vec<Duration> = Vec::with_capacity(n);
    for i in 0..n {
        let xi = x.index_axis(Axis(0), i).insert_axis(Axis(0)).to_owned();
        let t = Instant::now();
        plan.run(&[("x", Tensor::F32(xi))])?;
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "single-image latency: median {:.1?}, p90 {:.1?}",
        times[n / 2],
        times[n * 9 / 10]
    );
    Ok(())
}

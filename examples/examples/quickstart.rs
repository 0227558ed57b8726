//! Quickstart: the bundled digits CNN through every step edgeml has today, ending in one
//! table of size, accuracy and latency per step:
//!
//! 1. load it, print what `edgeml inspect` prints, round-trip it through an atomic
//!    save/load, and run it in float; simplify it with the graph passes of
//!    `edgeml optimize` (basic level) and run that too;
//! 2. quantize it with edgeml (static QDQ, calibrated on 100 images) and run it on the
//!    INT8 kernels, beside the same model quantized by onnxruntime's `quantize_static`
//!    (`scripts/make_qmodel_fixtures.py`, same calibration images); also dynamic INT8
//!    (no calibration) and FP16 weights;
//! 3. prune it (global magnitude, 50%, one-shot, sparse storage), and prune 70% then
//!    refit the kept weights by least squares on 300 training images (`--recalibrate`);
//! 4. distill it into a small MLP student (Hinton KD on the training split), and
//!    quantize the student too; distill a wider student pruned to 87.5% while it
//!    learns (a quarter of the teacher's parameters);
//! 5. watch the deployed INT8 model for drift: a KS test on its confidences, first on
//!    a clean stream, then on a shifted one (the same images, brighter and noisier).
//!
//! ```text
//! cargo run --release -p edgeml-examples --example quickstart
//! ```
//!
//! The model and data come from `scripts/make_fixtures.py` (scikit-learn's digits set,
//! 8×8 images, 10 classes; a small CNN trained with numpy and exported to ONNX).

use anyhow::{Context, ensure};
use edgeml::drift::stats::{Method, ks_2samp};
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
    let mut rows = Vec::new();
    let float = evaluate(&plan, &x, &y)?;
    rows.push(Row::new(
        "float (f32)",
        file_len(&dir.join("cnn.onnx"))?,
        &float,
    ));

    let tmp = std::env::temp_dir().join(format!("edgeml-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;

    // Simplify with the public graph passes (what `edgeml optimize` runs): constant
    // folding, BatchNormalization folding, Identity/Dropout removal, dead code.
    let mut simplified = model.clone();
    let report =
        edgeml::onnx::passes::Pipeline::for_level(edgeml::onnx::passes::OptimizeLevel::Basic)
            .run(&mut simplified)?;
    println!(
        "edgeml optimize (basic): {} -> {} nodes in {} round(s)",
        model.graph.nodes.len(),
        simplified.graph.nodes.len(),
        report.rounds
    );
    let opath = tmp.join("cnn_optimized.onnx");
    simplified.save(&opath)?;
    let oplan = Plan::new(&Model::load(&opath)?, PlanOptions::with_threads(1))?;
    let optimized = evaluate(&oplan, &x, &y)?;
    ensure!(
        optimized.accuracy == float.accuracy,
        "graph passes changed the accuracy"
    );
    rows.push(Row::new(
        "float, edgeml optimize (graph passes)",
        file_len(&opath)?,
        &optimized,
    ));

    // Quantize with edgeml: static QDQ (u8 activations, i8 per-channel weights, as the
    // onnxruntime file below), calibrated on the first 100 images in batches of 10, then run with the QDQ groups fused onto the exact INT8 kernels.
    let batches: Vec<ArrayD<f32>> = (0..10)
        .map(|b| {
            x.slice_axis(Axis(0), (b * 10..b * 10 + 10).into())
                .to_owned()
        })
        .collect();
    let config = edgeml::quant::quantize::Config {
        per_channel: true,
        ..Default::default()
    };
    let (quantized, qreport) = edgeml::quant::quantize::quantize_static(&model, &batches, &config)?;
    println!(
        "edgeml quantize: {} nodes quantized, {} left in float",
        qreport.quantized.len(),
        qreport.float_nodes.len()
    );
    let qpath = tmp.join("cnn_int8.onnx");
    quantized.save(&qpath)?;
    let (qplan, int8) = run_int8(&qpath, &x, &y)?;
    let qbytes = file_len(&qpath)?;
    rows.push(Row::new(
        "INT8, edgeml quantize (static QDQ)",
        qbytes,
        &int8,
    ));
    let ort_path = dir.join("../qmodels/cnn_qdq_u8s8_per_channel/model.onnx");
    let (_, ort_int8) = run_int8(&ort_path, &x, &y)?;
    rows.push(Row::new(
        "INT8, onnxruntime quantize_static (same data)",
        file_len(&ort_path)?,
        &ort_int8,
    ));

    // The other output forms of `edgeml quantize`: dynamic INT8 (weights quantized
    // ahead, activations at run time; no calibration data) and float16.
    let (dynamic, _) = edgeml::quant::quantize::quantize_dynamic(&model, &config)?;
    let dpath = tmp.join("cnn_dynamic.onnx");
    dynamic.save(&dpath)?;
    let (_, dyn_eval) = run_int8(&dpath, &x, &y)?;
    rows.push(Row::new(
        "INT8, edgeml quantize --mode dynamic",
        file_len(&dpath)?,
        &dyn_eval,
    ));
    let (half_model, _) = edgeml::quant::fp16::convert_float_to_float16(
        &model,
        &edgeml::quant::fp16::HalfOptions::default(),
    )?;
    let hpath = tmp.join("cnn_fp16.onnx");
    half_model.save(&hpath)?;
    let hplan = Plan::new(&Model::load(&hpath)?, PlanOptions::with_threads(1))?;
    rows.push(Row::new(
        "FP16 (float16 model), edgeml quantize --mode fp16",
        file_len(&hpath)?,
        &evaluate(&hplan, &x, &y)?,
    ));

    // Prune: global magnitude pruning of half the weights, one-shot, stored sparse.
    let mut pruned = model.clone();
    let preport = edgeml::prune::prune_model(
        &mut pruned,
        &edgeml::prune::PruneConfig {
            sparsity: 0.5,
            scope: edgeml::prune::Scope::Global,
            sparse_storage: true,
            ..Default::default()
        },
    )?;
    let ppath = tmp.join("cnn_pruned.onnx");
    pruned.save(&ppath)?;
    let pplan = Plan::new(&Model::load(&ppath)?, PlanOptions::with_threads(1))?;
    let pruned_eval = evaluate(&pplan, &x, &y)?;
    println!("edgeml prune: {} layers pruned", preport.layers.len());
    rows.push(Row::new(
        "pruned 50% (global magnitude, one-shot)",
        file_len(&ppath)?,
        &pruned_eval,
    ));
    // Prune harder, then refit the kept weights by least squares on 300 training
    // images (no labels): `edgeml prune -s 0.7 --recalibrate`.
    let train: ArrayD<u8> = read_npy(dir.join("x_train_u8.npy"))?;
    let train = train
        .slice_axis(Axis(0), (0..300).into())
        .mapv(|v| f32::from(v) / 16.0);
    let mut recal = model.clone();
    let rreport = edgeml::prune::prune_model(
        &mut recal,
        &edgeml::prune::PruneConfig {
            sparsity: 0.7,
            scope: edgeml::prune::Scope::Global,
            sparse_storage: true,
            recalibrate: Some(edgeml::prune::onnx::Recalibrate::new(vec![train])),
            ..Default::default()
        },
    )?;
    for l in &rreport.recalibrated {
        if let (Some(b), Some(a)) = (l.error_before, l.error_after) {
            println!(
                "edgeml prune --recalibrate: {} output error {b:.3} -> {a:.3}",
                l.node
            );
        }
    }
    let rpath = tmp.join("cnn_pruned_recalibrated.onnx");
    recal.save(&rpath)?;
    let rplan = Plan::new(&Model::load(&rpath)?, PlanOptions::with_threads(1))?;
    rows.push(Row::new(
        "pruned 70% + least-squares recalibration",
        file_len(&rpath)?,
        &evaluate(&rplan, &x, &y)?,
    ));

    // Distill: the CNN teaches an MLP student (64-16-10) on the training split.
    let spath = tmp.join("student.onnx");
    distill_student(&dir, &dir.join("cnn.onnx"), &spath, &[16], None)?;
    let splan = Plan::new(&Model::load(&spath)?, PlanOptions::with_threads(1))?;
    let student = evaluate(&splan, &x, &y)?;
    rows.push(Row::new(
        "distilled MLP student (64-16-10, KD T = 4)",
        file_len(&spath)?,
        &student,
    ));
    // The student quantized in turn (static QDQ, the same calibration images).
    let (qstudent, _) =
        edgeml::quant::quantize::quantize_static(&Model::load(&spath)?, &batches, &config)?;
    let qspath = tmp.join("student_int8.onnx");
    qstudent.save(&qspath)?;
    let (_, qstudent_eval) = run_int8(&qspath, &x, &y)?;
    rows.push(Row::new(
        "distilled student, INT8 (edgeml quantize)",
        file_len(&qspath)?,
        &qstudent_eval,
    ));
    // A wider student pruned while it learns: 87.5% of its weights gone, a quarter of
    // the teacher's parameters left.
    let ppath = tmp.join("student_pruned.onnx");
    let nonzero = distill_student(&dir, &dir.join("cnn.onnx"), &ppath, &[32], Some(0.875))?;
    println!("pruned student: {nonzero} nonzero parameters (the CNN has 1370)");
    let pplan = Plan::new(&Model::load(&ppath)?, PlanOptions::with_threads(1))?;
    rows.push(Row::new(
        "distilled MLP 64-32-10, 87.5% pruned while distilled",
        file_len(&ppath)?,
        &evaluate(&pplan, &x, &y)?,
    ));
    std::fs::remove_dir_all(&tmp)?;

    // Drift: confidences of the deployed model on a reference window against a live
    // window; clean live data first, then a shifted stream.
    let half = x.shape()[0] / 2;
    let reference = &int8.confidence[..half];
    let clean = ks_2samp(reference, &int8.confidence[half..], Method::Auto)?;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let shifted_x = x.mapv(|v| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (v * 0.6 + 0.35 + ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.3).clamp(0.0, 1.0)
    });
    let shifted = evaluate(&qplan, &shifted_x, &y)?;
    let drift = ks_2samp(reference, &shifted.confidence[half..], Method::Auto)?;
    println!(
        "drift check (KS on INT8 confidences, {half} vs {} images): clean stream p = {:.3}, \
         shifted stream p = {:.2e} -> {}",
        x.shape()[0] - half,
        clean.pvalue,
        drift.pvalue,
        if drift.pvalue < 0.01 && clean.pvalue >= 0.01 {
            "drift flagged on the shifted stream only"
        } else {
            "UNEXPECTED"
        }
    );
    ensure!(
        drift.pvalue < 0.01 && clean.pvalue >= 0.01,
        "the drift check should flag the shifted stream and only it"
    );
    rows.push(Row::new("INT8 on the shifted stream", qbytes, &shifted));

    println!();
    println!(
        "| step | file size | accuracy ({} images) | single-image latency (median, 1 thread) |",
        x.shape()[0]
    );
    println!("|---|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.1} KiB | {:.2}% | {:.1?} |",
            r.name,
            r.bytes as f64 / 1024.0,
            100.0 * r.accuracy,
            r.latency
        );
    }
    ensure!(
        int8.accuracy >= float.accuracy - 0.01 && ort_int8.accuracy > 0.9,
        "INT8 accuracy {:.4} fell more than a point below float {:.4}",
        int8.accuracy,
        float.accuracy
    );
    Ok(())
}

/// Plans `path` for INT8 execution (QDQ groups fused) and evaluates it.
fn run_int8(
    path: &std::path::Path,
    x: &ArrayD<f32>,
    y: &ArrayD<i64>,
) -> anyhow::Result<(Plan, Eval)> {
    let mut m = Model::load(path)?;
    let (registry, fused) = edgeml::quant::onnx::prepare(&mut m);
    println!(
        "{}: {fused}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("?")
    );
    let plan = Plan::with_registry(&m, PlanOptions::with_threads(1), &registry)?;
    let e = evaluate(&plan, x, y)?;
    Ok((plan, e))
}

/// Trains an MLP student with `hidden` units on the teacher's soft targets (Hinton KD,
/// T = 4) over the training split and writes it to `out`; with `sparsity`, its weight
/// matrices are pruned to it while it trains (TF-MOT's polynomial schedule over the
/// first 100 epochs, one mask update per epoch) and stored sparse where that is
/// smaller. Returns the student's nonzero parameters.
fn distill_student(
    dir: &std::path::Path,
    teacher: &std::path::Path,
    out: &std::path::Path,
    hidden: &[usize],
    sparsity: Option<f64>,
) -> anyhow::Result<usize> {
    use edgeml::distill::{
        Kd, KdConfig, Mlp, Optimizer, PruneDuringTraining, Teacher, TeacherOptions, TrainConfig,
        TrainData, train,
    };
    let x_u8: ArrayD<u8> = read_npy(dir.join("x_train_u8.npy"))?;
    let x_train = x_u8.mapv(|v| f32::from(v) / 16.0);
    let y_train: ndarray::Array1<i64> = read_npy(dir.join("y_train.npy"))?;
    let y_train = y_train.to_vec();
    let soft = Teacher::load(teacher, TeacherOptions::default())?.predict(x_train.view())?;
    let x2 = x_train.to_shape((x_train.shape()[0], 64))?.to_owned();
    let data = TrainData {
        x: x2.view(),
        labels: Some(&y_train),
        teacher: Some(soft.values.view()),
    };
    let kd = Kd::new(KdConfig {
        temperature: 4.0,
        soft_weight: 0.9,
        hard_weight: 0.1,
        teacher: soft.kind,
        ..KdConfig::default()
    });
    let mut mlp = Mlp::new(&[1, 8, 8], hidden, 10, 7)?;
    let mut cfg = TrainConfig {
        epochs: 300,
        batch_size: 32,
        optimizer: Optimizer::adam_with_lr(3e-3),
        patience: Some(50),
        seed: 7,
        ..TrainConfig::default()
    };
    if let Some(s) = sparsity {
        let per_epoch = cfg.steps_per_epoch(x2.nrows()) as u64;
        cfg.pruning = Some(PruneDuringTraining::polynomial(
            s,
            0,
            100 * per_epoch,
            per_epoch,
        )?);
    }
    train(&mut mlp, &kd, &data, &cfg, &mut |_| {})?;
    let mut model = mlp.to_onnx()?;
    if sparsity.is_some() {
        model.graph.store_sparse_where_smaller();
    }
    model.save(out)?;
    Ok(mlp.num_nonzero_params())
}

/// One row of the final table.
struct Row {
    name: &'static str,
    bytes: u64,
    accuracy: f64,
    latency: Duration,
}

impl Row {
    fn new(name: &'static str, bytes: u64, e: &Eval) -> Self {
        Row {
            name,
            bytes,
            accuracy: e.accuracy,
            latency: e.latency,
        }
    }
}

fn file_len(p: &std::path::Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(p)
        .with_context(|| format!("{}", p.display()))?
        .len())
}

/// Accuracy, per-image confidences (highest probability) and median single-image
/// latency of `plan` on `x`.
struct Eval {
    accuracy: f64,
    confidence: Vec<f64>,
    latency: Duration,
}

fn evaluate(plan: &Plan, x: &ArrayD<f32>, y: &ArrayD<i64>) -> anyhow::Result<Eval> {
    let n = x.shape()[0];
    let out = plan.run(&[("x", Tensor::F32(x.clone()))])?;
    let probs = out[0].1.as_f32().context("probs are f32")?;
    let correct = probs
        .outer_iter()
        .zip(y.iter())
        .filter(|(p, label)| argmax(p.view()) as i64 == **label)
        .count();
    let confidence = probs
        .outer_iter()
        .map(|p| f64::from(p.iter().fold(0.0f32, |a, &b| a.max(b))))
        .collect();
    // One image at a time, as a device would see them.
    let mut times: Vec<Duration> = Vec::with_capacity(n);
    for i in 0..n {
        let xi = x.index_axis(Axis(0), i).insert_axis(Axis(0)).to_owned();
        let t = Instant::now();
        plan.run(&[("x", Tensor::F32(xi))])?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(Eval {
        accuracy: correct as f64 / n as f64,
        confidence,
        latency: times[n / 2],
    })
}

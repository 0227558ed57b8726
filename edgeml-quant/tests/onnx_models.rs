//! The digits models quantized by onnxruntime's quantizer (`tests/fixtures/qmodels/`,
//! made by `scripts/make_qmodel_fixtures.py`: static QDQ per-channel u8/s8, static QDQ
//! per-tensor s8/s8, static QOperator, dynamic) run through `edgeml_quant::onnx::prepare`
//! and agree with onnxruntime on ≥ 99.9% of output elements within one quantization
//! step of the logits (`tol.txt`), at 1 and 2 threads and after the basic and extended
//! optimization pipelines (which must keep them quantized and be idempotent); the QDQ
//! models must actually be fused (their Conv/MatMul/Gemm run on the INT8 kernels).
#![cfg(feature = "onnx")]

use edgeml_onnx::passes::OptimizeLevel;

#[path = "../../edgeml-onnx/tests/common/optimized.rs"]
mod optimized;
use edgeml_onnx::{Model, Plan, PlanOptions, Tensor};
use ndarray::ArrayD;
use ndarray_npy::read_npy;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn qmodels() -> PathBuf {
    match std::env::var_os("EDGEML_QMODELS_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => root().join("qmodels"),
    }
}

fn check(
    dir: &Path,
    x: &ArrayD<f32>,
    threads: usize,
    level: Option<OptimizeLevel>,
) -> Result<String, String> {
    let model = Model::load(dir.join("model.onnx")).map_err(|e| format!("load: {e}"))?;
    // The optimization pipeline must keep the model quantized (the summary below) and
    // its results.
    let mut model = optimized::optimized(&model, level)?;
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("?");
    let summary = edgeml_quant::onnx::summarize(&model);
    let want = if name.contains("qdq") {
        "QDQ"
    } else if name.contains("qoperator") {
        "QOperator"
    } else {
        "dynamic"
    };
    if summary.format != want || !summary.float.is_empty() {
        return Err(format!(
            "summary says {summary}, expected {want} with no float compute op"
        ));
    }
    let (reg, report) = edgeml_quant::onnx::prepare(&mut model);
    if name.contains("qdq") && report.total() == 0 {
        return Err(format!("no QDQ group was fused: {report}"));
    }
    let plan = Plan::with_registry(&model, PlanOptions::with_threads(threads), &reg)
        .map_err(|e| format!("plan: {e}"))?;
    let out = plan
        .run(&[("x", Tensor::F32(x.clone()))])
        .map_err(|e| format!("run: {e}"))?;
    let got = out[0].1.as_f32().ok_or("output is not f32")?;
    let want: ArrayD<f32> = read_npy(dir.join("out0.npy")).map_err(|e| e.to_string())?;
    let tol: f32 = std::fs::read_to_string(dir.join("tol.txt"))
        .map_err(|e| e.to_string())?
        .trim()
        .parse()
        .map_err(|e| format!("tol.txt: {e}"))?;
    if got.shape() != want.shape() {
        return Err(format!("shape {:?} vs {:?}", got.shape(), want.shape()));
    }
    let bad = got
        .iter()
        .zip(want.iter())
        .filter(|(a, b)| (*a - *b).abs() > tol * 1.0001)
        .count();
    let max = got
        .iter()
        .zip(want.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    if bad * 1000 > got.len() {
        return Err(format!(
            "{bad} of {} elements differ by more than {tol} (max {max})",
            got.len()
        ));
    }
    Ok(format!(
        "{name}: {report}; {bad} outside tol, max diff {max:.3e}"
    ))
}

#[test]
fn onnxruntime_quantized_digits_models_agree_with_onnxruntime() {
    let x: ArrayD<f32> = read_npy(root().join("digits/x_test.npy")).expect("x_test");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(qmodels())
        .expect("the qmodels fixtures exist")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 7,
        "expected 7 quantized models, found {}",
        dirs.len()
    );
    let mut failed = Vec::new();
    for d in &dirs {
        let runs = [
            (1, None),
            (2, None),
            (1, Some(OptimizeLevel::Basic)),
            (1, Some(OptimizeLevel::Extended)),
        ];
        for (threads, level) in runs {
            let what = match level {
                None => format!("{threads} threads"),
                Some(l) => format!("{threads} threads, after the {l:?} pipeline"),
            };
            match check(d, &x, threads, level) {
                Ok(msg) => println!("{msg} ({what})"),
                Err(e) => failed.push(format!("{} ({what}): {e}", d.display())),
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} failures:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

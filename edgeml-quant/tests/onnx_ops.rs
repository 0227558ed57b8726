//! Every quantized-operator case of `tests/fixtures/qops/` (made by
//! `scripts/make_qop_fixtures.py` with onnxruntime) must plan with
//! `edgeml_quant::onnx::registry()`, run, and match onnxruntime: integers exactly,
//! floats within 1e-5 relative. `EDGEML_QOPS_FIXTURES` points at another folder of
//! cases (CI regenerates them with the installed onnxruntime).
#![cfg(feature = "onnx")]

use edgeml_onnx::{Model, Plan, PlanOptions, Tensor};
use ndarray::ArrayD;
use ndarray_npy::read_npy;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    match std::env::var_os("EDGEML_QOPS_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/qops"),
    }
}

fn read_any(path: &Path) -> Tensor {
    if let Ok(a) = read_npy::<_, ArrayD<f32>>(path) {
        return Tensor::F32(a);
    }
    if let Ok(a) = read_npy::<_, ArrayD<u8>>(path) {
        return Tensor::U8(a);
    }
    if let Ok(a) = read_npy::<_, ArrayD<i8>>(path) {
        return Tensor::I8(a);
    }
    if let Ok(a) = read_npy::<_, ArrayD<i32>>(path) {
        return Tensor::I32(a);
    }
    panic!("cannot read {}", path.display());
}

fn compare(got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.shape() != want.shape() {
        return Err(format!("shape {:?}, want {:?}", got.shape(), want.shape()));
    }
    match (got, want) {
        (Tensor::F32(g), Tensor::F32(w)) => {
            for (i, (a, b)) in g.iter().zip(w.iter()).enumerate() {
                if (a - b).abs() > 1e-5 * b.abs().max(1e-3) {
                    return Err(format!("element {i}: {a} vs {b}"));
                }
            }
            Ok(())
        }
        (g, w) if g == w => Ok(()),
        (g, w) if g.dtype() != w.dtype() => {
            Err(format!("dtype {:?}, want {:?}", g.dtype(), w.dtype()))
        }
        (g, w) => Err(format!("integer outputs differ:\n got {g:?}\nwant {w:?}")),
    }
}

fn run_case(dir: &Path, threads: usize) -> Result<(), String> {
    let model = Model::load(dir.join("model.onnx")).map_err(|e| format!("load: {e}"))?;
    let reg = edgeml_quant::onnx::registry();
    let plan = Plan::with_registry(&model, PlanOptions::with_threads(threads), &reg)
        .map_err(|e| format!("plan: {e}"))?;
    let names: Vec<String> = plan.inputs().iter().map(|i| i.name.clone()).collect();
    let inputs: Vec<(&str, Tensor)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), read_any(&dir.join(format!("in{i}.npy")))))
        .collect();
    let outs = plan.run(&inputs).map_err(|e| format!("run: {e}"))?;
    for (i, (name, got)) in outs.iter().enumerate() {
        let want = read_any(&dir.join(format!("out{i}.npy")));
        compare(got, &want).map_err(|e| format!("output {name:?}: {e}"))?;
    }
    Ok(())
}

#[test]
fn every_quantized_operator_case_matches_onnxruntime() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("the qops fixtures exist")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 30,
        "expected the qops fixtures, found {}",
        dirs.len()
    );
    let mut failed = Vec::new();
    for d in &dirs {
        for threads in [1, 2] {
            if let Err(e) = run_case(d, threads) {
                failed.push(format!("{} ({threads} threads): {e}", d.display()));
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

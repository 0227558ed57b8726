//! Every quantized-operator case of `tests/fixtures/qops/` (made by
//! `scripts/make_qop_fixtures.py` with onnxruntime) must plan with
//! `edgeml_quant::onnx::registry()`, run, and match onnxruntime: integers exactly,
//! floats within 1e-5 relative. `EDGEML_QOPS_FIXTURES` points at another folder of
//! cases (CI regenerates them with the installed onnxruntime).
//!
//! Files beside a case change the check (see the script):
//! - `fuse.txt`: `fuse_qdq` runs first and must report these fused counts;
//! - `exact0.npy`: output 0 must equal it exactly (numpy's evaluation of the table
//!   definition), and `steps.txt` bounds how many elements may be one step away from
//!   onnxruntime's (whose f32 approximations of the function can fall on the other
//!   side of a rounding tie); the count is printed;
//! - `tol.txt`: float outputs within this absolute tolerance (one output step).
#![cfg(feature = "onnx")]

#[path = "../../edgeml-onnx/tests/common/optimized.rs"]
mod optimized;

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

/// Integer outputs at most one step apart on at most `budget` elements; returns how
/// many differ.
fn compare_steps(got: &Tensor, want: &Tensor, budget: usize) -> Result<usize, String> {
    let ints = |t: &Tensor| -> Option<Vec<i32>> {
        match t {
            Tensor::U8(a) => Some(a.iter().map(|&v| i32::from(v)).collect()),
            Tensor::I8(a) => Some(a.iter().map(|&v| i32::from(v)).collect()),
            _ => None,
        }
    };
    if got.shape() != want.shape() || got.dtype() != want.dtype() {
        return Err(format!(
            "{:?} {:?}, want {:?} {:?}",
            got.dtype(),
            got.shape(),
            want.dtype(),
            want.shape()
        ));
    }
    let (g, w) = (
        ints(got).ok_or("not 8-bit")?,
        ints(want).ok_or("not 8-bit")?,
    );
    let far = g
        .iter()
        .zip(&w)
        .filter(|(a, b)| (**a - **b).abs() > 1)
        .count();
    let off = g.iter().zip(&w).filter(|(a, b)| a != b).count();
    if far > 0 || off > budget {
        return Err(format!(
            "{far} elements more than one step from onnxruntime, {off} one step (budget {budget})"
        ));
    }
    Ok(off)
}

/// Float outputs within `tol` absolutely.
fn compare_tol(got: &Tensor, want: &Tensor, tol: f32) -> Result<(), String> {
    let (Some(g), Some(w)) = (got.as_f32(), want.as_f32()) else {
        return Err("tol.txt applies to float outputs".into());
    };
    if g.shape() != w.shape() {
        return Err(format!("shape {:?}, want {:?}", g.shape(), w.shape()));
    }
    let bad = g
        .iter()
        .zip(w.iter())
        .filter(|(a, b)| (*a - *b).abs() > tol * 1.0001)
        .count();
    if bad > 0 {
        return Err(format!("{bad} of {} elements beyond {tol}", g.len()));
    }
    Ok(())
}

fn read_text(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(name)).ok()
}

fn run_case(dir: &Path, threads: usize) -> Result<(), String> {
    let model = Model::load(dir.join("model.onnx")).map_err(|e| format!("load: {e}"))?;
    // As written, then after each optimization pipeline (run twice: the second run must
    // change nothing), which must keep the quantized operators' results.
    for level in optimized::LEVELS {
        let m = optimized::optimized(&model, level)?;
        run_model(dir, m, threads).map_err(|e| format!("{e}{}", optimized::after(level)))?;
    }
    Ok(())
}

fn run_model(dir: &Path, mut model: Model, threads: usize) -> Result<(), String> {
    if let Some(text) = read_text(dir, "fuse.txt") {
        let report = edgeml_quant::onnx::fuse_qdq(&mut model);
        println!("{}: {report}", dir.display());
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (op, n) = line.rsplit_once(' ').ok_or("fuse.txt: bad line")?;
            let n: usize = n.parse().map_err(|e| format!("fuse.txt: {e}"))?;
            if report.fused.get(op) != Some(&n) {
                return Err(format!("expected {n} {op} fused, got: {report}"));
            }
        }
    }
    let steps: Option<usize> = read_text(dir, "steps.txt").and_then(|t| t.trim().parse().ok());
    let tol: Option<f32> = read_text(dir, "tol.txt").and_then(|t| t.trim().parse().ok());
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
        let exact = dir.join(format!("exact{i}.npy"));
        if exact.exists() {
            compare(got, &read_any(&exact))
                .map_err(|e| format!("output {name:?} against the definition: {e}"))?;
        }
        let r = match (steps, tol) {
            (Some(budget), _) => compare_steps(got, &want, budget).map(|off| {
                println!(
                    "{}: {off} elements one step from onnxruntime",
                    dir.display()
                );
            }),
            (None, Some(t)) => compare_tol(got, &want, t),
            (None, None) => compare(got, &want),
        };
        r.map_err(|e| format!("output {name:?}: {e}"))?;
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
        dirs.len() >= 77,
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

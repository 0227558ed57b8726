//! Every operator case of `tests/fixtures/ops/` (made by `scripts/make_op_fixtures.py`
//! with onnxruntime) must plan, run and match onnxruntime's outputs: f32 within
//! rtol 1e-5 / atol 1e-6, integers and booleans exactly — as written and after the
//! basic and the extended optimization pipelines (each run twice: the second run must
//! change nothing).
//!
//! A case may fail to plan with `Unsupported` only if it is in [`EXPECTED_UNSUPPORTED`],
//! a reviewed list (empty today: every case plans); it is then skipped with a `SKIP:`
//! line. Any other failure fails the test, and so does a listed case that plans.

mod common;

use common::optimized;
use edgeml_onnx::{Error, Model, Plan, PlanOptions, Tensor};
use std::path::{Path, PathBuf};

/// Cases expected to fail planning with `Unsupported`, each with the reason. Reviewed:
/// adding an entry needs a reason a reviewer accepts; an entry whose case plans fails
/// the test, so the list cannot go stale.
const EXPECTED_UNSUPPORTED: &[(&str, &str)] = &[];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/ops")
}

fn run_case(dir: &Path) -> Result<(), String> {
    let model = Model::load(dir.join("model.onnx")).map_err(|e| format!("load: {e}"))?;
    // As written, then after each optimization pipeline (which must keep onnxruntime's
    // outputs and change nothing when run a second time).
    for level in optimized::LEVELS {
        let m = optimized::optimized(&model, level)?;
        let at = optimized::after(level);
        let plan = Plan::new(&m, PlanOptions::with_threads(1)).map_err(|e| match e {
            Error::Unsupported(m) => format!("UNSUPPORTED {m}"),
            e => format!("plan{at}: {e}"),
        })?;
        let names: Vec<String> = plan.inputs().iter().map(|i| i.name.clone()).collect();
        let inputs: Vec<(&str, Tensor)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.as_str(),
                    common::read_any(&dir.join(format!("in{i}.npy"))),
                )
            })
            .collect();
        let outs = plan.run(&inputs).map_err(|e| format!("run{at}: {e}"))?;
        for (i, (name, got)) in outs.iter().enumerate() {
            let want = common::read_any(&dir.join(format!("out{i}.npy")));
            common::compare(got, &want, 1e-5, 1e-6)
                .map_err(|e| format!("output {name:?}{at}: {e}"))?;
        }
    }
    Ok(())
}

#[test]
fn all_operator_cases_match_onnxruntime() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("fixtures/ops exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() > 100,
        "expected the operator fixtures, found {}",
        dirs.len()
    );
    for (name, _) in EXPECTED_UNSUPPORTED {
        assert!(
            dirs.iter().any(|d| d.ends_with(name)),
            "EXPECTED_UNSUPPORTED names {name}, not a case"
        );
    }
    let (mut passed, mut skipped, mut failed) = (0, Vec::new(), Vec::new());
    for d in &dirs {
        let name = d
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_owned();
        let expected = EXPECTED_UNSUPPORTED.iter().find(|(n, _)| *n == name);
        match (run_case(d), expected) {
            (Ok(()), None) => passed += 1,
            (Ok(()), Some((_, why))) => failed.push(format!(
                "{name}: passes now, but EXPECTED_UNSUPPORTED lists it ({why}): remove it"
            )),
            (Err(e), Some((_, why))) if e.starts_with("UNSUPPORTED") => {
                println!("SKIP: {name}: expected unsupported ({why}): {e}");
                skipped.push(name);
            }
            (Err(e), _) => failed.push(format!("{name}: {e}")),
        }
    }
    println!(
        "{passed} cases passed, {} skipped: {skipped:?}",
        skipped.len()
    );
    assert!(
        failed.is_empty(),
        "{} cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

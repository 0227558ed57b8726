//! Plan-time shape inference against `onnx.shape_inference` (the anchor).
//!
//! `scripts/make_shape_fixtures.py` stripped each model's `value_info` and recorded what
//! onnx infers for every intermediate value (`tests/fixtures/shapes/*.txt`). Here each
//! model is planned without its `value_info` too, and `Plan::value_type` must agree with
//! onnx on every dimension both know, and must know most of them.
#![allow(missing_docs, clippy::unwrap_used)]

use edgeml_core::DType;
use edgeml_onnx::{Dim, Error, GraphOptLevel, Model, Plan, PlanOptions};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Tally {
    values: usize,
    exact: usize,
}

fn check(fixture: &Path) -> Tally {
    let text = std::fs::read_to_string(fixture).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let rel = header.rsplit(" of ").next().unwrap();
    let mut model = Model::load(root().join(rel)).unwrap();
    model.graph.value_info.clear();
    let mut t = Tally {
        values: 0,
        exact: 0,
    };
    // Graph optimization fuses some values away; compare the graph as written.
    let mut opts = PlanOptions::with_threads(1);
    opts.optimization = GraphOptLevel::Disabled;
    let plan = match Plan::new(&model, opts) {
        Ok(p) => p,
        // The opset-6 legacy-broadcast exports (KNOWN_FAILURES in onnx_backend.rs).
        Err(Error::Unsupported(e)) if e.contains("legacy") => return t,
        Err(e) => panic!("{}: {e}", fixture.display()),
    };
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        let (name, code, dims) = (f[0], f[1].parse::<i32>().unwrap(), f[2]);
        let want: Vec<&str> = if dims == "-" {
            Vec::new()
        } else {
            dims.split(',').collect()
        };
        t.values += 1;
        let Some(got) = plan.value_type(name) else {
            continue;
        };
        let what = format!("{}: value {name:?}", fixture.display());
        if let Some(dt) = got.dtype {
            assert_eq!(Some(dt), DType::from_onnx(code), "{what}: element type");
        }
        let Some(shape) = &got.shape else { continue };
        assert_eq!(
            shape.len(),
            want.len(),
            "{what}: rank ({shape:?} vs {want:?})"
        );
        let mut exact = true;
        for (g, w) in shape.iter().zip(&want) {
            match (g, w.strip_prefix('$'), w.parse::<usize>()) {
                (Dim::Known(a), _, Ok(b)) => assert_eq!(*a, b, "{what}: {shape:?} vs {want:?}"),
                (Dim::Symbolic(a), Some(b), _) => {
                    assert_eq!(a, b, "{what}: {shape:?} vs {want:?}")
                }
                (Dim::Symbolic(a), None, Ok(b)) => {
                    panic!("{what}: symbolic {a:?} where onnx knows {b} ({shape:?} vs {want:?})")
                }
                (Dim::Known(_), _, _) => {} // we know more than onnx: fine
                _ => exact = false,
            }
        }
        if exact {
            t.exact += 1;
        }
    }
    t
}

#[test]
fn shapes_agree_with_onnx_shape_inference() {
    let dir = root().join("tests/fixtures/shapes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 20, "fixtures missing in {}", dir.display());
    let (mut values, mut exact) = (0, 0);
    for f in &files {
        let t = check(f);
        values += t.values;
        exact += t.exact;
        // The classic CNNs use only operators with shape rules: all values inferred.
        let name = f.file_stem().unwrap().to_string_lossy();
        if name.starts_with("light_") || name.starts_with("digits_") {
            assert_eq!(
                t.exact, t.values,
                "{name}: only {}/{} values inferred",
                t.exact, t.values
            );
        }
    }
    eprintln!(
        "{exact}/{values} values inferred exactly over {} models",
        files.len()
    );
    assert!(
        exact * 10 >= values * 9,
        "only {exact}/{values} values inferred exactly"
    );
}

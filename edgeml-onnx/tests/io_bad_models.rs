//! Every model of `tests/fixtures/bad/` (written by `scripts/make_bad_models.py`) is
//! refused with the error kind its MANIFEST names — never a panic.

use edgeml_core::ErrorKind;
use edgeml_onnx::{Limits, LoadOptions, Model};
use std::path::PathBuf;

fn bad_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/bad")
}

fn kind_named(s: &str) -> ErrorKind {
    match s {
        "InvalidModel" => ErrorKind::InvalidModel,
        "LimitExceeded" => ErrorKind::LimitExceeded,
        "UnsafePath" => ErrorKind::UnsafePath,
        "ShapeMismatch" => ErrorKind::ShapeMismatch,
        "Unsupported" => ErrorKind::Unsupported,
        "Io" => ErrorKind::Io,
        other => panic!("unknown kind {other} in MANIFEST"),
    }
}

fn manifest() -> Vec<(PathBuf, ErrorKind)> {
    let text = std::fs::read_to_string(bad_dir().join("MANIFEST")).expect("MANIFEST");
    let v: Vec<_> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (f, k) = l.split_once(' ').expect("file kind");
            (bad_dir().join(f), kind_named(k.trim()))
        })
        .collect();
    assert!(v.len() >= 30, "corpus too small: {}", v.len());
    v
}

#[test]
fn every_bad_model_yields_its_typed_error() {
    let mut failures = Vec::new();
    for (path, want) in manifest() {
        match Model::load(&path) {
            Ok(_) => failures.push(format!("{}: loaded, expected {want:?}", path.display())),
            Err(e) if e.kind() != want => {
                failures.push(format!(
                    "{}: got {:?} ({e}), expected {want:?}",
                    path.display(),
                    e.kind()
                ));
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    !msg.contains('\n'),
                    "multi-line message for {}: {msg}",
                    path.display()
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn bytes_without_a_folder_refuse_external_data() {
    let b = std::fs::read(bad_dir().join("ext/external_dotdot.onnx")).expect("read");
    let e = Model::from_bytes(&b).expect_err("no folder");
    assert_eq!(e.kind(), ErrorKind::InvalidModel);
}

#[test]
fn limits_builder_is_honoured() {
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models");
    let path = models.join("light_squeezenet.onnx");
    let size = std::fs::metadata(&path).expect("meta").len();
    let tight = |l: Limits| LoadOptions::new().limits(l);
    let e = Model::load_with(&path, &tight(Limits::default().max_model_bytes(size - 1)))
        .expect_err("model bytes");
    assert_eq!(e.kind(), ErrorKind::LimitExceeded);
    let e = Model::load_with(&path, &tight(Limits::default().max_nodes(10))).expect_err("nodes");
    assert_eq!(e.kind(), ErrorKind::LimitExceeded);
    let e = Model::load_with(&path, &tight(Limits::default().max_tensor_elements(2)))
        .expect_err("elements");
    assert_eq!(e.kind(), ErrorKind::LimitExceeded);
    let e = Model::load_with(&path, &tight(Limits::default().max_total_weight_bytes(100)))
        .expect_err("weights");
    assert_eq!(e.kind(), ErrorKind::LimitExceeded);
    assert!(
        e.to_string().contains("initializer") || e.to_string().contains("node"),
        "{e}"
    );
    Model::load_with(&path, &tight(Limits::default().max_model_bytes(size)))
        .expect("exact limit ok");
    // Subgraph depth: the 20-deep model loads once the limit allows it.
    let deep = bad_dir().join("nested_subgraphs_20.onnx");
    Model::load_with(&deep, &tight(Limits::default().max_graph_depth(24))).expect("deep ok");
}

//! Load → save → load of the bundled real models preserves the IR exactly.

use edgeml_onnx::Model;
use std::path::PathBuf;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models")
}

fn model_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(models_dir())
        .expect("fixtures/models exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    v.sort();
    assert!(v.len() >= 9, "expected the bundled models, found {v:?}");
    v
}

#[test]
fn every_bundled_model_loads_and_round_trips() {
    for path in model_files() {
        let m = Model::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!m.graph.nodes.is_empty(), "{}", path.display());
        let order = m.graph.topo_order().expect("valid graph");
        assert_eq!(order.len(), m.graph.nodes.len());
        let bytes = m.to_bytes().expect("encode");
        let back = Model::from_bytes(&bytes).expect("reload");
        assert_eq!(back, m, "{}", path.display());
        // Encoding is deterministic: a second round trip gives the same bytes.
        assert_eq!(back.to_bytes().expect("encode"), bytes);
    }
}

#[test]
fn save_is_atomic_and_reloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = model_files().remove(0);
    let m = Model::load(&path).expect("load");
    let out = dir.path().join("copy.onnx");
    m.save(&out).expect("save");
    // Overwriting works too and leaves no temporary files behind.
    m.save(&out).expect("save again");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("copy.onnx")]);
    assert_eq!(Model::load(&out).expect("reload"), m);
}

#[test]
fn from_reader_matches_from_bytes() {
    let path = model_files().remove(0);
    let bytes = std::fs::read(&path).expect("read");
    let a = Model::from_reader(bytes.as_slice()).expect("reader");
    let b = Model::from_bytes(&bytes).expect("bytes");
    assert_eq!(a, b);
}

#[test]
fn sparse_initializers_are_saved_as_coo_and_load_back_dense() {
    use edgeml_onnx::{SparseTensor, Tensor};
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/digits/mlp.onnx");
    let mut m = Model::load(&path).expect("load");
    let dense_len = m.to_bytes().expect("encode").len();
    // Zero 90% of w1 (64x32 f32), then store it sparse.
    let (_, w1) = m
        .graph
        .initializers
        .iter_mut()
        .find(|(n, _)| n == "w1")
        .expect("w1");
    let Tensor::F32(a) = w1 else {
        panic!("w1 is f32")
    };
    for (i, v) in a.iter_mut().enumerate() {
        if i % 10 != 0 {
            *v = 0.0;
        }
    }
    let sp = SparseTensor::from_dense(w1);
    assert_eq!(sp.values.len(), 205);
    assert_eq!(sp.size_bytes(), 205 * 12);
    assert_eq!(sp.to_dense().expect("densify"), *w1);
    let zeroed = m.to_bytes().expect("encode").len();
    // Only w1 pays in COO form (w2 is dense, the biases 1-D); a second call adds nothing.
    assert_eq!(m.graph.store_sparse_where_smaller(), 1);
    assert_eq!(m.graph.extras.sparse_initializers, ["w1"]);
    assert_eq!(m.graph.store_sparse_where_smaller(), 0);
    let bytes = m.to_bytes().expect("encode");
    assert!(
        bytes.len() + 64 * 32 * 4 - 205 * 12 - 64 <= zeroed,
        "{} vs {zeroed}",
        bytes.len()
    );
    assert!(bytes.len() < dense_len);
    let back = Model::from_bytes(&bytes).expect("reload");
    // Densified on load, in place of the dense one, after the other initializers.
    assert_eq!(back.graph.initializer("w1"), m.graph.initializer("w1"));
    assert!(back.graph.extras.sparse_initializers.is_empty());
    assert_eq!(back.graph.initializers.len(), m.graph.initializers.len());
    assert_eq!(
        back.graph.initializers.last().map(|(n, _)| n.as_str()),
        Some("w1")
    );
}

//! Every ONNX tensor storage form decodes to the values onnx's own `numpy_helper`
//! (initializers) and onnxruntime (`Constant` nodes) give; references were written by
//! `scripts/make_model_fixtures.py`.

use edgeml_onnx::{Attribute, Model, Tensor};
use ndarray::ArrayD;
use ndarray_npy::ReadNpyExt;
use std::path::{Path, PathBuf};

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models")
}

fn npy<T: ndarray_npy::ReadableElement>(p: &Path) -> ArrayD<T> {
    let f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    ArrayD::<T>::read_npy(f).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Compares `t` with the reference stored for `name` in `dir`, bit-exactly.
fn check(dir: &Path, name: &str, t: &Tensor) {
    let p = |ext: &str| dir.join(format!("{name}.{ext}"));
    match t {
        Tensor::F32(a) => {
            let r = npy::<f32>(&p("npy"));
            assert_eq!(a.shape(), r.shape(), "{name}");
            assert!(
                a.iter()
                    .zip(r.iter())
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "{name}"
            );
        }
        Tensor::F64(a) => {
            let r = npy::<f64>(&p("npy"));
            assert_eq!(a.shape(), r.shape(), "{name}");
            assert!(
                a.iter()
                    .zip(r.iter())
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "{name}"
            );
        }
        Tensor::F16(a) => assert_eq!(
            a.mapv(|v| v.to_bits()),
            npy::<u16>(&p("bits.npy")),
            "{name}"
        ),
        Tensor::BF16(a) => assert_eq!(
            a.mapv(|v| v.to_bits()),
            npy::<u16>(&p("bits.npy")),
            "{name}"
        ),
        Tensor::I8(a) => assert_eq!(a, &npy::<i8>(&p("npy")), "{name}"),
        Tensor::U8(a) => assert_eq!(a, &npy::<u8>(&p("npy")), "{name}"),
        Tensor::I16(a) => assert_eq!(a, &npy::<i16>(&p("npy")), "{name}"),
        Tensor::U16(a) => assert_eq!(a, &npy::<u16>(&p("npy")), "{name}"),
        Tensor::I32(a) => assert_eq!(a, &npy::<i32>(&p("npy")), "{name}"),
        Tensor::I64(a) => assert_eq!(a, &npy::<i64>(&p("npy")), "{name}"),
        Tensor::Bool(a) => assert_eq!(a, &npy::<bool>(&p("npy")), "{name}"),
    }
}

#[test]
fn initializers_in_every_encoding_match_numpy_helper() {
    let m = Model::load(models().join("encodings.onnx")).expect("load");
    let dir = models().join("encodings");
    let mut seen = 0;
    for (name, t) in &m.graph.initializers {
        check(&dir, name, t);
        seen += 1;
    }
    // 2 f32 + 2 f64 + 12 ints + 2 bool + 4 half + 2 scalars + 2 empty + 2 sparse
    assert_eq!(seen, 28);
    assert_eq!(
        m.graph.initializer("scalar_typed").expect("scalar").shape(),
        &[] as &[usize]
    );
    assert_eq!(
        m.graph.initializer("empty_typed").expect("empty").shape(),
        &[0, 3]
    );
}

#[test]
fn constant_nodes_in_every_form_match_onnxruntime() {
    let m = Model::load(models().join("encodings.onnx")).expect("load");
    let dir = models().join("encodings");
    let mut seen = 0;
    for n in &m.graph.nodes {
        if let Some(t) = n.constant_value().expect("constant") {
            check(&dir, &n.outputs[0], &t);
            seen += 1;
        }
    }
    assert_eq!(seen, 6);
    // sparse_value stays sparse in the IR, so saving writes it back as it was.
    let sparse = m
        .graph
        .nodes
        .iter()
        .find(|n| n.name == "c_sparse_value")
        .expect("node");
    assert!(matches!(
        sparse.attr("sparse_value"),
        Some(Attribute::SparseTensor(_))
    ));
}

#[test]
fn external_data_is_read_at_its_offsets() {
    let dir = models().join("ext");
    let m = Model::load(dir.join("ext_model.onnx")).expect("load");
    check(&dir, "A", m.graph.initializer("A").expect("A"));
    check(&dir, "B", m.graph.initializer("B").expect("B"));
    // Saved models inline external data; the copy loads from anywhere.
    let bytes = m.to_bytes().expect("encode");
    let back = Model::from_bytes(&bytes).expect("inline reload");
    assert_eq!(back.graph.initializers, m.graph.initializers);
}

#[test]
fn typed_and_raw_encodings_round_trip_to_raw_data() {
    let m = Model::load(models().join("encodings.onnx")).expect("load");
    let back = Model::from_bytes(&m.to_bytes().expect("encode")).expect("reload");
    assert_eq!(back, m);
}

#[test]
fn sklearn_models_keep_non_tensor_types() {
    let m = Model::load(models().join("skl_logreg_pipeline.onnx")).expect("load");
    assert!(m.opset("ai.onnx.ml").is_some());
    // ZipMap's output is a sequence of maps: no IR dtype, but its type is preserved.
    let probs = m
        .graph
        .outputs
        .iter()
        .find(|o| o.dtype.is_none())
        .expect("seq(map) output");
    assert!(m.graph.extras.value_type(&probs.name).is_some());
    let back = Model::from_bytes(&m.to_bytes().expect("encode")).expect("reload");
    assert_eq!(back, m);
}

#[test]
fn opaque_protobuf_parts_are_kept() {
    let m = Model::load(models().join("extras.onnx")).expect("load");
    assert_eq!(m.extras.functions.len(), 1);
    assert_eq!(m.extras.training_info.len(), 1);
    let x = &m.graph.extras;
    assert_eq!(x.quantization_annotation.len(), 1);
    assert_eq!(
        x.metadata_props,
        vec![("graph_key".to_string(), "graph_value".to_string())]
    );
    assert_eq!(
        x.node_extras.len(),
        1,
        "LeakyRelu's metadata and attribute doc string"
    );
    // `x` has denotations, `label` a string element type: both kept as raw types.
    assert!(x.value_type("x").is_some() && x.value_type("label").is_some());
    assert!(
        x.value_type("y").is_none(),
        "plain tensor types need no raw copy"
    );
    let label = m
        .graph
        .inputs
        .iter()
        .find(|v| v.name == "label")
        .expect("label");
    assert_eq!(label.dtype, None);
    let back = Model::from_bytes(&m.to_bytes().expect("encode")).expect("reload");
    assert_eq!(back, m);
}

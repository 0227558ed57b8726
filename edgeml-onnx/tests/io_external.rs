//! External data: what `location` may and may not point to, on a scratch folder.

use edgeml_core::ErrorKind;
use edgeml_onnx::{LoadOptions, Model};
use std::path::Path;

/// A model whose initializer `W` (4 floats) lives in `location`: the bad-corpus model
/// pointing at `../outside.bin`, re-pointed by patching the string in place, so
/// `location` must have the same length (14 bytes) to keep every length prefix valid.
fn model_bytes(location: &str) -> Vec<u8> {
    assert_eq!(location.len(), 14, "{location}");
    let src = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/bad/ext/external_dotdot.onnx"),
    )
    .expect("fixture");
    let old = b"../outside.bin";
    let pos = src
        .windows(old.len())
        .position(|w| w == old)
        .expect("location string");
    // Length-prefixed string: the byte before it is its length (< 128).
    assert_eq!(src[pos - 1] as usize, old.len());
    let mut out = Vec::new();
    out.extend_from_slice(&src[..pos - 1]);
    out.push(location.len() as u8);
    out.extend_from_slice(location.as_bytes());
    out.extend_from_slice(&src[pos + old.len()..]);
    out
}

fn weights(path: &Path) {
    let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(path, data).expect("write weights");
}

fn load(dir: &Path, location: &str) -> edgeml_onnx::Result<Model> {
    Model::from_bytes_with(&model_bytes(location), &LoadOptions::new().base_dir(dir))
}

#[test]
fn plain_and_nested_locations_load() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    weights(&dir.path().join("sub/w_ok_1.bin"));
    let m = load(dir.path(), "sub/w_ok_1.bin").expect("nested path inside the folder");
    let w = m
        .graph
        .initializer("W")
        .expect("W")
        .as_f32()
        .expect("f32")
        .clone();
    assert_eq!(w.as_slice().expect("contiguous"), &[1.0, 2.0, 3.0, 4.0]);
}

#[cfg(unix)]
#[test]
fn symlinks_inside_the_folder_are_fine_outside_are_not() {
    let dir = tempfile::tempdir().expect("tmp");
    let folder = dir.path().join("model");
    std::fs::create_dir(&folder).expect("mkdir");
    weights(&folder.join("real.bin"));
    weights(&dir.path().join("secret.bin"));
    std::os::unix::fs::symlink("real.bin", folder.join("in_link_01.bin")).expect("symlink");
    std::os::unix::fs::symlink("../secret.bin", folder.join("outlink_01.bin")).expect("symlink");
    load(&folder, "in_link_01.bin").expect("symlink staying inside");
    let e = load(&folder, "outlink_01.bin").expect_err("symlink leaving");
    assert_eq!(e.kind(), ErrorKind::UnsafePath);
    // A directory is not a weights file; a missing file is an I/O error.
    std::fs::create_dir(folder.join("a_directory_12")).expect("mkdir");
    let e = load(&folder, "a_directory_12").expect_err("directory");
    assert_eq!(e.kind(), ErrorKind::UnsafePath);
    let e = load(&folder, "not_there_.bin").expect_err("missing");
    assert_eq!(e.kind(), ErrorKind::Io);
}

#[test]
fn hostile_locations_are_refused_before_touching_the_disk() {
    let dir = tempfile::tempdir().expect("tmp");
    for loc in [
        "/etc/passwd000",
        "..\\outside.bin",
        "a/../../b.bin0",
        "C:/weights.bin",
        "\\\\server\\x.bin",
    ] {
        let e = load(dir.path(), loc).expect_err(loc);
        assert_eq!(e.kind(), ErrorKind::UnsafePath, "{loc}: {e}");
    }
}

/// A model with one large (`big` floats) and one small initializer: `y = x · W + b`.
fn two_initializer_model(big: usize) -> Model {
    use edgeml_core::DType;
    use edgeml_onnx::{Dim, ModelBuilder, Node, Tensor, ValueInfo};
    let w: Vec<f32> = (0..big).map(|i| i as f32 * 0.25 - 3.0).collect();
    let k = big / 4;
    ModelBuilder::new(13)
        .input(ValueInfo::tensor(
            "x",
            DType::F32,
            vec![Dim::from(1), Dim::from(k)],
        ))
        .output(ValueInfo::tensor(
            "y",
            DType::F32,
            vec![Dim::from(1), Dim::from(4)],
        ))
        .initializer(
            "W",
            Tensor::F32(ndarray::ArrayD::from_shape_vec(vec![k, 4], w).expect("W")),
        )
        .initializer(
            "b",
            Tensor::F32(
                ndarray::ArrayD::from_shape_vec(vec![4], vec![1.0, 2.0, 3.0, 4.0]).expect("b"),
            ),
        )
        .node(Node::new("MatMul", &["x", "W"], &["xw"]))
        .node(Node::new("Add", &["xw", "b"], &["y"]))
        .build()
        .expect("model")
}

#[test]
fn saving_with_external_data_round_trips_and_keeps_small_tensors_inside() {
    use onnx_protobuf::ModelProto;
    use protobuf::Message;
    let dir = tempfile::tempdir().expect("tempdir");
    let m = two_initializer_model(2048);
    let path = dir.path().join("model.onnx");
    m.save_with_external_data(&path, 1024).expect("save");
    let data = std::fs::read(dir.path().join("model.onnx.data")).expect("data file");
    assert_eq!(data.len(), 2048 * 4);
    assert_eq!(&data[4..8], &(0.25f32 - 3.0).to_le_bytes());
    // The model file refers to it; the 16-byte bias stays inline.
    let bytes = std::fs::read(&path).expect("model file");
    assert!(bytes.len() < 1024, "{} bytes", bytes.len());
    let p = ModelProto::parse_from_bytes(&bytes).expect("protobuf");
    let inits = &p.graph.initializer;
    let w = inits.iter().find(|t| t.name == "W").expect("W");
    assert!(w.raw_data.is_empty());
    let kv: Vec<(&str, &str)> = w
        .external_data
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(
        kv,
        [
            ("location", "model.onnx.data"),
            ("offset", "0"),
            ("length", "8192")
        ]
    );
    let b = inits.iter().find(|t| t.name == "b").expect("b");
    assert!(b.external_data.is_empty() && b.raw_data.len() == 16);
    assert_eq!(Model::load(&path).expect("load"), m);
    // Several large tensors are page-aligned one after the other.
    let m2 = two_initializer_model(2048);
    let path2 = dir.path().join("all.onnx");
    m2.save_with_external_data(&path2, 1).expect("save");
    let p2 = ModelProto::parse_from_bytes(&std::fs::read(&path2).expect("read")).expect("pb");
    let offsets: Vec<String> = p2
        .graph
        .initializer
        .iter()
        .flat_map(|t| {
            t.external_data
                .iter()
                .filter(|e| e.key == "offset")
                .map(|e| e.value.clone())
        })
        .collect();
    assert_eq!(offsets, ["0", "8192"]);
    assert_eq!(Model::load(&path2).expect("load"), m2);
    // Nothing large enough: no data file.
    let path3 = dir.path().join("inline.onnx");
    m.save_with_external_data(&path3, 1 << 20).expect("save");
    assert!(!dir.path().join("inline.onnx.data").exists());
    assert_eq!(Model::load(&path3).expect("load"), m);
}

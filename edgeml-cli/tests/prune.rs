//! `edgeml prune` on the bundled digits models: outputs, report, and clear errors.

use edgeml_onnx::{Model, Tensor};
use std::path::PathBuf;
use std::process::Command;

fn digits(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/digits/{name}.onnx"))
}

fn edgeml() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edgeml"));
    c.env_remove("RUST_LOG");
    c
}

#[test]
fn channel_pruning_writes_a_smaller_model_and_a_json_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, rep) = (dir.path().join("cnn.onnx"), dir.path().join("r.json"));
    let o = edgeml()
        .args(["prune", digits("cnn").to_str().expect("utf-8"), "-o"])
        .arg(&out)
        .args(["-s", "0.5", "-p", "channel", "--report"])
        .arg(&rep)
        .output()
        .expect("run edgeml");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("8x1x3x3") && stdout.contains("4x1x3x3"),
        "{stdout}"
    );
    let m = Model::load(&out).expect("load pruned");
    assert_eq!(
        m.graph.initializer("wc").map(Tensor::shape),
        Some(&[4, 1, 3, 3][..])
    );
    let (a, b) = (
        std::fs::metadata(digits("cnn")).expect("in").len(),
        std::fs::metadata(&out).expect("out").len(),
    );
    assert!(b * 10 < a * 6, "{b} vs {a}");
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&rep).expect("report")).expect("json");
    assert_eq!(r["layers"][0]["channels_removed"], 4);
    assert_eq!(r["skipped"][0]["op_type"], "Gemm");
}

#[test]
fn sparse_storage_shrinks_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("mlp.onnx");
    let o = edgeml()
        .args(["prune", digits("mlp").to_str().expect("utf-8"), "-o"])
        .arg(&out)
        .args(["-s", "0.9", "--scope", "global", "--sparse-storage"])
        .output()
        .expect("run edgeml");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("coo"));
    let (a, b) = (
        std::fs::metadata(digits("mlp")).expect("in").len(),
        std::fs::metadata(&out).expect("out").len(),
    );
    assert!(b * 2 < a, "{b} vs {a}");
    let m = Model::load(&out).expect("load pruned");
    let w1 = m
        .graph
        .initializer("w1")
        .and_then(Tensor::as_f32)
        .expect("w1 densified");
    let zeros = w1.iter().filter(|&&v| v == 0.0).count();
    assert!(zeros > 1700, "{zeros}");
}

#[test]
fn bad_requests_fail_with_status_1_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("x.onnx");
    let cases: &[(&[&str], &str)] = &[
        (&["-s", "1.0"], "invalid sparsity"),
        (&["--sparsity=-0.5"], "invalid sparsity"),
        (
            &["-s", "0.5", "-e", "nope"],
            "exclusion `nope` names no node",
        ),
        (&["-s", "0.5", "-p", "keep:2/4"], "does not fit"),
        (&["-s", "0.5", "-e", "Conv", "Gemm"], "nothing to prune"),
        (
            &["-s", "0.5", "--scope", "global", "-p", "channel"],
            "global scope",
        ),
    ];
    for (args, msg) in cases {
        let o = edgeml()
            .args(["prune", digits("cnn").to_str().expect("utf-8"), "-o"])
            .arg(&out)
            .args(*args)
            .output()
            .expect("run edgeml");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(msg) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
        assert!(!out.exists(), "{args:?}");
    }
}

#[test]
fn structured_pruning_removes_coupled_groups_and_reports_blocked_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, rep) = (dir.path().join("rb.onnx"), dir.path().join("r.json"));
    let model =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/prune/resnet_block.onnx");
    let o = edgeml()
        .arg("prune")
        .arg(&model)
        .arg("-o")
        .arg(&out)
        .args(["-s", "0.5", "--structured", "--round-to", "8", "--report"])
        .arg(&rep)
        .output()
        .expect("run edgeml");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("blocked: `y` is a graph output"),
        "{stdout}"
    );
    let m = Model::load(&out).expect("load pruned");
    // The stem's 32 channels are coupled with both layer1 skips: 16 kept, also in
    // layer2.0's 1x1 downsample input.
    assert_eq!(
        m.graph.initializer("stem.w").map(Tensor::shape),
        Some(&[16, 3, 3, 3][..])
    );
    assert_eq!(
        m.graph.initializer("layer2.0.down.w").map(Tensor::shape),
        Some(&[32, 16, 1, 1][..])
    );
    assert_eq!(
        m.graph.initializer("fc.w").map(Tensor::shape),
        Some(&[10, 64][..])
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&rep).expect("report")).expect("json");
    assert_eq!(r["groups"].as_array().map(Vec::len), Some(9));
    // --structured replaces --pattern; the floor/rounding options need --structured.
    for args in [
        &["-s", "0.5", "--structured", "-p", "channel"][..],
        &["-s", "0.5", "--round-to", "8"],
    ] {
        let o = edgeml()
            .arg("prune")
            .arg(&model)
            .arg("-o")
            .arg(dir.path().join("bad.onnx"))
            .args(args)
            .output()
            .expect("run edgeml");
        assert!(!o.status.success(), "{args:?}");
        assert!(!dir.path().join("bad.onnx").exists());
    }
}

#[test]
fn recalibrate_refits_the_kept_weights_on_calibration_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let x = digits("x_test").with_extension("npy");
    let (plain, recal, rep) = (
        dir.path().join("plain.onnx"),
        dir.path().join("recal.onnx"),
        dir.path().join("r.json"),
    );
    let prune = |out: &PathBuf, extra: &[&str]| {
        let o = edgeml()
            .args(["prune", digits("mlp").to_str().expect("utf-8"), "-o"])
            .arg(out)
            .args(["-s", "0.75"])
            .args(extra)
            .output()
            .expect("run edgeml");
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        stdout
    };
    prune(&plain, &[]);
    let stdout = prune(
        &recal,
        &[
            "--recalibrate",
            x.to_str().expect("utf-8"),
            "--batch-size",
            "100",
            "--report",
            rep.to_str().expect("utf-8"),
        ],
    );
    assert!(stdout.contains("recalibrated"), "{stdout}");
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&rep).expect("report")).expect("json");
    let layers = r["recalibrated"].as_array().expect("recalibrated layers");
    assert_eq!(layers.len(), 2, "{layers:?}");
    for l in layers {
        let (b, a) = (
            l["error_before"].as_f64().expect("before"),
            l["error_after"].as_f64().expect("after"),
        );
        assert!(a < b, "{l}");
        assert_eq!(l["rows"], 450);
    }
    // The same zeros, other values.
    let (p, q) = (
        Model::load(&plain).expect("plain"),
        Model::load(&recal).expect("recal"),
    );
    for w in ["w1", "w2"] {
        let (a, b) = (
            p.graph.initializer(w).and_then(Tensor::as_f32).expect("w"),
            q.graph.initializer(w).and_then(Tensor::as_f32).expect("w"),
        );
        let za: Vec<bool> = a.iter().map(|&v| v == 0.0).collect();
        let zb: Vec<bool> = b.iter().map(|&v| v == 0.0).collect();
        assert_eq!(za, zb, "{w}");
        assert_ne!(a, b, "{w}");
    }
}

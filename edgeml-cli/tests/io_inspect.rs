//! `edgeml inspect` on the bundled models (exit 0) and on every malformed model of
//! `tests/fixtures/bad/` (exit 1, one line on stderr, no panic, under a 64 MB address-space cap).

use std::path::PathBuf;
use std::process::Command;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// Runs `edgeml inspect` with its address space capped at 64 MB (`ulimit -v`), so an
/// unbounded allocation aborts the process instead of passing unnoticed.
fn inspect_capped(path: &str) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 65536 && exec \"$0\" inspect \"$1\"")
        .arg(env!("CARGO_BIN_EXE_edgeml"))
        .arg(path)
        .output()
        .expect("run edgeml under ulimit")
}

fn inspect(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edgeml"))
        .arg("inspect")
        .args(args)
        .output()
        .expect("run edgeml")
}

#[test]
fn bad_models_exit_1_with_one_line() {
    let dir = fixtures().join("bad");
    let manifest = std::fs::read_to_string(dir.join("MANIFEST")).expect("MANIFEST");
    let mut n = 0;
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let file = line.split(' ').next().expect("file");
        let path = dir.join(file);
        let out = inspect_capped(path.to_str().expect("utf-8 path"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{file}: {stderr:?}");
        assert!(stderr.starts_with("edgeml: error: "), "{file}: {stderr}");
        assert!(!stderr.contains("panicked"), "{file}: {stderr}");
        assert!(out.stdout.is_empty(), "{file}");
        n += 1;
    }
    assert!(n >= 30);
}

#[test]
fn good_model_text_and_json() {
    let path = fixtures().join("models/light_squeezenet.onnx");
    let p = path.to_str().expect("utf-8");
    let out = inspect(&[p]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(text.contains("ai.onnx"), "{text}");
    assert!(text.contains("Conv"), "{text}");
    let out = inspect(&[p, "--json"]);
    assert!(out.status.success());
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["inputs"][0]["dtype"], "float32");
    assert_eq!(j["ops"]["Conv"], 26);
    let by = &j["parameters"]["by_dtype"];
    assert!(by["float32"]["elements"].as_u64().expect("count") > 0);
    let s = j["parameters"]["sparsity"].as_f64().expect("sparsity");
    assert!((0.0..=1.0).contains(&s));
}

#[test]
fn missing_file_is_one_line() {
    let out = inspect(&["/definitely/not/here.onnx"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

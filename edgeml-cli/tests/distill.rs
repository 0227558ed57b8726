//! `edgeml distill`: per-epoch metrics, an ONNX student, and clear errors.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

fn digits() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/digits")
}

fn distill(extra: &[&str], out: &std::path::Path) -> std::process::Output {
    let d = digits();
    Command::new(env!("CARGO_BIN_EXE_edgeml"))
        .env_remove("RUST_LOG")
        .arg("distill")
        .arg("--teacher")
        .arg(d.join("cnn.onnx"))
        .arg("--data")
        .arg(d.join("x_test.npy"))
        .args(extra)
        .arg("-o")
        .arg(out)
        .output()
        .expect("run edgeml")
}

/// The run's stdout, after asserting it exited with success (stdout and stderr shown if not).
fn succeeded(r: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&r.stdout).into_owned();
    assert!(
        r.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&r.stderr)
    );
    stdout
}

#[test]
fn distill_prints_metrics_and_writes_a_student() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.onnx");
    let labels = digits().join("y_test.npy");
    let r = distill(
        &[
            "--labels",
            labels.to_str().unwrap(),
            "--hidden",
            "8",
            "--epochs",
            "3",
            "--lr",
            "0.01",
        ],
        &out,
    );
    let stdout = succeeded(&r);
    assert!(
        stdout.contains("teacher: 10 classes (Probabilities)"),
        "{stdout}"
    );
    assert!(stdout.contains("epoch    3/3"), "{stdout}");
    assert!(
        stdout.contains("val_acc") && stdout.contains("agreement"),
        "{stdout}"
    );
    assert!(stdout.contains("student: 610 parameters"), "{stdout}");
    let m = edgeml_onnx::Model::load(&out).unwrap();
    assert_eq!(m.graph.outputs[0].name, "logits");
}

#[test]
fn distill_with_sparsity_prunes_while_training() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.onnx");
    let r = distill(
        &[
            "--hidden",
            "8",
            "--epochs",
            "6",
            "--sparsity",
            "0.75",
            "--prune-end-epoch",
            "3",
        ],
        &out,
    );
    let stdout = succeeded(&r);
    assert!(stdout.contains("sparsity 0.0000"), "{stdout}");
    // 64·8 → 384 pruned, 8·10 → 60: the target from epoch 3 on
    for e in 3..=6 {
        assert!(stdout.contains(&format!("epoch    {e}/6")), "{stdout}");
    }
    assert!(stdout.contains("sparsity 0.7500"), "{stdout}");
    assert!(
        stdout.contains("pruned: 75.0% of the weights, 166 of 610 parameters nonzero"),
        "{stdout}"
    );
    let m = edgeml_onnx::Model::load(&out).unwrap();
    let w0 = m.graph.initializer("W0").unwrap().as_f32().unwrap();
    assert_eq!(w0.iter().filter(|&&v| v == 0.0).count(), 384);
    // a ramp without a second mask update is refused before training
    let r = distill(
        &[
            "--hidden",
            "8",
            "--sparsity",
            "0.5",
            "--prune-end-epoch",
            "1",
        ],
        &out,
    );
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no mask update after the first"),
        "{stderr}"
    );
}

#[test]
fn distill_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.onnx");
    let wrong = digits().join("y_train.npy"); // 1347 labels for 450 samples
    for (args, want) in [
        (
            vec!["--labels", wrong.to_str().unwrap(), "--hidden", "4"],
            "1347 labels for 450 samples",
        ),
        (
            vec!["--teacher-output", "nope", "--hidden", "4"],
            "no output \"nope\"",
        ),
        (vec!["--hidden", "0"], "hidden layer 0 has width 0"),
    ] {
        let r = distill(&args, &out);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("edgeml: error: ") && stderr.contains(want),
            "{stderr}"
        );
        assert!(!out.exists());
    }
}

//! Command-line manners: a closed output pipe ends the command quietly with status 0,
//! and library warnings (the `log` facade) reach stderr, with `-v` and `RUST_LOG`.

use edgeml_onnx::{Model, ValueInfo};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn edgeml() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edgeml"));
    c.env_remove("RUST_LOG").env_remove("EDGEML_KERNELS");
    c
}

/// A model whose `inspect` text is about 2 MB: far more than a pipe buffers, so the
/// command is certain to write into the pipe after the reader has closed it.
fn large_summary_model() -> PathBuf {
    let mut m = Model::load(fixtures().join("models/light_squeezenet.onnx")).expect("load");
    let template = m.graph.inputs[0].clone();
    for i in 0..20_000 {
        m.graph.inputs.push(ValueInfo {
            name: format!("unused_input_with_a_long_name_to_fill_the_pipe_{i:06}"),
            ..template.clone()
        });
    }
    let path = std::env::temp_dir().join(format!("edgeml_manners_{}.onnx", std::process::id()));
    m.save(&path).expect("save");
    path
}

/// `edgeml inspect MODEL | head -1`: read one line, close the pipe, expect status 0
/// and nothing on stderr (no "failed printing to stdout" panic).
#[test]
fn closed_output_pipe_is_a_quiet_success() {
    let model = large_summary_model();
    for json in [false, true] {
        let mut cmd = edgeml();
        cmd.arg("inspect").arg(&model);
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn edgeml");
        let mut first = String::new();
        {
            let mut out = BufReader::new(child.stdout.take().expect("stdout"));
            out.read_line(&mut first).expect("read one line");
        } // the read end of the pipe is closed here
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!first.is_empty(), "json={json}: no first line");
        assert!(
            out.status.success(),
            "json={json}: {:?} {stderr}",
            out.status
        );
        assert!(stderr.is_empty(), "json={json}: stderr: {stderr}");
    }
    let _ = std::fs::remove_file(&model);
}

/// Runs `edgeml [flags] bench` on a Gemm model with `EDGEML_KERNELS=bogus`, which makes
/// the kernel layer of edgeml-onnx warn through `log::warn!`; returns stderr.
fn bench_with_bogus_kernels(flags: &[&str], rust_log: Option<&str>) -> String {
    let model = fixtures().join("ops/nn_gemm_default/model.onnx");
    let mut cmd = edgeml();
    cmd.args(flags)
        .arg("bench")
        .arg(&model)
        .args(["--iters", "1", "--warmup", "0"])
        .env("EDGEML_KERNELS", "bogus");
    if let Some(v) = rust_log {
        cmd.env("RUST_LOG", v);
    }
    let out = cmd.output().expect("run edgeml");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{flags:?} {rust_log:?}: {stderr}");
    stderr
}

const WARNING: &str = "EDGEML_KERNELS=bogus: unknown";

#[test]
fn library_warnings_reach_the_user() {
    // Default level: warnings are shown.
    let e = bench_with_bogus_kernels(&[], None);
    assert!(e.contains(WARNING) && e.contains("WARN"), "default: {e:?}");
    // -v shows them too.
    let e = bench_with_bogus_kernels(&["-v"], None);
    assert!(e.contains(WARNING), "-v: {e:?}");
    // RUST_LOG=off silences them; -v raises the level again.
    let e = bench_with_bogus_kernels(&[], Some("off"));
    assert!(!e.contains(WARNING), "RUST_LOG=off: {e:?}");
    let e = bench_with_bogus_kernels(&["-vv"], Some("off"));
    assert!(e.contains(WARNING), "RUST_LOG=off -vv: {e:?}");
}

#[test]
fn help_documents_exit_codes_and_lists_only_real_commands() {
    let out = edgeml().arg("--help").output().expect("run edgeml");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).expect("utf-8");
    for want in [
        "Exit status:",
        "  0  ",
        "  1  ",
        "  2  ",
        "-v, --verbose",
        "RUST_LOG",
        "prune",
    ] {
        assert!(help.contains(want), "missing {want:?} in:\n{help}");
    }
    for cmd in ["quantize", "prune", "distill"] {
        assert!(help.contains(cmd), "--help misses {cmd}:\n{help}");
    }
    let out = edgeml().arg("--no-such-flag").output().expect("run edgeml");
    assert_eq!(out.status.code(), Some(2));
}

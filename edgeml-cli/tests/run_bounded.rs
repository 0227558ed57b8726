//! `edgeml run` / `edgeml bench` on the hostile-but-valid graphs of issue 19 (the corpus
//! in `edgeml-onnx/tests/common/hostile.rs`): each ends with a one-line error naming the
//! node, exit status 1, within its `--timeout` or limit, never a hang or an abort.

#[path = "../../edgeml-onnx/tests/common/hostile.rs"]
mod hostile;

use edgeml_onnx::Tensor;
use hostile::Hostile;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Far above any budget the tests give: only a hang reaches it.
const HANG: Duration = Duration::from_secs(120);

fn edgeml() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edgeml"));
    c.env_remove("RUST_LOG").env_remove("EDGEML_KERNELS");
    c
}

/// Saves the model and its inputs under `dir`; returns the model path and the
/// `--input` arguments.
fn save(h: &Hostile, dir: &Path) -> (PathBuf, Vec<String>) {
    let model = dir.join(format!("{}.onnx", h.name));
    h.model.save(&model).expect("save the model");
    let mut args = Vec::new();
    for (name, t) in &h.inputs {
        let path = dir.join(format!("{}_{name}.npy", h.name));
        match t {
            Tensor::I64(a) => ndarray_npy::write_npy(&path, a).expect("write npy"),
            Tensor::F32(a) => ndarray_npy::write_npy(&path, a).expect("write npy"),
            other => panic!("no .npy writer for {:?} in this test", other.dtype()),
        }
        args.push("-i".to_owned());
        args.push(format!("{name}={}", path.display()));
    }
    (model, args)
}

/// Runs `edgeml ARGS`, killing it if it outlives [`HANG`]; returns status code, stderr
/// and the wall time.
fn run(args: &[String]) -> (Option<i32>, String, Duration) {
    let t0 = Instant::now();
    let mut child = edgeml()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn edgeml");
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).expect("read stderr");
            }
            return (status.code(), err, t0.elapsed());
        }
        if t0.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("edgeml {args:?} did not stop within {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn expect_error(h: &Hostile, cmd: &str, extra: &[&str], kind: &str, dir: &Path) -> Duration {
    let (model, inputs) = save(h, dir);
    let mut args = vec![cmd.to_owned(), model.display().to_string()];
    args.extend(inputs);
    args.extend(["--threads".to_owned(), "1".to_owned()]);
    if cmd == "run" {
        args.extend(["-o".to_owned(), dir.join("out").display().to_string()]);
    } else {
        args.extend(["--iters", "1", "--warmup", "0"].map(str::to_owned));
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let (code, err, took) = run(&args);
    assert_eq!(code, Some(1), "{} via {cmd}: {err}", h.name);
    assert!(err.starts_with("edgeml: error:"), "{}: {err}", h.name);
    assert!(
        err.contains(kind),
        "{} via {cmd}: expected {kind:?}: {err}",
        h.name
    );
    assert!(
        err.contains(h.names),
        "{} via {cmd}: must name {:?}: {err}",
        h.name,
        h.names
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    took
}

fn loops() -> Vec<Hostile> {
    vec![
        hostile::loop_constant_trip(),
        hostile::loop_runtime_trip(),
        hostile::loop_condition_stays_true(),
        hostile::nested_loops(),
    ]
}

#[test]
fn run_timeout_stops_huge_loops() {
    let dir = tempfile::tempdir().expect("tempdir");
    for h in loops() {
        let took = expect_error(
            &h,
            "run",
            &["--timeout", "0.5"],
            "deadline exceeded",
            dir.path(),
        );
        assert!(
            took >= Duration::from_millis(500),
            "{}: stopped before the deadline",
            h.name
        );
    }
}

#[test]
fn run_loop_limit_stops_huge_loops() {
    let dir = tempfile::tempdir().expect("tempdir");
    for h in loops() {
        expect_error(
            &h,
            "run",
            &["--max-loop-iterations", "5000"],
            "limit exceeded",
            dir.path(),
        );
    }
}

#[test]
fn bench_timeout_stops_a_huge_loop() {
    let dir = tempfile::tempdir().expect("tempdir");
    expect_error(
        &hostile::nested_loops(),
        "bench",
        &["--timeout", "0.5"],
        "deadline exceeded",
        dir.path(),
    );
}

#[test]
fn timeout_stops_single_long_steps() {
    // One pooling or LRN step that would take minutes: stopped inside the operator.
    let dir = tempfile::tempdir().expect("tempdir");
    for (h, cmd) in [
        (hostile::huge_pool_window("MaxPool", 2, 1024, false), "run"),
        (
            hostile::huge_pool_window("AveragePool", 2, 1024, false),
            "bench",
        ),
        (hostile::huge_lrn(4096, 32), "run"),
    ] {
        let took = expect_error(
            &h,
            cmd,
            &["--timeout", "0.5"],
            "deadline exceeded",
            dir.path(),
        );
        assert!(took < Duration::from_secs(30), "{}: took {took:?}", h.name);
    }
}

#[test]
fn run_memory_limit_stops_folding_bombs_and_live_sums() {
    let dir = tempfile::tempdir().expect("tempdir");
    for h in [
        hostile::folding_bomb(1 << 30),
        hostile::range_bomb(1 << 30),
        hostile::live_sum(40, 1 << 20, true),
    ] {
        expect_error(
            &h,
            "run",
            &["--max-memory-mib", "64"],
            "limit exceeded",
            dir.path(),
        );
    }
    // The default limit (4 GiB) refuses a 4.004 GiB tensor before allocating it.
    expect_error(
        &hostile::live_sum(40, (1 << 30) + (1 << 20), false),
        "run",
        &[],
        "limit exceeded",
        dir.path(),
    );
}

#[test]
fn run_with_a_timeout_still_runs_a_quick_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hostile::loop_runtime_trip();
    let model = dir.path().join("quick.onnx");
    h.model.save(&model).expect("save");
    let m = dir.path().join("m.npy");
    ndarray_npy::write_npy(&m, &ndarray::arr0(3i64)).expect("npy");
    let out = dir.path().join("out");
    let (code, err, _) = run(&[
        "run".into(),
        model.display().to_string(),
        "-i".into(),
        format!("M={}", m.display()),
        "-o".into(),
        out.display().to_string(),
        "--timeout".into(),
        "60".into(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let y: ndarray::ArrayD<f32> = ndarray_npy::read_npy(out.join("y.npy")).expect("output");
    assert_eq!(y.iter().next(), Some(&3.0));
}

#[test]
fn bad_timeouts_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hostile::loop_constant_trip();
    let (model, _) = save(&h, dir.path());
    for t in ["0", "-1", "nan"] {
        let (code, err, _) = run(&[
            "run".into(),
            model.display().to_string(),
            format!("--timeout={t}"),
        ]);
        assert_eq!(code, Some(1), "--timeout {t}: {err}");
        assert!(err.contains("--timeout"), "{err}");
    }
}

#[test]
fn run_refuses_mismatched_control_flow_bodies() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, model, says) in hostile::mismatched_bodies() {
        let path = dir.path().join(format!("{name}.onnx"));
        model.save(&path).expect("save");
        let (code, err, _) = run(&["run".into(), path.display().to_string()]);
        assert_eq!(code, Some(1), "{name}: {err}");
        assert!(err.contains("cannot plan the model"), "{name}: {err}");
        assert!(err.contains(says), "{name}: expected {says:?}: {err}");
    }
}

//! `EDGEML_KERNELS` forces a kernel path (checked in child processes, since the choice
//! is made once per process).
#![allow(missing_docs, clippy::unwrap_used)]

use edgeml_quant::Isa;
use std::process::Command;

/// Runs only in a child spawned by `edgeml_kernels_env_forces_a_path` (with
/// `--ignored`), which sets `EDGEML_TEST_EXPECT`.
#[test]
#[ignore = "run in a child process by edgeml_kernels_env_forces_a_path"]
fn child_reports_selected() {
    let want = std::env::var("EDGEML_TEST_EXPECT")
        .expect("EDGEML_TEST_EXPECT is set by edgeml_kernels_env_forces_a_path");
    assert_eq!(Isa::selected().name(), want);
}

/// Runs `child_reports_selected` in a child process with `EDGEML_KERNELS=env` and
/// returns whether it passed. The child must start and run exactly that one test: a
/// child that cannot start (e.g. a cross-compiled binary exec'd without its emulator)
/// fails this test instead of passing unnoticed. Under an emulator, set
/// `EDGEML_TEST_RUNNER` to the command that runs a test binary
/// (`scripts/test-aarch64.sh` sets it to its qemu command line).
fn child(env: &str, expect: &str) -> bool {
    let exe = std::env::current_exe().expect("path of this test binary");
    let runner = std::env::var("EDGEML_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    let mut cmd = match words.next() {
        Some(prog) => {
            let mut c = Command::new(prog);
            c.args(words).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let out = cmd
        .args([
            "child_reports_selected",
            "--exact",
            "--ignored",
            "--test-threads=1",
        ])
        .env("EDGEML_KERNELS", env)
        .env("EDGEML_TEST_EXPECT", expect)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {} (runner {runner:?}): {e}", exe.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("running 1 test"),
        "EDGEML_KERNELS={env}: the child did not run the test (runner {runner:?}); \
         status {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.success()
}

#[test]
fn edgeml_kernels_env_forces_a_path() {
    for isa in Isa::available() {
        assert!(child(isa.name(), isa.name()), "EDGEML_KERNELS={isa}");
    }
    // Unknown names and paths this CPU lacks fall back to the best path.
    assert!(
        child("no-such-isa", Isa::best().name()),
        "EDGEML_KERNELS=no-such-isa"
    );
    for isa in Isa::ALL.into_iter().filter(|i| !i.is_available()) {
        assert!(
            child(isa.name(), Isa::best().name()),
            "EDGEML_KERNELS={isa} (not available) must fall back to {}",
            Isa::best()
        );
    }
}

//! `EDGEML_KERNELS` forces a kernel path (checked in child processes, since the choice
//! is made once per process).
#![allow(missing_docs, clippy::unwrap_used)]

use edgeml_quant::Isa;
use std::process::Command;

/// Runs only in a child spawned by `edgeml_kernels_env_forces_a_path`.
#[test]
fn child_reports_selected() {
    let Ok(want) = std::env::var("EDGEML_TEST_EXPECT") else {
        return;
    };
    assert_eq!(Isa::selected().name(), want);
}

fn child(env: &str, expect: &str) -> Option<bool> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new(exe)
        .args(["child_reports_selected", "--exact", "--test-threads=1"])
        .env("EDGEML_KERNELS", env)
        .env("EDGEML_TEST_EXPECT", expect)
        .output()
        .ok()?;
    // A child that did not even start the test harness (e.g. an aarch64 binary exec'd
    // through binfmt without qemu's sysroot) proves nothing: skip.
    if !String::from_utf8_lossy(&out.stdout).contains("running 1 test") {
        return None;
    }
    Some(out.status.success())
}

#[test]
fn edgeml_kernels_env_forces_a_path() {
    for isa in Isa::available() {
        if let Some(ok) = child(isa.name(), isa.name()) {
            assert!(ok, "EDGEML_KERNELS={isa}");
        }
    }
    // Unknown or unavailable names fall back to the best path.
    if let Some(ok) = child("no-such-isa", Isa::best().name()) {
        assert!(ok);
    }
}

//! The KD rows run compiled for the CPU's best ISA (`edgeml_onnx::kernels::on_best_isa`);
//! every path must give the same bits. Checked in child processes, one per
//! `EDGEML_KERNELS` value, since the choice is made once per process.
#![allow(missing_docs, clippy::unwrap_used)]

use edgeml_distill::{CrossEntropyConfig, Kd, KdConfig, Targets};
use std::process::Command;

const BATCH: usize = 6;
/// Not a multiple of the reductions' 64-element blocks: the masked tail runs too.
const CLASSES: usize = 1003;

/// Logits with a spread like a trained classifier's (a few large, most small),
/// from a fixed linear congruential sequence.
fn logits(seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..BATCH * CLASSES)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            let x = 8.0 * (u - 0.5);
            x * x * x / 4.0
        })
        .collect()
}

/// The loss and gradient bits of the KD row kernel's variants (T = 2 squares one
/// exponential, T = 4 computes it, label smoothing, soft term only), folded into one
/// FNV-1a hash.
fn kd_bits() -> u64 {
    let zs = logits(1);
    let zt = logits(2);
    let labels: Vec<i64> = (0..BATCH as i64)
        .map(|i| (i * 37) % CLASSES as i64)
        .collect();
    let configs = [
        KdConfig::default(),
        KdConfig {
            temperature: 4.0,
            ..KdConfig::default()
        },
        KdConfig {
            temperature: 3.0,
            hard: CrossEntropyConfig {
                label_smoothing: 0.1,
                ..CrossEntropyConfig::default()
            },
            ..KdConfig::default()
        },
        KdConfig {
            hard_weight: 0.0,
            soft_weight: 1.0,
            ..KdConfig::default()
        },
    ];
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut eat = |bits: u64| {
        h ^= bits;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    for cfg in configs {
        let mut g = vec![0.0f32; BATCH * CLASSES];
        let v = Kd::new(cfg)
            .loss_and_grad(
                &zs,
                BATCH,
                CLASSES,
                &Targets::teacher(&zt).with_labels(&labels),
                &mut g,
            )
            .unwrap();
        eat(v.total.to_bits());
        g.iter().for_each(|x| eat(u64::from(x.to_bits())));
    }
    h
}

/// Runs only in a child spawned by `every_isa_gives_the_same_bits` (with `--ignored`):
/// prints the hash.
#[test]
#[ignore = "run in a child process by every_isa_gives_the_same_bits"]
fn child_prints_kd_bits() {
    println!("kd-bits {:016x}", kd_bits());
}

/// The hash printed by `child_prints_kd_bits` with `EDGEML_KERNELS=isa`. Under an
/// emulator, `EDGEML_TEST_RUNNER` is the command that runs a test binary.
fn child(isa: &str) -> String {
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
            "child_prints_kd_bits",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("EDGEML_KERNELS", isa)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {} (runner {runner:?}): {e}", exe.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "EDGEML_KERNELS={isa}: child failed ({:?})\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.split_once("kd-bits ").map(|(_, h)| h.trim()))
        .unwrap_or_else(|| panic!("EDGEML_KERNELS={isa}: no hash in the child's output: {stdout}"))
        .to_owned()
}

#[test]
fn every_isa_gives_the_same_bits() {
    let here = format!("{:016x}", kd_bits());
    // Paths this CPU lacks fall back to its best one (and say so on stderr).
    for isa in ["scalar", "avx2", "avx512", "neon"] {
        assert_eq!(
            child(isa),
            here,
            "EDGEML_KERNELS={isa} against the default path"
        );
    }
}

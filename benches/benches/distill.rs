//! Distillation losses: Hinton KD forward + backward on 256 × 1000 logits, on one
//! thread and on rayon's pool, next to the streaming-pass baselines over the same
//! logits (the memory-bound limit). The numpy baseline is measured by
//! scripts/bench_distill.py in the same run.

use criterion::{Criterion, criterion_group, criterion_main};
use edgeml::distill::{Kd, KdConfig, Targets};
use std::hint::black_box;

const BATCH: usize = 256;
const CLASSES: usize = 1000;

/// Deterministic logits in about [-6, 6].
fn logits(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 12.0 - 6.0
        })
        .collect()
}

/// Sum of student + teacher logits: one streaming read of both inputs (8 lanes, so it
/// vectorizes).
fn stream_sum(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += x[k] + y[k];
        }
    }
    acc.iter().sum()
}

fn kd_loss(c: &mut Criterion) {
    let n = BATCH * CLASSES;
    let zs = logits(1, n);
    let zt = logits(2, n);
    let labels: Vec<i64> = (0..BATCH as i64)
        .map(|i| (i * 389) % CLASSES as i64)
        .collect();
    let targets = Targets::teacher(&zt).with_labels(&labels);
    let kd = Kd::new(KdConfig::default());
    let mut grad = vec![0.0f32; n];
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let size = format!("{BATCH}x{CLASSES}");

    let mut g = c.benchmark_group("kd_loss");
    g.sample_size(30);
    g.bench_function(format!("{size}/1thread"), |bch| {
        bch.iter(|| {
            one.install(|| kd.loss_and_grad(black_box(&zs), BATCH, CLASSES, &targets, &mut grad))
                .expect("kd")
        })
    });
    g.bench_function(
        format!("{size}/rayon{}", rayon::current_num_threads()),
        |bch| {
            bch.iter(|| {
                kd.loss_and_grad(black_box(&zs), BATCH, CLASSES, &targets, &mut grad)
                    .expect("kd")
            })
        },
    );
    g.bench_function(format!("stream_sum/{size}/1thread"), |bch| {
        bch.iter(|| stream_sum(black_box(&zs), black_box(&zt)))
    });
    g.bench_function(format!("stream_sub_write/{size}/1thread"), |bch| {
        bch.iter(|| {
            for ((o, &a), &b) in grad.iter_mut().zip(black_box(&zs)).zip(black_box(&zt)) {
                *o = a - b;
            }
        })
    });
    g.finish();
}

mod group {
    #![allow(missing_docs)]
    use super::*;
    criterion_group!(benches, kd_loss);
}
criterion_main!(group::benches);

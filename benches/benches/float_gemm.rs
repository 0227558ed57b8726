//! Float SGEMM: every available ISA against the scalar twin (baseline in the same group).
//!
//! Single-threaded (a 1-thread rayon pool), operands packed on the fly, `C = A·B`.
//! Run: `cargo bench -p edgeml-benches --bench float_gemm`
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use edgeml::onnx::kernels::{self, Lhs, MatRef, PackedB, Rhs};
use std::hint::black_box;

fn data(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 % 1000) as f32) / 500.0 - 1.0)
        .collect()
}

fn bench(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let mut g = c.benchmark_group("sgemm");
    g.sample_size(20);
    // (m, n, k): square sizes, a ResNet 3x3 conv as im2col GEMM, a batch-1 FC layer (GEMV).
    for &(m, n, k) in &[
        (64, 64, 64),
        (256, 256, 256),
        (512, 512, 512),
        (64, 3136, 576),
        (1, 1000, 2048),
    ] {
        let a = data(m * k);
        let b = data(k * n);
        let mut out = vec![0.0f32; m * n];
        g.throughput(Throughput::Elements((2 * m * n * k) as u64));
        for isa in kernels::available_isas() {
            let id = BenchmarkId::new(isa.name(), format!("{m}x{n}x{k}"));
            g.bench_function(id, |bench| {
                pool.install(|| {
                    bench.iter(|| {
                        let av = MatRef::row_major(&a, m, k).expect("a");
                        let bv = MatRef::row_major(&b, k, n).expect("b");
                        kernels::sgemm(
                            isa,
                            1.0,
                            Lhs::View(av),
                            Rhs::View(bv),
                            0.0,
                            black_box(&mut out),
                            n,
                        )
                        .expect("sgemm");
                    })
                })
            });
        }
    }
    g.finish();

    // Weights pre-packed once, as the operators do for constant weights.
    let mut g = c.benchmark_group("sgemm_prepacked");
    g.sample_size(20);
    // The last three: a transformer encoder's QKV, FFN-up and FFN-down projections (seq 128, d 256).
    for &(m, n, k) in &[
        (256, 256, 256),
        (1, 1000, 2048),
        (128, 768, 256),
        (128, 1024, 256),
        (128, 256, 1024),
    ] {
        let a = data(m * k);
        let b = data(k * n);
        let mut out = vec![0.0f32; m * n];
        g.throughput(Throughput::Elements((2 * m * n * k) as u64));
        for isa in kernels::available_isas() {
            let pb = PackedB::pack(isa, MatRef::row_major(&b, k, n).expect("b"));
            let id = BenchmarkId::new(isa.name(), format!("{m}x{n}x{k}"));
            g.bench_function(id, |bench| {
                pool.install(|| {
                    bench.iter(|| {
                        let av = MatRef::row_major(&a, m, k).expect("a");
                        kernels::sgemm(
                            isa,
                            1.0,
                            Lhs::View(av),
                            Rhs::Packed(&pb),
                            0.0,
                            black_box(&mut out),
                            n,
                        )
                        .expect("sgemm");
                    })
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

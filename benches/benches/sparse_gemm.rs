//! Dense packed SGEMM versus the sparse kernel for a constant weight with a given zero
//! fraction (baseline in the same group), `C = A·B`, `A` `m × k`, `B` `k × n`.
//!
//! Single-threaded (a 1-thread rayon pool), the best ISA of this CPU
//! (`EDGEML_KERNELS` forces another), `B` packed or compressed once outside the timing,
//! as the operators do at plan time. Zeros are spread uniformly (a hash of the index),
//! as unstructured magnitude pruning leaves them.
//! Run: `cargo bench -p edgeml-benches --bench sparse_gemm`
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use edgeml::onnx::kernels::{self, MatRef, PackedB, Rhs, SparseB};
use std::hint::black_box;

fn data(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 % 1000) as f32) / 500.0 - 1.0)
        .collect()
}

/// `len` weights with a fraction `zeros` of them set to zero.
fn weights(len: usize, zeros: f64) -> Vec<f32> {
    data(len)
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            if (h as f64) < zeros * (1u64 << 24) as f64 {
                0.0
            } else {
                w
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let isa = kernels::best_isa();
    let mut g = c.benchmark_group("sparse_gemm");
    g.sample_size(20);
    // (m, k, n): MLP layers at batch 1 and 64, and the digits MLP's first layer.
    for &(m, k, n) in &[
        (1, 512, 512),
        (1, 1024, 1024),
        (64, 512, 512),
        (64, 1024, 1024),
        (1, 64, 32),
        (64, 64, 32),
    ] {
        let a = data(m * k);
        let mut out = vec![0.0f32; m * n];
        let av = MatRef::row_major(&a, m, k).expect("a");
        let b = weights(k * n, 0.9);
        let pb = PackedB::pack(isa, MatRef::row_major(&b, k, n).expect("b"));
        let id = BenchmarkId::new(format!("dense/{}", isa.name()), format!("{m}x{k}x{n}"));
        g.bench_function(id, |bench| {
            pool.install(|| {
                bench.iter(|| {
                    kernels::sgemm(
                        isa,
                        1.0,
                        kernels::Lhs::View(av),
                        Rhs::Packed(&pb),
                        0.0,
                        black_box(&mut out),
                        n,
                    )
                    .expect("sgemm")
                })
            })
        });
        for &s in &[0.5, 0.7, 0.8, 0.9, 0.95, 0.99] {
            let b = weights(k * n, s);
            let sb = SparseB::from_dense(MatRef::row_major(&b, k, n).expect("b")).expect("csc");
            let id = BenchmarkId::new(format!("sparse{s}/{}", isa.name()), format!("{m}x{k}x{n}"));
            g.bench_function(id, |bench| {
                pool.install(|| {
                    bench.iter(|| {
                        kernels::spmm(isa, 1.0, av, &sb, 0.0, black_box(&mut out), n).expect("spmm")
                    })
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! INT8 GEMM: every available path of edgeml-quant on the shapes, with our
//! float SGEMM (edgeml-onnx) as the same-group baseline. Ids: `gemm_u8i8/<isa>/MxNxK`,
//! `gemm_u8i8_2t/<isa>/MxNxK` (two threads), `sgemm_f32/<isa>/MxNxK`.
//! The onnxruntime side is measured by `scripts/bench_int8.py`.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use edgeml::onnx::kernels::{self as fk, Lhs, MatRef, Rhs};
use edgeml::quant::{GemmOptions, Isa, PackedB, ZeroPoints, gemm_i32};
use ndarray::Array2;
use std::hint::black_box;
use std::time::Duration;

const SHAPES: [(usize, usize, usize); 4] = [
    (1, 1024, 1024),
    (64, 1024, 1024),
    (256, 256, 2304),
    (1024, 1024, 1024),
];

fn data(m: usize, n: usize, k: usize) -> (Array2<u8>, Array2<i8>) {
    let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 131 + j * 71) % 256) as u8);
    let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 37 + j * 101) % 256) as u8 as i8);
    (a, b)
}

fn bench(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    for &(m, n, k) in &SHAPES {
        let (a, b) = data(m, n, k);
        let id = format!("{m}x{n}x{k}");
        let mut g = c.benchmark_group("gemm_u8i8");
        g.sample_size(10).measurement_time(Duration::from_secs(2));
        let mut out = Array2::<i32>::zeros((m, n));
        for isa in Isa::available() {
            if isa == Isa::Scalar && m * n * k > 1 << 26 {
                continue;
            }
            let pb = PackedB::with_isa(b.view(), ZeroPoints::PerTensor(0), isa).expect("pack");
            g.bench_function(BenchmarkId::new(isa.name(), &id), |bch| {
                bch.iter(|| {
                    gemm_i32(a.view(), 3u8, &pb, out.view_mut(), &GemmOptions::default())
                        .expect("gemm");
                    black_box(&out);
                })
            });
        }
        // Baseline in the same group: our float SGEMM on one thread, B pre-packed.
        let af: Vec<f32> = a.iter().map(|&v| f32::from(v)).collect();
        let bf: Vec<f32> = b.iter().map(|&v| f32::from(v)).collect();
        let fisa = fk::best_isa();
        let fpb = fk::PackedB::pack(fisa, MatRef::row_major(&bf, k, n).expect("shape"));
        let mut cf = vec![0f32; m * n];
        g.bench_function(
            BenchmarkId::new(format!("sgemm_f32_{}", fisa.name()), &id),
            |bch| {
                bch.iter(|| {
                    pool.install(|| {
                        let lhs = Lhs::View(MatRef::row_major(&af, m, k).expect("shape"));
                        fk::sgemm(fisa, 1.0, lhs, Rhs::Packed(&fpb), 0.0, &mut cf, n)
                            .expect("sgemm");
                    });
                    black_box(&cf);
                })
            },
        );
        g.finish();
        if m > 1 {
            let mut g = c.benchmark_group("gemm_u8i8_2t");
            g.sample_size(10).measurement_time(Duration::from_secs(2));
            let isa = Isa::best();
            let pb = PackedB::with_isa(b.view(), ZeroPoints::PerTensor(0), isa).expect("pack");
            g.bench_function(BenchmarkId::new(isa.name(), &id), |bch| {
                bch.iter(|| {
                    gemm_i32(
                        a.view(),
                        3u8,
                        &pb,
                        out.view_mut(),
                        &GemmOptions { threads: 2 },
                    )
                    .expect("gemm");
                    black_box(&out);
                })
            });
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

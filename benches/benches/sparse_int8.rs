//! Dense INT8 GEMM versus the sparse INT8 product (`edgeml_quant::sparse`) for a
//! constant weight with a given share of entries at its zero point (baseline in the
//! same group): requantized `u8 × i8 → u8`, per-channel multipliers, as a fused
//! `QLinearMatMul` runs it. `A` `m × k`, `B` `k × n`; ids `dense/<isa>/MxKxN`,
//! `sparse<zeros>/<isa>/MxKxN`.
//!
//! One thread, the selected path of this CPU (`EDGEML_KERNELS` forces another), `B`
//! packed or compressed once outside the timing, as the operators do at plan time.
//! Zeros are spread uniformly (a hash of the index), as unstructured magnitude pruning
//! leaves them.
//! Run: `cargo bench -p edgeml-benches --bench sparse_int8`
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use edgeml::quant::sparse::{self, SparseB};
use edgeml::quant::{Activation, GemmOptions, Isa, PackedB, Requant, ZeroPoints, gemm_requant};
use ndarray::Array2;
use std::hint::black_box;

/// A `k × n` weight (zero point 0) with a share `zeros` of its entries 0.
fn weights(k: usize, n: usize, zeros: f64) -> Array2<i8> {
    Array2::from_shape_fn((k, n), |(i, j)| {
        let h = ((i * n + j) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        if (h as f64) < zeros * (1u64 << 24) as f64 {
            0
        } else {
            match ((i * 37 + j * 101) % 255) as i32 - 127 {
                0 => 1,
                v => v as i8,
            }
        }
    })
}

fn bench(c: &mut Criterion) {
    let isa = Isa::selected();
    let opts = GemmOptions { threads: 1 };
    let mut g = c.benchmark_group("sparse_int8");
    g.sample_size(20);
    // (m, k, n): an MLP layer at batch 1 and 64, and a 3x3 convolution's GEMM shape.
    for &(m, k, n) in &[(1, 1024, 1024), (64, 1024, 1024), (256, 2304, 256)] {
        let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 131 + j * 71) % 256) as u8);
        let mult: Vec<f32> = (0..n).map(|j| 1e-4 * (1 + j % 7) as f32).collect();
        let bias: Vec<i32> = (0..n).map(|j| (j as i32 % 50) * 100).collect();
        let rq = Requant {
            multipliers: &mult,
            zero_point: 128,
            bias: Some(&bias),
            activation: Activation::None,
        };
        let mut out = Array2::<u8>::zeros((m, n));
        let shape = format!("{m}x{k}x{n}");
        let b = weights(k, n, 0.9);
        let pb = PackedB::new(b.view(), ZeroPoints::PerTensor(0)).expect("pack");
        g.bench_function(BenchmarkId::new(format!("dense/{isa}"), &shape), |bch| {
            bch.iter(|| {
                gemm_requant(a.view(), 128u8, &pb, &rq, out.view_mut(), &opts).expect("gemm");
                black_box(&out);
            })
        });
        for &s in &[0.5, 0.8, 0.9, 0.95, 0.98, 0.99] {
            let b = weights(k, n, s);
            let sb = SparseB::new(b.view(), ZeroPoints::PerTensor(0)).expect("csc");
            let id = BenchmarkId::new(format!("sparse{s}/{isa}"), &shape);
            g.bench_function(id, |bch| {
                bch.iter(|| {
                    sparse::gemm_requant(a.view(), 128u8, &sb, &rq, out.view_mut(), &opts)
                        .expect("spmm");
                    black_box(&out);
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

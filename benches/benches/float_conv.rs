//! Convolution building blocks, single-threaded: the conv GEMM driver (B packed block by
//! block, bias in the tile epilogue) against plain `sgemm` plus a separate bias pass, and
//! the direct depthwise kernel per ISA on single planes and on whole MobileNetV3 /
//! EfficientNet layers (the scalar twin is the baseline in each group).
//!
//! Run: `cargo bench -p edgeml-benches --bench float_conv`
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use edgeml::onnx::kernels::{self, DepthwiseGeo, Lhs, MatRef, PackedA, Rhs, RowsB};
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
    // 1x1 convolutions as (M, N, K): SqueezeNet's classifier (512->1000 on 13x13), a
    // fire squeeze (128->16 on 55x55) and a ShuffleNet grouped 1x1 group (34->34 on 28x28).
    let mut g = c.benchmark_group("conv1x1_bias");
    g.sample_size(20);
    for &(m, n, k) in &[(1000, 169, 512), (16, 3025, 128), (34, 784, 34)] {
        let w = data(m * k);
        let x = data(k * n);
        let bias = data(m);
        let mut out = vec![0.0f32; m * n];
        g.throughput(Throughput::Elements((2 * m * n * k) as u64));
        for isa in kernels::available_isas() {
            let pa = PackedA::pack(isa, MatRef::row_major(&w, m, k).expect("w"));
            let id = BenchmarkId::new(
                format!("{}/sgemm_then_bias", isa.name()),
                format!("{m}x{n}x{k}"),
            );
            g.bench_function(id, |bench| {
                pool.install(|| {
                    bench.iter(|| {
                        let xv = MatRef::row_major(&x, k, n).expect("x");
                        let o = black_box(&mut out);
                        kernels::sgemm(isa, 1.0, Lhs::Packed(&pa), Rhs::View(xv), 0.0, o, n)
                            .expect("sgemm");
                        for (row, &b) in o.chunks_mut(n).zip(&bias) {
                            row.iter_mut().for_each(|v| *v += b);
                        }
                    })
                })
            });
            let id = BenchmarkId::new(
                format!("{}/packed_b_epilogue", isa.name()),
                format!("{m}x{n}x{k}"),
            );
            g.bench_function(id, |bench| {
                pool.install(|| {
                    bench.iter(|| {
                        let rhs = RowsB::new(&x, k, n, n).expect("x");
                        let epi = |i: usize, _: usize, v: &mut [f32]| {
                            let b = bias[i];
                            v.iter_mut().for_each(|x| *x += b);
                        };
                        kernels::sgemm_packed_b(
                            isa,
                            Lhs::Packed(&pa),
                            &rhs,
                            black_box(&mut out),
                            n,
                            Some(&epi),
                        )
                        .expect("sgemm_packed_b");
                    })
                })
            });
        }
    }
    g.finish();

    // 3x3 depthwise planes: (size, stride) of ShuffleNet's layers.
    let mut g = c.benchmark_group("depthwise3x3");
    g.sample_size(30);
    for &(h, s) in &[(56usize, 2usize), (28, 1), (14, 1), (7, 1)] {
        let o = (h + 2 - 3) / s + 1;
        let geo = DepthwiseGeo {
            h,
            w: h,
            oh: o,
            ow: o,
            kh: 3,
            kw: 3,
            sh: s,
            sw: s,
            dh: 1,
            dw: 1,
            pt: 1,
            pl: 1,
        };
        let x = data(h * h);
        let w = data(9);
        let mut out = vec![0.0f32; o * o];
        let mut scratch = kernels::DepthwiseScratch::default();
        g.throughput(Throughput::Elements((2 * 9 * o * o) as u64));
        for isa in kernels::available_isas() {
            let id = BenchmarkId::new(isa.name(), format!("{h}x{h}_s{s}"));
            g.bench_function(id, |bench| {
                bench.iter(|| {
                    kernels::depthwise_plane(
                        isa,
                        &x,
                        &w,
                        0.5,
                        &geo,
                        &mut scratch,
                        black_box(&mut out),
                    )
                })
            });
        }
    }
    g.finish();
}

/// Whole depthwise layers of MobileNetV3-large and EfficientNet-B0, one plane per
/// channel as the operator runs them: `(channels, input size, kernel, stride)`, padding
/// `kernel / 2`.
fn bench_mobile(c: &mut Criterion) {
    let mut g = c.benchmark_group("depthwise_mobile");
    g.sample_size(20);
    g.warm_up_time(std::time::Duration::from_secs(1));
    g.measurement_time(std::time::Duration::from_secs(3));
    let layers = [
        (72usize, 56usize, 3usize, 1usize),
        (64, 112, 3, 2),
        (72, 56, 5, 2),
        (120, 28, 5, 1),
        (480, 14, 3, 1),
        (960, 7, 5, 1),
    ];
    for &(ch, h, k, s) in &layers {
        let p = k / 2;
        let o = (h + 2 * p - k) / s + 1;
        let geo = DepthwiseGeo {
            h,
            w: h,
            oh: o,
            ow: o,
            kh: k,
            kw: k,
            sh: s,
            sw: s,
            dh: 1,
            dw: 1,
            pt: p,
            pl: p,
        };
        let x = data(ch * h * h);
        let w = data(ch * k * k);
        let mut out = vec![0.0f32; ch * o * o];
        let mut scratch = kernels::DepthwiseScratch::default();
        g.throughput(Throughput::Elements((2 * k * k * o * o * ch) as u64));
        for isa in kernels::available_isas() {
            let id = BenchmarkId::new(isa.name(), format!("{ch}x{h}x{h}_k{k}s{s}"));
            g.bench_function(id, |bench| {
                bench.iter(|| {
                    let planes = out.chunks_exact_mut(o * o);
                    for (q, op) in planes.enumerate() {
                        kernels::depthwise_plane(
                            isa,
                            &x[q * h * h..][..h * h],
                            &w[q * k * k..][..k * k],
                            0.5,
                            &geo,
                            &mut scratch,
                            black_box(op),
                        );
                    }
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench, bench_mobile);
criterion_main!(benches);

//! Element-wise float activations on 2²⁰ values in [−8, 8), one thread: the vectorized
//! `f32` kernels of `edgeml_onnx::kernels::vmath` against the per-element `f64` standard
//! library function rounded to `f32` (what the operators ran before; the baseline in
//! each group).
//!
//! Run: `cargo bench -p edgeml-benches --bench float_activations`
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edgeml::onnx::kernels::vmath;
// The f64 function the Erf/Gelu operators used before (Numerical Recipes `erfcc`).
use edgeml::onnx::ops::activation::erf as erf64;
use std::hint::black_box;

const N: usize = 1 << 20;

fn bench(c: &mut Criterion) {
    let src: Vec<f32> = (0..N)
        .map(|i| ((i * 7919 % 16_000) as f32) / 1000.0 - 8.0)
        .collect();
    let mut dst = vec![0.0f32; N];
    macro_rules! case {
        ($name:expr, $f:expr, $g:expr) => {{
            let g: fn(f64) -> f64 = $g;
            let mut grp = c.benchmark_group(concat!("act_", $name));
            grp.sample_size(20);
            grp.throughput(Throughput::Elements(N as u64));
            grp.bench_function("f64_scalar", |b| {
                b.iter(|| {
                    for (d, &x) in dst.iter_mut().zip(black_box(&src)) {
                        *d = g(f64::from(x)) as f32;
                    }
                })
            });
            let isa = edgeml::onnx::kernels::best_isa().name();
            grp.bench_function(format!("vmath_{isa}"), |b| {
                b.iter(|| $f(black_box(&src), &mut dst))
            });
            grp.finish();
        }};
    }
    case!("exp", vmath::exp_into, f64::exp);
    case!("ln", vmath::ln_into, f64::ln);
    case!("sigmoid", vmath::sigmoid_into, |x| 1.0 / (1.0 + (-x).exp()));
    case!("silu", vmath::silu_into, |x| x / (1.0 + (-x).exp()));
    case!("tanh", vmath::tanh_into, f64::tanh);
    case!("erf", vmath::erf_into, erf64);
    case!("gelu", vmath::gelu_into, |x| {
        0.5 * x * (1.0 + erf64(x * std::f64::consts::FRAC_1_SQRT_2))
    });
    case!("softplus", vmath::softplus_into, |x| {
        x.max(0.0) + (-x.abs()).exp().ln_1p()
    });
    case!("mish", vmath::mish_into, |x| {
        x * (x.max(0.0) + (-x.abs()).exp().ln_1p()).tanh()
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! INT8 convolution (QLinearConv semantics, u8 in/out, i8 weights): ids
//! `qlinear_conv/<isa>/<case>`. The onnxruntime side is measured by
//! `scripts/bench_int8.py`.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use edgeml::quant::{
    Activation, ConvParams, GemmOptions, Isa, PackedConv, Requant, ZeroPoints, qlinear_conv,
};
use ndarray::Array4;
use std::hint::black_box;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    // (id, C_in, C_out, H, W, kernel, group, pad)
    let cases = [
        ("conv3x3_64to64_56x56", 64, 64, 56, 56, 3, 1, 1),
        ("dw3x3_32_112x112", 32, 32, 112, 112, 3, 32, 1),
        ("conv1x1_64to256_56x56", 64, 256, 56, 56, 1, 1, 0),
        // MobileNetV2's expansion at 112² (K = 16) and its 7×7 stage.
        ("conv1x1_16to96_112x112", 16, 96, 112, 112, 1, 1, 0),
        ("dw3x3_960_7x7", 960, 960, 7, 7, 3, 960, 1),
        ("conv1x1_960to160_7x7", 960, 160, 7, 7, 1, 1, 0),
    ];
    let mut g = c.benchmark_group("qlinear_conv");
    g.sample_size(10).measurement_time(Duration::from_secs(2));
    for &(id, ci, co, h, w, k, grp, pd) in &cases {
        let x = Array4::from_shape_fn((1, ci, h, w), |(_, a, b, d)| {
            ((a * 7 + b * 13 + d * 29) % 256) as u8
        });
        let wt = Array4::from_shape_fn((co, ci / grp, k, k), |(a, b, d, e)| {
            ((a * 3 + b * 5 + d * 7 + e * 11) % 256) as u8 as i8
        });
        let p = ConvParams {
            group: grp,
            pads: [pd; 4],
            ..ConvParams::default()
        };
        let mult = vec![0.001f32; co];
        let rq = Requant {
            multipliers: &mult,
            zero_point: 128,
            bias: None,
            activation: Activation::None,
        };
        for isa in Isa::available() {
            if isa == Isa::Scalar {
                continue;
            }
            let pc =
                PackedConv::with_isa(wt.view(), ZeroPoints::PerTensor(0), p, isa).expect("pack");
            let (oh, ow) = pc.output_hw(h, w).expect("shape");
            let mut y = Array4::<u8>::zeros((1, co, oh, ow));
            g.bench_function(BenchmarkId::new(isa.name(), id), |b| {
                b.iter(|| {
                    qlinear_conv(
                        x.view(),
                        3u8,
                        &pc,
                        &rq,
                        y.view_mut(),
                        &GemmOptions::default(),
                    )
                    .expect("conv");
                    black_box(&y);
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

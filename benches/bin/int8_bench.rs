//! Prints JSON medians of the INT8 GEMM/conv kernels, one line per (kernel, ISA,
//! shape, threads); used by `scripts/bench_int8.py` next to onnxruntime in the same run.
//!
//! Usage: `int8_bench [gemm|conv|all] [reps]`; `INT8_BENCH_ISA`, `INT8_BENCH_SHAPE`
//! (e.g. `1024x1024x1024`), `INT8_BENCH_CASE` (a conv name part) and `INT8_BENCH_THREADS`
//! (`1`, `2`) select a subset.

use edgeml::quant::{self, ConvParams, GemmOptions, Isa, PackedB, PackedConv, ZeroPoints};
use ndarray::{Array2, Array4};
use std::time::Instant;

/// The paths to measure: every available one, or those named in `INT8_BENCH_ISA`.
fn isas() -> Vec<Isa> {
    let only = std::env::var("INT8_BENCH_ISA").unwrap_or_default();
    Isa::available()
        .into_iter()
        .filter(|i| only.is_empty() || only.split(',').any(|o| o == i.name()))
        .collect()
}

fn median(mut f: impl FnMut(), reps: usize) -> f64 {
    for _ in 0..3 {
        f();
    }
    let mut ts: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    ts.sort_by(f64::total_cmp);
    ts[ts.len() / 2]
}

/// Thread counts to measure: 1 and 2, or those listed in `INT8_BENCH_THREADS`.
fn thread_counts() -> Vec<usize> {
    let only = std::env::var("INT8_BENCH_THREADS").unwrap_or_default();
    [1, 2]
        .into_iter()
        .filter(|t| only.is_empty() || only.split(',').any(|o| o == t.to_string()))
        .collect()
}

/// Deterministic pseudo-random bytes.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

fn gemm(reps: usize) {
    let shapes = [
        (1, 1024, 1024),
        (64, 1024, 1024),
        (256, 256, 2304),
        (1024, 1024, 1024),
    ];
    let only = std::env::var("INT8_BENCH_SHAPE").unwrap_or_default();
    for &(m, n, k) in &shapes {
        if !only.is_empty() && only != format!("{m}x{n}x{k}") {
            continue;
        }
        let a = Array2::from_shape_vec((m, k), bytes(m * k, 1)).expect("shape");
        let b = Array2::from_shape_vec((k, n), bytes(k * n, 2))
            .expect("shape")
            .mapv(|x| x as i8);
        let mut out = Array2::<i32>::zeros((m, n));
        if std::env::var_os("INT8_BENCH_NO_F32").is_none() {
            sgemm_baseline(&a, &b, reps);
        }
        for isa in isas() {
            if isa == Isa::Scalar && m * n * k > 1 << 27 {
                continue;
            }
            let pb = PackedB::with_isa(b.view(), ZeroPoints::PerTensor(0i8), isa).expect("pack");
            for threads in thread_counts() {
                if threads == 2 && (isa == Isa::Scalar || m == 1) {
                    continue;
                }
                let opts = GemmOptions { threads };
                let t = median(
                    || quant::gemm_i32(a.view(), 3u8, &pb, out.view_mut(), &opts).expect("gemm"),
                    reps,
                );
                println!(
                    "{{\"kernel\":\"gemm_u8i8\",\"isa\":\"{isa}\",\"shape\":\"{m}x{n}x{k}\",\"threads\":{threads},\"median_s\":{t:e}}}"
                );
            }
        }
    }
}

/// Our float SGEMM (edgeml-onnx, best ISA) on the same shape, one thread, B pre-packed.
fn sgemm_baseline(a: &Array2<u8>, b: &Array2<i8>, reps: usize) {
    use edgeml::onnx::kernels::{self as fk, Lhs, MatRef, Rhs};
    let (m, k) = a.dim();
    let n = b.ncols();
    let af: Vec<f32> = a.iter().map(|&v| f32::from(v)).collect();
    let bf: Vec<f32> = b.iter().map(|&v| f32::from(v)).collect();
    let isa = fk::best_isa();
    let pb = fk::PackedB::pack(isa, MatRef::row_major(&bf, k, n).expect("shape"));
    let mut c = vec![0f32; m * n];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let t = pool.install(|| {
        median(
            || {
                let lhs = Lhs::View(MatRef::row_major(&af, m, k).expect("shape"));
                fk::sgemm(isa, 1.0, lhs, Rhs::Packed(&pb), 0.0, &mut c, n).expect("sgemm");
            },
            reps,
        )
    });
    println!(
        "{{\"kernel\":\"sgemm_f32\",\"isa\":\"{}\",\"shape\":\"{m}x{n}x{k}\",\"threads\":1,\"median_s\":{t:e}}}",
        isa.name()
    );
}

fn conv(reps: usize) {
    // (name, c_in, c_out, h, w, kernel, group, stride, pad)
    let cases = [
        ("conv3x3_64to64_56", 64, 64, 56, 56, 3, 1, 1, 1),
        ("dw3x3_32_112", 32, 32, 112, 112, 3, 32, 1, 1),
        ("conv1x1_64to256_56", 64, 256, 56, 56, 1, 1, 1, 0),
    ];
    let only = std::env::var("INT8_BENCH_CASE").unwrap_or_default();
    for &(name, ci, co, h, w, ks, g, st, pd) in &cases {
        if !only.is_empty() && !name.contains(only.as_str()) {
            continue;
        }
        let x = Array4::from_shape_vec((1, ci, h, w), bytes(ci * h * w, 3)).expect("shape");
        let wt = Array4::from_shape_vec((co, ci / g, ks, ks), bytes(co * ci / g * ks * ks, 4))
            .expect("shape")
            .mapv(|v| v as i8);
        let params = ConvParams {
            group: g,
            strides: [st, st],
            pads: [pd, pd, pd, pd],
            dilations: [1, 1],
        };
        for isa in isas() {
            if isa == Isa::Scalar {
                continue;
            }
            let pc = PackedConv::with_isa(wt.view(), ZeroPoints::PerTensor(0i8), params, isa)
                .expect("pack");
            let (oh, ow) = pc.output_hw(h, w).expect("shape");
            let mut y = Array4::<u8>::zeros((1, co, oh, ow));
            let mult = vec![0.001f32; co];
            let rq = quant::Requant {
                multipliers: &mult,
                zero_point: 128,
                bias: None,
                activation: quant::Activation::None,
            };
            for threads in thread_counts() {
                let opts = GemmOptions { threads };
                let t = median(
                    || {
                        quant::qlinear_conv(x.view(), 3u8, &pc, &rq, y.view_mut(), &opts)
                            .expect("conv")
                    },
                    reps,
                );
                println!(
                    "{{\"kernel\":\"{name}\",\"isa\":\"{isa}\",\"shape\":\"{ci}x{h}x{w}->{co}\",\"threads\":{threads},\"median_s\":{t:e}}}"
                );
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map_or("all", String::as_str);
    let reps = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(30);
    if what == "gemm" || what == "all" {
        gemm(reps);
    }
    if what == "conv" || what == "all" {
        conv(reps);
    }
}

//! Every kernel path against the scalar twins of `edgeml_quant::reference`: random
//! shapes (0, 1, primes, tails of every lane width), random zero points, extreme values;
//! integers compared with `assert_eq!`. Paths the CPU lacks are skipped with a
//! `SKIP:` line on stderr, so the same suite runs natively and under qemu (Cortex-A72
//! without dotprod, A76 with it); `every_available_path_is_exercised` runs every
//! available path once more and prints which ran and which were skipped (`.ci/run`
//! shows its output).
#![allow(missing_docs, clippy::unwrap_used)]

use edgeml_quant::*;
use ndarray::{Array2, Array4};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::sync::Mutex;

/// Whether `isa` runs on this CPU; if not, says once per test that the test skips it.
fn runs_here(isa: Isa, test: &'static str) -> bool {
    static SAID: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    if isa.is_available() {
        return true;
    }
    if SAID.lock().unwrap().insert(test) {
        eprintln!("SKIP: {test} needs {isa}, this CPU lacks it");
    }
    false
}

/// Deterministic bytes; `mode` 0: uniform, 1: extremes {0,255} alternating by index,
/// 2: mostly extremes.
fn bytes(n: usize, seed: u64, mode: u8) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let r = (s >> 32) as u8;
            match mode {
                0 => r,
                1 => {
                    if i % 2 == 0 {
                        255
                    } else {
                        0
                    }
                }
                _ => {
                    if r.is_multiple_of(4) {
                        r
                    } else if r.is_multiple_of(2) {
                        255
                    } else {
                        0
                    }
                }
            }
        })
        .collect()
}

fn shape() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..=3, 1usize..100, Just(97), Just(127), Just(131)]
}

/// The worst case of `vpmaddubsw`: A = 255 everywhere, B = −128/127 in adjacent k.
fn worst_case(isa: Isa, m: usize, n: usize, k: usize) {
    let a = Array2::<u8>::from_elem((m, k), 255);
    let b = Array2::from_shape_fn((k, n), |(i, j)| if (i + j) % 2 == 0 { -128i8 } else { 127 });
    let b2 = b.mapv(|v| if v == 127 { -128 } else { v });
    for b in [b, b2] {
        let want = reference::gemm_i32(a.view(), 0u8, b.view(), &[0i8]);
        let pb = PackedB::with_isa(b.view(), ZeroPoints::PerTensor(0), isa).unwrap();
        assert_eq!(pb.isa(), isa, "packed for another path");
        let mut out = Array2::zeros((m, n));
        gemm_u8i8(a.view(), 0, &pb, out.view_mut()).unwrap();
        assert_eq!(out, want, "{isa}");
    }
}

#[allow(clippy::too_many_arguments)]
fn check_gemm<TA: QElem, TB: QElem>(
    isa: Isa,
    (m, n, k): (usize, usize, usize),
    seed: u64,
    mode: u8,
    per_col: bool,
    threads: usize,
    map_a: fn(u8) -> TA,
    map_b: fn(u8) -> TB,
) {
    let a = Array2::from_shape_vec((m, k), bytes(m * k, seed, mode))
        .unwrap()
        .mapv(map_a);
    let b = Array2::from_shape_vec((k, n), bytes(k * n, seed ^ 0xABCD, mode))
        .unwrap()
        .mapv(map_b);
    let za = map_a(bytes(1, seed ^ 7, 0)[0]);
    let zb: Vec<TB> = bytes(if per_col { n } else { 1 }, seed ^ 9, 0)
        .into_iter()
        .map(map_b)
        .collect();
    let zp = if per_col {
        ZeroPoints::PerColumn(&zb)
    } else {
        ZeroPoints::PerTensor(zb[0])
    };
    let want = reference::gemm_i32(
        a.view(),
        za,
        b.view(),
        if zb.is_empty() { &[] } else { &zb },
    );
    let pb = PackedB::with_isa(b.view(), zp, isa).unwrap();
    let opts = GemmOptions { threads };
    let mut out = Array2::zeros((m, n));
    gemm_i32(a.view(), za, &pb, out.view_mut(), &opts).unwrap();
    assert_eq!(out, want, "{isa} i32 {m}x{n}x{k}");
    // The same into a view whose rows are longer than N (row stride N + 3).
    let mut wide = Array2::from_elem((m, n + 3), 7i32);
    gemm_i32(
        a.view(),
        za,
        &pb,
        wide.slice_mut(ndarray::s![.., ..n]),
        &opts,
    )
    .unwrap();
    assert_eq!(wide.slice(ndarray::s![.., ..n]), want, "{isa} strided i32");
    assert!(wide.slice(ndarray::s![.., n..]).iter().all(|&v| v == 7));

    // Requantized u8 output with bias and per-column multipliers, bit-exact against the
    // reference requantization of the reference accumulators.
    let mult: Vec<f32> = (0..n).map(|j| 1.0 / (1000.0 + 37.0 * j as f32)).collect();
    let bias: Vec<i32> = (0..n).map(|j| j as i32 * 97 - 2000).collect();
    for act in [
        Activation::None,
        Activation::Relu,
        Activation::Clip { min: 10, max: 200 },
    ] {
        let rq = Requant {
            multipliers: &mult,
            zero_point: 100,
            bias: Some(&bias),
            activation: act,
        };
        let mut q = Array2::<u8>::zeros((m, n));
        gemm_requant(a.view(), za, &pb, &rq, q.view_mut(), &opts).unwrap();
        let (lo, hi) = match act {
            Activation::None => (0, 255),
            Activation::Relu => (100, 255),
            Activation::Clip { min, max } => (min, max),
        };
        let wantq = Array2::from_shape_fn((m, n), |(i, j)| {
            reference::requant(want[[i, j]], bias[j], mult[j], 100, lo, hi) as u8
        });
        assert_eq!(q, wantq, "{isa} requant {act:?}");
    }
    // i8 output, negative zero point, per-column multipliers.
    let rq = Requant {
        multipliers: &mult,
        zero_point: -20,
        bias: Some(&bias),
        activation: Activation::None,
    };
    let mut q = Array2::<i8>::zeros((m, n));
    gemm_requant(a.view(), za, &pb, &rq, q.view_mut(), &opts).unwrap();
    let wantq = Array2::from_shape_fn((m, n), |(i, j)| {
        reference::requant(want[[i, j]], bias[j], mult[j], -20, -128, 127) as i8
    });
    assert_eq!(q, wantq, "{isa} requant i8");
    let mut f = Array2::<f32>::zeros((m, n));
    let dq = Dequant {
        multipliers: &[0.5],
        bias: None,
    };
    gemm_f32(a.view(), za, &pb, &dq, f.view_mut(), &opts).unwrap();
    assert_eq!(f, want.mapv(|v| v as f32 * 0.5), "{isa} f32");
}

/// `narrow`: weights in −64..=64 (7 bits, as onnxruntime's `reduce_range` writes them),
/// which `avx2`'s direct tile multiplies as bytes.
fn check_conv(
    isa: Isa,
    depthwise: bool,
    (c, h, w, k, s, pd, d): (usize, usize, usize, usize, usize, usize, usize),
    seed: u64,
    narrow: bool,
) {
    let (ci, co, g) = if depthwise { (c, c, c) } else { (c, c + 3, 1) };
    let x = Array4::from_shape_vec((1, ci, h, w), bytes(ci * h * w, seed, 2)).unwrap();
    let wt = Array4::from_shape_vec((co, ci / g, k, k), bytes(co * ci / g * k * k, seed ^ 5, 2))
        .unwrap()
        .mapv(|v| if narrow { (v as i8) / 2 } else { v as i8 });
    let p = ConvParams {
        group: g,
        strides: [s, s],
        pads: [pd, pd + 1, pd, pd],
        dilations: [d, d],
    };
    let zw: Vec<i8> = bytes(co, seed ^ 3, 0)
        .into_iter()
        .map(|v| v as i8)
        .collect();
    // Small positive parameters on an available path: packing must succeed.
    let pc = PackedConv::with_isa(wt.view(), ZeroPoints::PerColumn(&zw), p, isa)
        .unwrap_or_else(|e| panic!("{isa}: PackedConv of {p:?}, k {k}: {e}"));
    assert_eq!(pc.isa(), isa, "packed for another path");
    // The one refusal expected: a dilated kernel larger than the padded input (pads are
    // top pd, left pd + 1, bottom pd, right pd).
    let span = d * (k - 1) + 1;
    let (ph, pw) = (h + 2 * pd, w + 2 * pd + 1);
    let (oh, ow) = match pc.output_hw(h, w) {
        Ok(hw) => hw,
        Err(e) => {
            assert!(
                ph < span || pw < span,
                "{isa}: output_hw({h}, {w}) refused a kernel that fits: {e}"
            );
            assert_eq!(
                e.kind(),
                edgeml_core::ErrorKind::ShapeMismatch,
                "{isa}: {e}"
            );
            return;
        }
    };
    assert_eq!(
        (oh, ow),
        ((ph - span) / s + 1, (pw - span) / s + 1),
        "{isa}"
    );
    let want = reference::conv_i32(x.view(), 9u8, wt.view(), &zw, &p);
    let mut y = Array4::zeros((1, co, oh, ow));
    conv_integer(x.view(), 9u8, &pc, y.view_mut(), &GemmOptions::default()).unwrap();
    assert_eq!(y, want, "{isa} conv");
    let mult = vec![0.003f32; co];
    let rq = Requant {
        multipliers: &mult,
        zero_point: -3,
        bias: None,
        activation: Activation::None,
    };
    let mut q = Array4::<i8>::zeros((1, co, oh, ow));
    qlinear_conv(
        x.view(),
        9u8,
        &pc,
        &rq,
        q.view_mut(),
        &GemmOptions { threads: 2 },
    )
    .unwrap();
    let wantq = want.mapv(|v| reference::requant(v, 0, 0.003, -3, -128, 127) as i8);
    assert_eq!(q, wantq, "{isa} qlinear_conv");
}

macro_rules! kernel_props {
    ($name:ident, $isa:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn worst_case_vpmaddubsw() {
                if !runs_here($isa, concat!(stringify!($name), "::worst_case_vpmaddubsw")) {
                    return;
                }
                for &(m, n, k) in &[(1, 1, 2), (3, 17, 64), (9, 33, 1024), (40, 33, 1030), (20, 70, 600), (2, 5, 4099)] {
                    worst_case($isa, m, n, k);
                }
            }

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(48))]

                #[test]
                fn gemm_u8i8(m in shape(), n in shape(), k in shape(), seed: u64, mode in 0u8..3, pc: bool) {
                    if runs_here($isa, concat!(stringify!($name), "::gemm_u8i8")) {
                        check_gemm($isa, (m, n, k), seed, mode, pc, 1, |v| v, |v| v as i8);
                    }
                }

                #[test]
                fn gemm_i8i8(m in shape(), n in shape(), k in shape(), seed: u64, mode in 0u8..3, pc: bool) {
                    if runs_here($isa, concat!(stringify!($name), "::gemm_i8i8")) {
                        check_gemm($isa, (m, n, k), seed, mode, pc, 2, |v| v as i8, |v| v as i8);
                    }
                }

                #[test]
                fn gemm_u8u8(m in shape(), n in shape(), k in shape(), seed: u64, mode in 0u8..3, pc: bool) {
                    if runs_here($isa, concat!(stringify!($name), "::gemm_u8u8")) {
                        check_gemm($isa, (m, n, k), seed, mode, pc, 1, |v| v, |v| v);
                    }
                }

                #[test]
                fn conv(c in prop_oneof![1usize..9, Just(4usize), Just(8), Just(12)], h in 1usize..12, w in 1usize..12, k in 1usize..4, s in 1usize..3, pd in 0usize..2, d in 1usize..3, seed: u64, dw: bool, narrow: bool) {
                    if runs_here($isa, concat!(stringify!($name), "::conv")) {
                        check_conv($isa, dw, (c, h, w, k, s, pd, d), seed, narrow);
                    }
                }
            }
        }
    };
}

kernel_props!(scalar, Isa::Scalar);
kernel_props!(avx2, Isa::Avx2);
kernel_props!(avxvnni, Isa::AvxVnni);
kernel_props!(amx, Isa::Amx);
kernel_props!(avx512vnni, Isa::Avx512Vnni);
kernel_props!(neon, Isa::Neon);
kernel_props!(neon_dotprod, Isa::NeonDotprod);

/// Runs fixed GEMM and convolution cases on every path this CPU has (each packed for
/// exactly that path) and prints one line per path of this architecture: `RAN:` or
/// `SKIP: ... this CPU lacks it`. `.ci/run` runs it with `--nocapture`.
#[test]
fn every_available_path_is_exercised() {
    let av = Isa::available();
    assert_eq!(av.last(), Some(&Isa::Scalar), "{av:?}");
    assert_eq!(av.first(), Some(&Isa::best()), "{av:?}");
    #[cfg(target_arch = "x86_64")]
    {
        let arch = [
            Isa::Amx,
            Isa::Avx512Vnni,
            Isa::AvxVnni,
            Isa::Avx2,
            Isa::Scalar,
        ];
        assert_eq!(
            av.contains(&Isa::Avx2),
            std::arch::is_x86_feature_detected!("avx2")
        );
        report(&arch);
    }
    #[cfg(target_arch = "aarch64")]
    {
        let arch = [Isa::NeonDotprod, Isa::Neon, Isa::Scalar];
        assert!(av.contains(&Isa::Neon));
        // The dotprod path is picked exactly when the CPU reports dotprod (so it is
        // skipped as a Cortex-A72 and runs as a Cortex-A76 under qemu).
        assert_eq!(
            av.contains(&Isa::NeonDotprod),
            std::arch::is_aarch64_feature_detected!("dotprod")
        );
        report(&arch);
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    report(&[Isa::Scalar]);
}

fn report(arch: &[Isa]) {
    for &isa in arch {
        if !isa.is_available() {
            println!("SKIP: int8 kernel tests on {isa}: need {isa}, this CPU lacks it");
            continue;
        }
        worst_case(isa, 3, 17, 64);
        check_gemm(isa, (5, 33, 70), 11, 1, true, 2, |v| v, |v| v as i8);
        check_gemm(isa, (4, 9, 13), 12, 0, false, 1, |v| v as i8, |v| v);
        for dw in [false, true] {
            for narrow in [false, true] {
                check_conv(isa, dw, (8, 9, 7, 3, 1, 1, 1), 13, narrow);
                check_conv(isa, dw, (5, 6, 11, 2, 2, 0, 2), 14, narrow);
            }
        }
        println!("RAN: int8 kernel tests on {isa}");
    }
}

/// The extremes of 7-bit weights on every path: inputs all 255 against weights all 64
/// or all −64 (pair sums ±32 640, the most `avx2`'s byte tile can meet without
/// saturating), and mixed signs, against the reference.
#[test]
fn narrow_weights_at_their_extremes_are_exact() {
    let (ci, co, h, w) = (16, 9, 5, 13);
    let x = Array4::<u8>::from_elem((1, ci, h, w), 255);
    let p = ConvParams {
        pads: [1, 1, 1, 1],
        ..ConvParams::default()
    };
    for isa in Isa::available() {
        for fill in [64i8, -64] {
            let wt = Array4::from_shape_fn((co, ci, 3, 3), |(o, c, ky, kx)| {
                if o % 3 == 2 && (c + ky + kx) % 2 == 1 {
                    -fill
                } else {
                    fill
                }
            });
            let zw = vec![0i8; co];
            let pc = PackedConv::with_isa(wt.view(), ZeroPoints::PerColumn(&zw), p, isa).unwrap();
            let (oh, ow) = pc.output_hw(h, w).unwrap();
            let want = reference::conv_i32(x.view(), 0u8, wt.view(), &zw, &p);
            let mut y = Array4::zeros((1, co, oh, ow));
            conv_integer(x.view(), 0u8, &pc, y.view_mut(), &GemmOptions::default()).unwrap();
            assert_eq!(y, want, "{isa}, weights ±{fill}");
        }
    }
}

/// Dense convolutions with 64-channel groups, unit horizontal stride and symmetric
/// weights (the shapes `amx`'s implicit-GEMM convolution takes; the other paths run
/// their own kernels on them): i32 and requantized u8/i8 outputs against the reference,
/// batch 2, 1 and 2 threads.
fn check_wide_conv(
    isa: Isa,
    (cig, g, co, h, w, k, sh, pd, d): (
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
    ),
    seed: u64,
    signed: bool,
) {
    let ci = cig * g;
    let co = co * g;
    let p = ConvParams {
        group: g,
        strides: [sh, 1],
        pads: [pd, pd + 1, pd, pd],
        dilations: [d, d],
    };
    let wt = Array4::from_shape_vec((co, cig, k, k), bytes(co * cig * k * k, seed ^ 5, 2))
        .unwrap()
        .mapv(|v| v as i8);
    let pc = PackedConv::with_isa(wt.view(), ZeroPoints::PerTensor(0i8), p, isa).unwrap();
    let Ok((oh, ow)) = pc.output_hw(h, w) else {
        // Covered by check_conv: the kernel does not fit (a refusal, not a skip of a check).
        return;
    };
    let xb = bytes(2 * ci * h * w, seed, 2);
    let zw = vec![0i8; co];
    if signed {
        let x = Array4::from_shape_vec((2, ci, h, w), xb)
            .unwrap()
            .mapv(|v| v as i8);
        let want = reference::conv_i32(x.view(), -7i8, wt.view(), &zw, &p);
        for threads in [1, 2] {
            let mut y = Array4::zeros((2, co, oh, ow));
            conv_integer(x.view(), -7i8, &pc, y.view_mut(), &GemmOptions { threads }).unwrap();
            assert_eq!(y, want, "{isa} i8 conv, {threads} threads");
        }
    } else {
        let x = Array4::from_shape_vec((2, ci, h, w), xb).unwrap();
        let want = reference::conv_i32(x.view(), 9u8, wt.view(), &zw, &p);
        let mut y = Array4::zeros((2, co, oh, ow));
        conv_integer(x.view(), 9u8, &pc, y.view_mut(), &GemmOptions::default()).unwrap();
        assert_eq!(y, want, "{isa} u8 conv");
        let mult: Vec<f32> = (0..co).map(|j| 0.0005 + 0.0001 * j as f32).collect();
        let bias: Vec<i32> = (0..co).map(|j| j as i32 * 37 - 500).collect();
        let rq = Requant {
            multipliers: &mult,
            zero_point: 3,
            bias: Some(&bias),
            activation: Activation::None,
        };
        for threads in [1, 2] {
            let mut q = Array4::<u8>::zeros((2, co, oh, ow));
            qlinear_conv(
                x.view(),
                9u8,
                &pc,
                &rq,
                q.view_mut(),
                &GemmOptions { threads },
            )
            .unwrap();
            let wantq = ndarray::Zip::indexed(&want).map_collect(|(_, c, _, _), &v| {
                reference::requant(v, bias[c], mult[c], 3, 0, 255) as u8
            });
            assert_eq!(q, wantq, "{isa} qlinear_conv, {threads} threads");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn wide_conv_every_path(cig in prop_oneof![Just(64usize), Just(128)], g in 1usize..3, co in 1usize..40, h in 1usize..10, w in 1usize..36, k in 1usize..4, sh in 1usize..3, pd in 0usize..2, d in 1usize..3, seed: u64, signed: bool) {
        for isa in Isa::available() {
            check_wide_conv(isa, (cig, g, co, h, w, k, sh, pd, d), seed, signed);
        }
    }
}

/// A 1×1 convolution with K = 256 (the smallest `amx` takes without a spatial kernel),
/// odd sizes, every available path.
#[test]
fn wide_pointwise_conv_every_path() {
    for isa in Isa::available() {
        for signed in [false, true] {
            check_wide_conv(isa, (256, 1, 37, 3, 21, 1, 1, 0, 1), 77, signed);
        }
    }
}

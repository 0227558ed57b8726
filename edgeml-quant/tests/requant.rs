//! Requantization against a float64 reference and error handling of the public API.
#![allow(missing_docs, clippy::unwrap_used)]

use edgeml_core::ErrorKind;
use edgeml_quant::*;
use ndarray::{Array2, Array4};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The f32 requantization (as onnxruntime computes it) equals the float64 ideal
    /// except within f32 rounding of a .5 tie, where it may differ by one.
    #[test]
    fn requant_matches_f64(acc in -(1i32 << 24)..(1i32 << 24), e in -20i32..0, frac in 1.0f32..2.0, zp in 0i32..256) {
        let mult = frac * 2f32.powi(e);
        let got = reference::requant(acc, 0, mult, zp, 0, 255);
        let x = f64::from(acc) * f64::from(mult);
        let want = reference::requant_f64(i64::from(acc), f64::from(mult), zp, 0, 255);
        let near_tie = ((x - x.floor()) - 0.5).abs() < 1e-6 * x.abs().max(1.0);
        if near_tie {
            prop_assert!((got - want).abs() <= 1);
        } else {
            prop_assert_eq!(got, want);
        }
    }
}

#[test]
fn requant_saturates_and_ties_to_even() {
    assert_eq!(reference::requant(5, 0, 0.5, 0, -128, 127), 2); // 2.5 -> 2
    assert_eq!(reference::requant(7, 0, 0.5, 0, -128, 127), 4); // 3.5 -> 4
    assert_eq!(reference::requant(-5, 0, 0.5, 0, -128, 127), -2);
    assert_eq!(reference::requant(i32::MAX, 0, 1e30, 3, 0, 255), 255);
    assert_eq!(reference::requant(i32::MIN, 0, 1e30, 3, 0, 255), 0);
}

#[test]
fn errors_are_typed() {
    let b = Array2::<i8>::zeros((4, 3));
    let e = PackedB::new(b.view(), ZeroPoints::PerColumn(&[0, 0])).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
    let pb = PackedB::new(b.view(), ZeroPoints::PerTensor(0)).unwrap();
    let a = Array2::<u8>::zeros((2, 5));
    let mut out = Array2::<i32>::zeros((2, 3));
    assert_eq!(
        gemm_u8i8(a.view(), 0, &pb, out.view_mut())
            .unwrap_err()
            .kind(),
        ErrorKind::ShapeMismatch
    );
    let a = Array2::<u8>::zeros((2, 4));
    let mut bad = Array2::<i32>::zeros((3, 3));
    assert_eq!(
        gemm_u8i8(a.view(), 0, &pb, bad.view_mut())
            .unwrap_err()
            .kind(),
        ErrorKind::ShapeMismatch
    );
    let mut q = Array2::<u8>::zeros((2, 3));
    let rq = Requant {
        multipliers: &[f32::NAN],
        zero_point: 0,
        bias: None,
        activation: Activation::None,
    };
    let e = gemm_requant(a.view(), 0, &pb, &rq, q.view_mut(), &GemmOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonFinite);
    let rq = Requant {
        multipliers: &[1.0],
        zero_point: 300,
        bias: None,
        activation: Activation::None,
    };
    let e = gemm_requant(a.view(), 0, &pb, &rq, q.view_mut(), &GemmOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let rq = Requant {
        multipliers: &[1.0, 2.0],
        zero_point: 0,
        bias: None,
        activation: Activation::None,
    };
    let e = gemm_requant(a.view(), 0, &pb, &rq, q.view_mut(), &GemmOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch);

    let w = Array4::<i8>::zeros((4, 2, 3, 3));
    let p = ConvParams {
        group: 0,
        ..ConvParams::default()
    };
    assert_eq!(
        PackedConv::new(w.view(), ZeroPoints::PerTensor(0), p)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    let pc = PackedConv::new(w.view(), ZeroPoints::PerTensor(0), ConvParams::default()).unwrap();
    let x = Array4::<u8>::zeros((1, 3, 5, 5));
    let mut y = Array4::<i32>::zeros((1, 4, 3, 3));
    let e = conv_integer(x.view(), 0, &pc, y.view_mut(), &GemmOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
    let x = Array4::<u8>::zeros((1, 2, 2, 2));
    assert_eq!(
        pc.output_hw(2, 2).unwrap_err().kind(),
        ErrorKind::ShapeMismatch
    );
    let mut y = Array4::<i32>::zeros((1, 4, 0, 0));
    assert!(conv_integer(x.view(), 0, &pc, y.view_mut(), &GemmOptions::default()).is_err());
    for isa in Isa::ALL {
        assert_eq!(Isa::from_name(isa.name()), Some(isa));
        if !isa.is_available() {
            let e = PackedB::with_isa(b.view(), ZeroPoints::PerTensor(0), isa).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported);
        }
    }
    assert_eq!(Isa::from_name("avx9"), None);
}

#[test]
fn hostile_conv_parameters_are_errors() {
    let w = Array4::<i8>::zeros((2, 1, 3, 3));
    let p = ConvParams {
        group: 2,
        pads: [usize::MAX, 0, 1, 0],
        ..ConvParams::default()
    };
    let e = PackedConv::new(w.view(), ZeroPoints::PerTensor(0), p).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded);
    // Huge padding with a huge stride: a tiny output but a huge padded plane.
    let big = 1usize << 30;
    let p = ConvParams {
        group: 2,
        pads: [big, big, big, big],
        strides: [big, big],
        ..ConvParams::default()
    };
    let pc = PackedConv::new(w.view(), ZeroPoints::PerTensor(0), p).unwrap();
    let (oh, ow) = pc.output_hw(4, 4).unwrap();
    let x = Array4::<u8>::zeros((1, 2, 4, 4));
    let mut y = Array4::<i32>::zeros((1, 2, oh, ow));
    let e = conv_integer(x.view(), 0, &pc, y.view_mut(), &GemmOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded);
}

#[test]
fn large_kernel_im2col_is_chunked() {
    // K = 3·31·31 with C_in not a multiple of 4 takes the im2col path; a 48×48 input
    // gives more pixels than one 4 MiB chunk holds at small K, exercised with K large.
    let w = Array4::from_shape_fn((5, 3, 31, 31), |(a, b, c, d)| {
        ((a + b * 3 + c * 5 + d * 7) % 255) as i8
    });
    let x = Array4::from_shape_fn((1, 3, 48, 48), |(_, b, c, d)| {
        ((b * 11 + c * 13 + d * 17) % 256) as u8
    });
    let p = ConvParams {
        pads: [15, 15, 15, 15],
        ..ConvParams::default()
    };
    let want = reference::conv_i32(x.view(), 7u8, w.view(), &[1i8], &p);
    let pc = PackedConv::new(w.view(), ZeroPoints::PerTensor(1), p).unwrap();
    let mut y = Array4::<i32>::zeros(want.dim());
    conv_integer(x.view(), 7, &pc, y.view_mut(), &GemmOptions { threads: 2 }).unwrap();
    assert_eq!(y, want);
}

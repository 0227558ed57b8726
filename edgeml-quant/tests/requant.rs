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

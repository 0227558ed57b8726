//! `edgeml_quant::math` against onnxruntime's own `compute_scale_zp` and
//! `quantize_data` (`tests/fixtures/quant_math/`, made by
//! `scripts/make_quant_math_fixtures.py`): scales bit-exact, zero points and
//! quantized values equal.

use edgeml_core::{DType, ErrorKind};
use edgeml_quant::math::{compute_scale_zp, per_axis_params, quantize, quantize_bias};
use ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/quant_math")
}

fn qtype(s: &str) -> DType {
    match s {
        "u8" => DType::U8,
        "i8" => DType::I8,
        "u16" => DType::U16,
        "i16" => DType::I16,
        _ => panic!("qtype {s}"),
    }
}

fn nums<T: std::str::FromStr>(s: &str) -> Vec<T>
where
    T::Err: std::fmt::Debug,
{
    s.split_whitespace()
        .map(|v| v.parse().expect("number"))
        .collect()
}

#[test]
fn scale_zp_matches_onnxruntime() {
    let text = std::fs::read_to_string(fixtures().join("scale_zp.txt")).expect("fixture");
    let mut n = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (lo, hi): (f64, f64) = (f[0].parse().unwrap(), f[1].parse().unwrap());
        let p = compute_scale_zp(lo as f32, hi as f32, qtype(f[2]), f[3] == "1", f[4] == "1")
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        let scale: f64 = f[5].parse().unwrap();
        let zp: i32 = f[6].parse().unwrap();
        assert_eq!(p.scales()[0], scale as f32, "scale of {line}");
        assert_eq!(p.zero_points()[0], zp, "zero point of {line}");
        n += 1;
    }
    assert!(n >= 500, "{n} cases");
}

#[test]
fn per_channel_weights_match_onnxruntime() {
    let text = std::fs::read_to_string(fixtures().join("per_channel.txt")).expect("fixture");
    for line in text.lines().filter(|l| !l.is_empty()) {
        let p: Vec<&str> = line.split('|').map(str::trim).collect();
        let shape: Vec<usize> = nums(p[0]);
        let axis: usize = p[1].parse().unwrap();
        let t: Vec<&str> = p[2].split_whitespace().collect();
        let data: Vec<f32> = nums::<f64>(p[3]).into_iter().map(|v| v as f32).collect();
        let data = ArrayD::from_shape_vec(IxDyn(&shape), data).unwrap();
        let params = per_axis_params(data.view(), axis, qtype(t[0]), t[1] == "1", false).unwrap();
        let scales: Vec<f32> = nums::<f64>(p[4]).into_iter().map(|v| v as f32).collect();
        assert_eq!(params.scales(), &scales[..], "{line}");
        assert_eq!(params.zero_points(), &nums::<i32>(p[5])[..], "{line}");
        let q = quantize(data.view(), &params).unwrap();
        assert_eq!(
            q.iter().copied().collect::<Vec<_>>(),
            nums::<i32>(p[6]),
            "{line}"
        );
    }
}

#[test]
fn bad_ranges_are_typed_errors_never_nan_scales() {
    let e = compute_scale_zp(f32::NAN, 1.0, DType::U8, false, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonFinite);
    let e = compute_scale_zp(0.0, f32::INFINITY, DType::U8, false, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonFinite);
    let e = compute_scale_zp(2.0, 1.0, DType::U8, false, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = compute_scale_zp(0.0, 1.0, DType::F32, false, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let p = compute_scale_zp(0.0, 0.0, DType::U8, false, false).unwrap();
    assert_eq!((p.scales()[0], p.zero_points()[0]), (1.0, 0));
    let w = ArrayD::from_shape_vec(IxDyn(&[2]), vec![1.0, f32::NAN]).unwrap();
    let e = per_axis_params(w.view(), 0, DType::I8, true, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonFinite);
}

#[test]
fn quantize_rounds_half_to_even_and_saturates() {
    let p = compute_scale_zp(-1.0, 1.0, DType::I8, true, false).unwrap();
    let s = p.scales()[0];
    let x =
        ArrayD::from_shape_vec(IxDyn(&[5]), vec![0.5 * s, 1.5 * s, -2.5 * s, 10.0, -10.0]).unwrap();
    let q = quantize(x.view(), &p).unwrap();
    assert_eq!(q.as_slice().unwrap(), &[0, 2, -2, 127, -128]);
}

#[test]
fn bias_is_int32_with_product_scale() {
    let w = edgeml_core::QuantParams::per_axis(vec![0.5, 0.25], vec![0, 0], 0, DType::I8).unwrap();
    let b = quantize_bias(&[1.0, -1.0], 0.1, &w).unwrap();
    assert_eq!(b.values, vec![20, -40]);
    assert_eq!(b.params.scales(), &[0.1f32 * 0.5, 0.1f32 * 0.25]);
    assert_eq!(b.params.qtype(), DType::I32);
    let big = quantize_bias(&[1e30], 1e-3, &w.clone()).unwrap_err();
    assert_eq!(big.kind(), ErrorKind::ShapeMismatch);
    let t = edgeml_core::QuantParams::per_tensor(1e-6, 0, DType::I8).unwrap();
    let b = quantize_bias(&[1e30, 1.0], 1e-3, &t).unwrap();
    assert_eq!((b.values[0], b.saturated), (i32::MAX, 1));
    assert_eq!(
        quantize_bias(&[f32::NAN], 1.0, &t).unwrap_err().kind(),
        ErrorKind::NonFinite
    );
}

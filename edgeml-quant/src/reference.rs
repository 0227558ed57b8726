//! Plain reference implementations ("scalar twins") used by tests and benchmarks.
//!
//! They follow the ONNX definitions literally, without packing or zero-point folding.

use crate::kernels::pack::QElem;
use ndarray::{Array2, ArrayView2};

/// `Σ_k (a[m,k] − za)·(b[k,n] − zb[n])`, wrapping in i32 (ONNX `MatMulInteger`).
pub fn gemm_i32<TA: QElem, TB: QElem>(
    a: ArrayView2<'_, TA>,
    za: TA,
    b: ArrayView2<'_, TB>,
    zb: &[TB],
) -> Array2<i32> {
    let (m, k) = a.dim();
    let n = b.ncols();
    let za = za.to_i32();
    Array2::from_shape_fn((m, n), |(i, j)| {
        let z = zb[if zb.len() == 1 { 0 } else { j }].to_i32();
        (0..k).fold(0i32, |s, kk| {
            s.wrapping_add((a[[i, kk]].to_i32() - za).wrapping_mul(b[[kk, j]].to_i32() - z))
        })
    })
}

/// Requantization of one accumulator exactly as the kernels define it (f32 multiply,
/// clamp, round half to even, add zero point).
pub fn requant(acc: i32, bias: i32, mult: f32, zp: i32, lo: i32, hi: i32) -> i32 {
    let x = (acc.wrapping_add(bias) as f32 * mult)
        .max((lo - zp) as f32)
        .min((hi - zp) as f32);
    x.round_ties_even() as i32 + zp
}

/// The float64 ideal of a requantization: `clamp(round_half_even(acc·mult) + zp)`.
pub fn requant_f64(acc: i64, mult: f64, zp: i32, lo: i32, hi: i32) -> i32 {
    let x = (acc as f64 * mult).round_ties_even() + f64::from(zp);
    x.clamp(f64::from(lo), f64::from(hi)) as i32
}

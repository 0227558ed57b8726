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

/// Direct NCHW convolution `Σ (x − zx)(w − zw[oc])` in wrapping i32 (ONNX
/// `ConvInteger`), `pads = [top, left, bottom, right]`.
pub fn conv_i32<TX: QElem, TW: QElem>(
    x: ndarray::ArrayView4<'_, TX>,
    zx: TX,
    w: ndarray::ArrayView4<'_, TW>,
    zw: &[TW],
    p: &crate::ConvParams,
) -> ndarray::Array4<i32> {
    let (n, _, h, wd) = x.dim();
    let (co, cig, kh, kw) = w.dim();
    let g = p.group;
    let cog = co / g;
    let oh = (h + p.pads[0] + p.pads[2] - (p.dilations[0] * (kh - 1) + 1)) / p.strides[0] + 1;
    let ow = (wd + p.pads[1] + p.pads[3] - (p.dilations[1] * (kw - 1) + 1)) / p.strides[1] + 1;
    let zx = zx.to_i32();
    ndarray::Array4::from_shape_fn((n, co, oh, ow), |(ni, oc, oy, ox)| {
        let gi = oc / cog;
        let z = zw[if zw.len() == 1 { 0 } else { oc }].to_i32();
        let mut s = 0i32;
        for c in 0..cig {
            for ky in 0..kh {
                for kx in 0..kw {
                    let iy =
                        (oy * p.strides[0] + ky * p.dilations[0]) as isize - p.pads[0] as isize;
                    let ix =
                        (ox * p.strides[1] + kx * p.dilations[1]) as isize - p.pads[1] as isize;
                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                        continue;
                    }
                    let xv = x[[ni, gi * cig + c, iy as usize, ix as usize]].to_i32() - zx;
                    let wv = w[[oc, c, ky, kx]].to_i32() - z;
                    s = s.wrapping_add(xv.wrapping_mul(wv));
                }
            }
        }
        s
    })
}

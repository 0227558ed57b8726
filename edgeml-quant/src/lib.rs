#![doc = include_str!("../README.md")]
#![doc(test(attr(deny(warnings))))]
#![deny(unsafe_code)]

pub mod conv;
mod error;
#[cfg(feature = "onnx")]
pub mod fp16;
pub mod gemm;
pub mod kernels;
pub mod math;
pub mod observe;
#[cfg(feature = "onnx")]
pub mod onnx;
#[cfg(feature = "onnx")]
pub mod quantize;
#[doc(hidden)]
pub mod reference;
pub mod sparse;

pub use conv::{ConvParams, PackedConv, conv_integer, qlinear_conv};
pub use error::{Error, Result};
pub use gemm::{
    Activation, Dequant, GemmOptions, PackedB, Requant, ZeroPoints, gemm_f32, gemm_i32,
    gemm_requant, gemm_u8i8, multipliers,
};
pub use kernels::Isa;
pub use kernels::pack::QElem;
pub use observe::{Entropy, MinMax, MovingAverageMinMax, Mse, Percentile};

#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

pub use edgeml_core as core;
#[cfg(feature = "distill")]
pub use edgeml_distill as distill;
#[cfg(feature = "drift")]
pub use edgeml_drift as drift;
#[cfg(feature = "onnx")]
pub use edgeml_onnx as onnx;
#[cfg(feature = "prune")]
pub use edgeml_prune as prune;
#[cfg(feature = "quant")]
pub use edgeml_quant as quant;

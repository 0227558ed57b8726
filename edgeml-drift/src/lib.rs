#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

pub mod binning;
pub mod detect;
pub mod divergence;
mod error;
pub mod report;
pub mod rng;
pub mod sketch;
mod sort;
pub mod special;
pub mod stats;

pub use edgeml_core::DriftDetector;
pub use error::{Error, Result};

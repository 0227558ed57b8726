#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

mod dtype;
mod error;
mod quant_params;
mod traits;

pub use dtype::DType;
pub use error::{Error, ErrorKind, HasErrorKind, Result};
pub use half::{bf16, f16};
pub use quant_params::QuantParams;
pub use traits::{DistillLoss, DriftDetector, Observer, Pruner, Schedule, Targets, WeightedSum};

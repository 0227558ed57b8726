#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

pub mod binning;
pub mod detect;
pub mod divergence;
mod error;
pub mod report;
// Hidden, not private: the tests and benches draw the same seeded streams as
// scripts/make_drift_fixtures.py. Not a stable API.
#[doc(hidden)]
pub mod rng;
pub mod sketch;
mod sort;
mod special;
pub mod stats;

pub use edgeml_core::DriftDetector;
pub use error::{Error, Result};

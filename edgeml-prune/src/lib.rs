#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

pub mod controller;
mod error;
pub mod global;
pub mod masks;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod pattern;
pub mod schedule;
pub mod select;

pub use controller::{Controller, ControllerConfig, LayerConfig, Role, Scope, SparsityReport};
pub use edgeml_core::{Error as CoreError, ErrorKind, HasErrorKind, Pruner, Schedule};
pub use error::{Error, Result};
pub use global::{global_magnitude, global_magnitude_into};
#[cfg(feature = "onnx")]
pub use onnx::{PruneConfig, PruneReport, prune_model};
pub use pattern::Pattern;
pub use schedule::{ConstantSparsity, GradualCubic, PolynomialDecay};
pub use select::{Amount, l1_unstructured};

#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod ce;
mod error;
#[cfg(feature = "onnx")]
mod export;
mod feature;
#[cfg(feature = "onnx")]
mod infer;
mod kd;
mod math;
mod mlp;
mod prune;
mod rng;
mod schedule;
mod soft;
mod teacher;
mod train;

pub use ce::{CrossEntropy, CrossEntropyConfig};
pub use edgeml_core::{DistillLoss, ErrorKind, HasErrorKind, Targets, WeightedSum};
pub use error::{Error, Result};
#[cfg(feature = "onnx")]
pub use export::{INPUT_NAME, OUTPUT_NAME};
pub use feature::{AttentionTransfer, CosineEmbedding, Mse};
#[cfg(feature = "onnx")]
pub use infer::{SoftTargets, Teacher, TeacherOptions, detect_output_kind};
pub use kd::{Kd, KdConfig, KdValue};
pub use mlp::{Mlp, Standardization};
pub use prune::PruneDuringTraining;
pub use schedule::{Schedule, cosine, linear};
pub use soft::{Divergence, SoftConfig, SoftLoss};
pub use teacher::TeacherOutput;
pub use train::{
    EpochMetrics, Optimizer, TrainConfig, TrainData, TrainReport, accuracy, agreement, argmax,
    train,
};

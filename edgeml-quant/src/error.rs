//! The error type of `edgeml-quant`.

use edgeml_core::{ErrorKind, HasErrorKind};

/// Errors reported by `edgeml-quant`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two shapes that must agree do not; the message names both.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// An argument is out of its domain; the message names it and its value.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A scale or other float parameter is NaN or infinite.
    #[error("non-finite value: {0}")]
    NonFinite(String),
    /// The requested kernel ISA is not available on this CPU or build.
    #[error("kernel {0} is not available on this machine")]
    IsaUnavailable(&'static str),
    /// A size would overflow or exceed a limit.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// Quantization was asked to calibrate on no data at all.
    #[error("the calibration set is empty: give at least one batch")]
    EmptyCalibration,
    /// The model or a requested mode is not supported; the message says what.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Planning or running the model failed (during calibration); `kind` is the
    /// model error's own kind.
    #[error("{message}")]
    Model {
        /// The kind of the underlying `edgeml-onnx` error.
        kind: ErrorKind,
        /// What went wrong, naming the node or value.
        message: String,
    },
}

impl Error {
    /// The family-wide kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Shape(_) => ErrorKind::ShapeMismatch,
            Error::Invalid(_) => ErrorKind::InvalidInput,
            Error::NonFinite(_) => ErrorKind::NonFinite,
            Error::IsaUnavailable(_) => ErrorKind::Unsupported,
            Error::Limit(_) => ErrorKind::LimitExceeded,
            Error::EmptyCalibration => ErrorKind::InvalidInput,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::Model { kind, .. } => *kind,
        }
    }
}

impl HasErrorKind for Error {
    fn kind(&self) -> ErrorKind {
        Error::kind(self)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

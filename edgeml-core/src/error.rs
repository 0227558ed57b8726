//! The family-wide error kind and this crate's error type.

use alloc::string::String;

/// What went wrong, independent of which edgeml crate reported it.
///
/// Every error type of the family implements [`HasErrorKind`], so callers can branch on
/// the kind without matching strings. New kinds may be added in minor releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An argument is out of its domain (a negative scale, a zero point out of range,
    /// an empty sample where one is required).
    InvalidInput,
    /// Shapes or lengths that must agree do not.
    ShapeMismatch,
    /// A value is NaN or infinite where a finite value is required.
    NonFinite,
    /// A model file is malformed: bad protobuf, inconsistent tensors, cycles, dangling
    /// inputs.
    InvalidModel,
    /// A configured limit (size, element count, nesting depth) would be exceeded.
    LimitExceeded,
    /// A path points outside the folder it must stay in.
    UnsafePath,
    /// The operation, operator, data type or attribute combination is not supported.
    Unsupported,
    /// Reading or writing a file failed.
    Io,
    /// A numerical procedure did not converge or lost too much precision.
    Numerical,
    /// The caller cancelled the operation (e.g. a model run) from another thread.
    Cancelled,
    /// The operation did not finish before its deadline.
    DeadlineExceeded,
    /// A bug in edgeml: please report it.
    Internal,
}

impl core::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = match self {
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::ShapeMismatch => "shape mismatch",
            ErrorKind::NonFinite => "non-finite value",
            ErrorKind::InvalidModel => "invalid model",
            ErrorKind::LimitExceeded => "limit exceeded",
            ErrorKind::UnsafePath => "unsafe path",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Io => "I/O error",
            ErrorKind::Numerical => "numerical error",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::DeadlineExceeded => "deadline exceeded",
            ErrorKind::Internal => "internal error",
        };
        f.write_str(s)
    }
}

/// Implemented by every error type of the edgeml family.
pub trait HasErrorKind {
    /// The kind of this error.
    fn kind(&self) -> ErrorKind;
}

/// Errors reported by `edgeml-core` itself (validation of value types).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A quantization parameter is invalid; the message names it and its value.
    #[error("invalid quantization parameters: {0}")]
    InvalidQuantParams(String),
    /// Per-axis parameter lists disagree in length.
    #[error("quantization parameter lengths disagree: {scales} scales, {zero_points} zero points")]
    LengthMismatch {
        /// Number of scales given.
        scales: usize,
        /// Number of zero points given.
        zero_points: usize,
    },
    /// A loss function (a [`DistillLoss`](crate::DistillLoss) implementation) refused
    /// its inputs; `kind` says why and the message names the offending input.
    #[error("loss: {message}")]
    Loss {
        /// The family-wide kind (shape mismatch, non-finite value, invalid input, ...).
        kind: ErrorKind,
        /// What was wrong, naming the input and the offending value or length.
        message: String,
    },
}

impl Error {
    /// The kind of this error (also available through [`HasErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidQuantParams(_) => ErrorKind::InvalidInput,
            Error::LengthMismatch { .. } => ErrorKind::ShapeMismatch,
            Error::Loss { kind, .. } => *kind,
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

//! The error type of `edgeml-drift`.

use edgeml_core::{ErrorKind, HasErrorKind};

/// Errors reported by `edgeml-drift`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A sample that must hold at least one finite value is empty (after non-finite
    /// values were removed).
    #[error("sample `{0}` is empty (no finite values)")]
    EmptySample(&'static str),
    /// An argument is out of its domain; the message names it and its value.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Lengths that must agree do not.
    #[error("length mismatch: {what} ({left} vs {right})")]
    LengthMismatch {
        /// What was being compared.
        what: &'static str,
        /// First length.
        left: usize,
        /// Second length.
        right: usize,
    },
    /// A value is NaN or infinite where a finite value is required.
    #[error("non-finite value in {0}")]
    NonFinite(&'static str),
    /// A computation would need more memory or time than the configured limit.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// The two inputs of a report disagree (columns missing, types differ).
    #[error("schema mismatch: {0}")]
    Schema(String),
    /// A sketch could not be (de)serialized.
    #[error("serialization: {0}")]
    Serde(String),
}

impl Error {
    /// The family-wide kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::EmptySample(_) | Error::InvalidArgument(_) => ErrorKind::InvalidInput,
            Error::LengthMismatch { .. } | Error::Schema(_) => ErrorKind::ShapeMismatch,
            Error::NonFinite(_) => ErrorKind::NonFinite,
            Error::LimitExceeded(_) => ErrorKind::LimitExceeded,
            Error::Serde(_) => ErrorKind::InvalidInput,
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

/// Returns `Err(EmptySample)` when `xs` is empty.
pub(crate) fn nonempty(xs: &[f64], name: &'static str) -> Result<()> {
    if xs.is_empty() {
        return Err(Error::EmptySample(name));
    }
    Ok(())
}

/// Returns `Err(NonFinite)` when `xs` holds a NaN or an infinity.
pub(crate) fn all_finite(xs: &[f64], name: &'static str) -> Result<()> {
    if xs.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite(name));
    }
    Ok(())
}

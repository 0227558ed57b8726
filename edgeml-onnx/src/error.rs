//! The error type of `edgeml-onnx`.

use edgeml_core::{ErrorKind, HasErrorKind};

/// Errors of model I/O, validation, planning and execution.
///
/// Every variant names the offending tensor, node, path or value, so the message alone
/// tells the user what to fix. Use [`Error::kind`] to branch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a valid ONNX protobuf, or the model is inconsistent.
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// A configured limit would be exceeded.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// An external-data path leaves the model's folder.
    #[error("unsafe external data path {path:?}: {reason}")]
    UnsafePath {
        /// The path as written in the model.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// An operator, data type or attribute combination that edgeml does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Shapes that must agree do not.
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),
    /// A caller-supplied argument is invalid (missing input, wrong dtype, …).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Reading or writing a file failed.
    #[error("I/O error on {path:?}: {source}")]
    Io {
        /// The file involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The run was cancelled through its [`CancelToken`](crate::CancelToken); the message
    /// names the node at which it stopped. The plan is unaffected and can run again.
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// The run's deadline ([`RunOptions::timeout`](crate::RunOptions::timeout)) passed;
    /// the message names the node that was running. The plan can run again.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// An operator implementation panicked; the panic was caught and the node is named.
    /// This is a bug in edgeml (or in a user-registered operator): please report it
    /// with the model.
    #[error("internal error (please report): {0}")]
    Internal(String),
}

impl Error {
    /// The family-wide kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidModel(_) => ErrorKind::InvalidModel,
            Error::LimitExceeded(_) => ErrorKind::LimitExceeded,
            Error::UnsafePath { .. } => ErrorKind::UnsafePath,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::ShapeMismatch(_) => ErrorKind::ShapeMismatch,
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::Io { .. } => ErrorKind::Io,
            Error::Cancelled(_) => ErrorKind::Cancelled,
            Error::DeadlineExceeded(_) => ErrorKind::DeadlineExceeded,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl HasErrorKind for Error {
    fn kind(&self) -> ErrorKind {
        Error::kind(self)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

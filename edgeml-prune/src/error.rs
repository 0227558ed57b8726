//! The error type of `edgeml-prune`.

use edgeml_core::{ErrorKind, HasErrorKind};

/// Errors reported by `edgeml-prune`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A sparsity (or schedule sparsity) outside `[0, 1)`, or a prune count above the
    /// number of candidates.
    #[error("invalid sparsity {value} for {what} (must be in [0, 1))")]
    InvalidSparsity {
        /// What the sparsity was for.
        what: String,
        /// The offending value.
        value: f64,
    },
    /// An argument is out of its domain; the message names it and its value.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A layer, a shape or a mask has no elements where some are required.
    #[error("`{0}` is empty")]
    Empty(String),
    /// Lengths or shapes that must agree do not.
    #[error("shape mismatch for `{what}`: {detail}")]
    ShapeMismatch {
        /// The layer or argument concerned.
        what: String,
        /// What disagrees, with the numbers.
        detail: String,
    },
    /// The pattern does not fit the layer's shape (an N:M group that does not divide
    /// the axis, an axis out of range, a structured pattern on a 1-D tensor).
    #[error("pattern does not fit `{what}`: {detail}")]
    PatternMismatch {
        /// The layer or argument concerned.
        what: String,
        /// Why, with the numbers.
        detail: String,
    },
    /// A weight is NaN; magnitudes cannot be ranked.
    #[error("NaN weight in `{what}` at index {index}")]
    NaN {
        /// The layer concerned.
        what: String,
        /// Flat index of the first NaN found.
        index: usize,
    },
    /// A layer name that the controller does not know, or a known layer missing from
    /// the weights passed in.
    #[error("unknown or missing layer `{0}`")]
    UnknownLayer(String),
    /// The same layer name was given twice.
    #[error("duplicate layer `{0}`")]
    DuplicateLayer(String),
    /// A mask file is malformed; the message says where.
    #[error("malformed mask file: {0}")]
    MaskFormat(String),
    /// Reading or writing a mask file failed.
    #[error("I/O error on {path}: {message}")]
    Io {
        /// The file concerned.
        path: String,
        /// The operating system's message.
        message: String,
    },
    /// An exclusion names no node, op type or weight of the model.
    #[error("exclusion `{0}` names no node, op type or weight of the model")]
    UnknownExclusion(String),
    /// The model has no prunable layer (after exclusions); the message lists what was
    /// skipped and why.
    #[error(
        "nothing to prune: no Conv/ConvTranspose/Gemm/MatMul with an f32 initializer weight left ({0})"
    )]
    NothingPrunable(String),
    /// An error in one layer of a model.
    #[error("layer `{layer}`: {error}")]
    InLayer {
        /// The node's name (its first output when unnamed).
        layer: String,
        /// The error.
        error: Box<Error>,
    },
    /// A user-supplied [`edgeml_core::Pruner`] failed.
    #[error("pruner for `{layer}` failed ({kind}): {message}")]
    Pruner {
        /// The layer concerned.
        layer: String,
        /// The kind reported by the pruner's error.
        kind: ErrorKind,
        /// The pruner's message.
        message: String,
    },
}

impl Error {
    /// The family-wide kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidSparsity { .. }
            | Error::InvalidArgument(_)
            | Error::Empty(_)
            | Error::UnknownLayer(_)
            | Error::DuplicateLayer(_)
            | Error::MaskFormat(_)
            | Error::UnknownExclusion(_)
            | Error::NothingPrunable(_) => ErrorKind::InvalidInput,
            Error::InLayer { error, .. } => error.kind(),
            Error::ShapeMismatch { .. } | Error::PatternMismatch { .. } => ErrorKind::ShapeMismatch,
            Error::NaN { .. } => ErrorKind::NonFinite,
            Error::Io { .. } => ErrorKind::Io,
            Error::Pruner { kind, .. } => *kind,
        }
    }

    pub(crate) fn shape(what: &str, detail: impl Into<String>) -> Self {
        Error::ShapeMismatch {
            what: what.to_owned(),
            detail: detail.into(),
        }
    }

    pub(crate) fn pattern(what: &str, detail: impl Into<String>) -> Self {
        Error::PatternMismatch {
            what: what.to_owned(),
            detail: detail.into(),
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

/// Checks `sparsity` is in `[0, 1)` (NaN fails).
pub(crate) fn check_sparsity(sparsity: f64, what: &str) -> Result<()> {
    if (0.0..1.0).contains(&sparsity) {
        Ok(())
    } else {
        Err(Error::InvalidSparsity {
            what: what.to_owned(),
            value: sparsity,
        })
    }
}

/// Checks that `shape` describes `len` elements and `keep` has `len` flags.
pub(crate) fn check_layer(what: &str, len: usize, shape: &[usize], keep: usize) -> Result<()> {
    let prod = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::shape(what, format!("shape {shape:?} overflows usize")))?;
    if prod != len {
        return Err(Error::shape(
            what,
            format!("shape {shape:?} has {prod} elements, weights have {len}"),
        ));
    }
    if keep != len {
        return Err(Error::shape(
            what,
            format!("mask has {keep} flags, weights have {len}"),
        ));
    }
    if len == 0 {
        return Err(Error::Empty(what.to_owned()));
    }
    Ok(())
}

/// Returns `Err(NaN)` at the first NaN of `w`.
pub(crate) fn check_no_nan(what: &str, w: &[f32]) -> Result<()> {
    match w.iter().position(|v| v.is_nan()) {
        Some(index) => Err(Error::NaN {
            what: what.to_owned(),
            index,
        }),
        None => Ok(()),
    }
}

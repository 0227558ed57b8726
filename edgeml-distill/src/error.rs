//! The error type of `edgeml-distill` and the input checks shared by the losses.

use edgeml_core::{ErrorKind, HasErrorKind};

/// Errors reported by `edgeml-distill`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Lengths that must agree do not.
    #[error("length mismatch: {what} has {got} elements, expected {expected}")]
    LengthMismatch {
        /// Which input.
        what: &'static str,
        /// The length it must have.
        expected: usize,
        /// The length it has.
        got: usize,
    },
    /// The teacher's rows are not as wide as the student's.
    #[error("class-count mismatch: the student has {student} classes, the teacher {teacher}")]
    ClassMismatch {
        /// Classes (or features) per student row.
        student: usize,
        /// Classes (or features) per teacher row.
        teacher: usize,
    },
    /// A hard label is neither a class index nor the ignore index.
    #[error("label {label} of sample {sample} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// The sample (row) index.
        sample: usize,
        /// The label.
        label: i64,
        /// The number of classes.
        classes: usize,
    },
    /// An input holds NaN or an infinity where a finite value is required.
    #[error("non-finite value {value} in {what} at index {index}")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// The flat index of the first offending element.
        index: usize,
        /// The offending value.
        value: f32,
    },
    /// A target the loss needs was not given.
    #[error("missing input: {0}")]
    Missing(&'static str),
    /// An argument or configuration value is out of its domain; the message names it.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The loss is infinite for these (finite) inputs, for example a reverse KL where
    /// the teacher gives probability 0 to a class the student does not.
    #[error("infinite loss: {0}")]
    InfiniteLoss(&'static str),
    /// A loss refused its inputs during training.
    #[error(transparent)]
    Loss(#[from] edgeml_core::Error),
    /// The ONNX runtime refused the teacher model or its inputs.
    #[error("teacher model: {message}")]
    Model {
        /// The runtime's error kind.
        kind: ErrorKind,
        /// The runtime's message.
        message: String,
    },
    /// The teacher has no output usable as soft targets (a 2-D float tensor), or the
    /// one asked for is not one.
    #[error("no teacher output to distill from: {0}")]
    NoTeacherOutput(String),
    /// A model [`Mlp::from_onnx`](crate::Mlp::from_onnx) cannot load as a dense MLP;
    /// the message names the first node or value that does not fit.
    #[error("not a dense MLP: {0}")]
    UnsupportedModel(String),
    /// Reading or writing a file (the soft-target cache, the student) failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
}

impl Error {
    /// The family-wide kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::LengthMismatch { .. } | Error::ClassMismatch { .. } => ErrorKind::ShapeMismatch,
            Error::NonFinite { .. } => ErrorKind::NonFinite,
            Error::LabelOutOfRange { .. } | Error::Missing(_) | Error::InvalidArgument(_) => {
                ErrorKind::InvalidInput
            }
            Error::InfiniteLoss(_) => ErrorKind::Numerical,
            Error::Loss(e) => e.kind(),
            Error::Model { kind, .. } => *kind,
            Error::NoTeacherOutput(_) | Error::UnsupportedModel(_) => ErrorKind::InvalidModel,
            Error::Io { .. } => ErrorKind::Io,
        }
    }
}

impl HasErrorKind for Error {
    fn kind(&self) -> ErrorKind {
        Error::kind(self)
    }
}

impl From<Error> for edgeml_core::Error {
    fn from(e: Error) -> Self {
        edgeml_core::Error::Loss {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Checks `student.len() == batch * width == grad.len()` and `width > 0`.
pub(crate) fn check_shape(student: &[f32], batch: usize, width: usize, grad: &[f32]) -> Result<()> {
    if width == 0 {
        return Err(Error::InvalidArgument(
            "width (classes or features per row) must be positive".into(),
        ));
    }
    let n = batch.checked_mul(width).ok_or_else(|| {
        Error::InvalidArgument(format!("batch {batch} × width {width} overflows"))
    })?;
    check_len("student", student.len(), n)?;
    check_len("grad", grad.len(), n)
}

pub(crate) fn check_len(what: &'static str, got: usize, expected: usize) -> Result<()> {
    if got != expected {
        return Err(Error::LengthMismatch {
            what,
            expected,
            got,
        });
    }
    Ok(())
}

/// The first non-finite element of `xs`, as an error.
/// `Σ x·0` over a slice: 0 when every entry is finite, NaN otherwise.
struct FiniteProbe<'a>(&'a [f32]);

impl crate::math::IsaBody for FiniteProbe<'_> {
    type Output = f32;

    #[inline(always)]
    fn run(self) -> f32 {
        let (chunks, rest) = self.0.as_chunks::<32>();
        let mut acc = [0.0f32; 32];
        for c in chunks {
            acc = std::array::from_fn(|k| acc[k] + c[k] * 0.0);
        }
        let rest: f32 = rest.iter().map(|&x| x * 0.0).sum();
        acc.iter().sum::<f32>() + rest
    }
}

pub(crate) fn check_finite(xs: &[f32], what: &'static str) -> Result<()> {
    // x * 0 is 0 for finite x and NaN otherwise; the sum vectorizes (32 lanes: several
    // independent vector accumulators, on the CPU's best ISA), the search runs only when
    // it reports a problem
    let sum = crate::math::on_best_isa(FiniteProbe(xs));
    if sum == 0.0 {
        return Ok(());
    }
    match xs.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(Error::NonFinite {
            what,
            index,
            value: xs[index],
        }),
        None => Ok(()),
    }
}

/// Checks the teacher's length against `batch × width`, telling a class-count mismatch
/// from other length errors.
pub(crate) fn check_teacher(teacher: &[f32], batch: usize, width: usize) -> Result<()> {
    if teacher.len() == batch * width {
        return Ok(());
    }
    if batch > 0 && teacher.len().is_multiple_of(batch) {
        return Err(Error::ClassMismatch {
            student: width,
            teacher: teacher.len() / batch,
        });
    }
    check_len("teacher", teacher.len(), batch * width)
}

/// Per-sample weights: `batch` finite, non-negative values (all 1 when absent).
pub(crate) fn sample_weights(w: Option<&[f32]>, batch: usize) -> Result<Option<&[f32]>> {
    let Some(w) = w else { return Ok(None) };
    check_len("sample_weights", w.len(), batch)?;
    check_finite(w, "sample_weights")?;
    if let Some(i) = w.iter().position(|&x| x < 0.0) {
        return Err(Error::InvalidArgument(format!(
            "sample weight {} of sample {i} is negative",
            w[i]
        )));
    }
    Ok(Some(w))
}

/// The weight of sample `i` (1 without weights).
#[inline]
pub(crate) fn weight_of(w: Option<&[f32]>, i: usize) -> f64 {
    w.map_or(1.0, |w| f64::from(w[i]))
}

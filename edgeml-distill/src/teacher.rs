//! How the teacher's outputs are given, and their conversion to logits.

use std::borrow::Cow;

use crate::error::{Error, Result, check_finite};

/// What the teacher's rows hold. All three describe the same distribution
/// `softmax(z_t / T)`: probabilities `p` are used as logits `log p`, and
/// log-probabilities are logits already (a softmax ignores a per-row constant).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TeacherOutput {
    /// Raw logits `z_t` (finite).
    #[default]
    Logits,
    /// Probabilities: finite, non-negative rows summing to 1 (within 1e-3); zeros are
    /// allowed (a one-hot teacher).
    Probabilities,
    /// Log-probabilities: rows whose log-sum-exp is 0 (within 1e-3); `-inf` is allowed
    /// (probability 0), NaN and `+inf` are not.
    LogProbabilities,
}

/// Tolerance on a probability row's sum (or a log-probability row's log-sum-exp).
const ROW_SUM_TOL: f64 = 1e-3;

/// The teacher as logits (entries may be `-inf`, never all of a row), after checking
/// it against `kind`. Rows are `width` long.
pub(crate) fn teacher_logits(
    kind: TeacherOutput,
    t: &[f32],
    width: usize,
) -> Result<Cow<'_, [f32]>> {
    match kind {
        TeacherOutput::Logits => {
            check_finite(t, "teacher logits")?;
            Ok(Cow::Borrowed(t))
        }
        TeacherOutput::Probabilities => {
            check_finite(t, "teacher probabilities")?;
            for (r, row) in t.chunks_exact(width).enumerate() {
                if let Some(j) = row.iter().position(|&p| p < 0.0) {
                    return Err(Error::InvalidArgument(format!(
                        "teacher probability {} at row {r}, class {j} is negative",
                        row[j]
                    )));
                }
                let s: f64 = row.iter().map(|&p| f64::from(p)).sum();
                if (s - 1.0).abs() > ROW_SUM_TOL {
                    return Err(Error::InvalidArgument(format!(
                        "teacher probabilities of row {r} sum to {s}, not 1"
                    )));
                }
            }
            Ok(Cow::Owned(t.iter().map(|&p| p.ln()).collect()))
        }
        TeacherOutput::LogProbabilities => {
            if let Some(i) = t.iter().position(|&x| x.is_nan() || x == f32::INFINITY) {
                return Err(Error::NonFinite {
                    what: "teacher log-probabilities",
                    index: i,
                    value: t[i],
                });
            }
            for (r, row) in t.chunks_exact(width).enumerate() {
                let s: f64 = row.iter().map(|&l| f64::from(l).exp()).sum();
                if (s - 1.0).abs() > ROW_SUM_TOL {
                    return Err(Error::InvalidArgument(format!(
                        "teacher log-probabilities of row {r} exponentiate to a sum of {s}, not 1"
                    )));
                }
            }
            Ok(Cow::Borrowed(t))
        }
    }
}

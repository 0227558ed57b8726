//! Soft targets from an ONNX teacher run by the edgeml runtime, optionally cached to
//! `.npy`.

use std::path::Path;

use edgeml_onnx::{Model, Plan, PlanOptions, Tensor};
use ndarray::{Array2, ArrayViewD, Axis, Ix2};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::teacher::TeacherOutput;

/// Options of [`Teacher`]. `Default`: the last 2-D float output, batches of 256, all
/// cores.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TeacherOptions {
    /// The output to distill from; `None` picks the teacher's last 2-D float output.
    pub output: Option<String>,
    /// Samples per teacher run; 0 means 256.
    pub batch_size: usize,
    /// Threads running batches concurrently: `None` = all cores (rayon's global pool),
    /// `Some(1)` = the calling thread only.
    pub threads: Option<usize>,
}

/// The teacher's outputs on a data set, ready for a loss.
#[derive(Debug, Clone, PartialEq)]
pub struct SoftTargets {
    /// `[samples, classes]`, as the teacher wrote them.
    pub values: Array2<f32>,
    /// What the rows hold: [`TeacherOutput::Probabilities`] when every row is
    /// non-negative and sums to 1 (within 1e-3), [`TeacherOutput::Logits`] otherwise
    /// (see [`detect_output_kind`]).
    pub kind: TeacherOutput,
}

impl SoftTargets {
    /// Wraps `values`, detecting what they hold.
    pub fn new(values: Array2<f32>) -> SoftTargets {
        let kind = detect_output_kind(values.view());
        SoftTargets { values, kind }
    }

    /// The number of classes (columns).
    pub fn classes(&self) -> usize {
        self.values.ncols()
    }
}

/// [`TeacherOutput::Probabilities`] when every row is finite, non-negative and sums to
/// 1 within 1e-3 (as softmax layers and scikit-learn exports write), otherwise
/// [`TeacherOutput::Logits`].
pub fn detect_output_kind(values: ndarray::ArrayView2<'_, f32>) -> TeacherOutput {
    let probs = values.nrows() > 0
        && values.rows().into_iter().all(|r| {
            r.iter().all(|&p| p.is_finite() && p >= 0.0)
                && (r.iter().map(|&p| f64::from(p)).sum::<f64>() - 1.0).abs() <= 1e-3
        });
    if probs {
        TeacherOutput::Probabilities
    } else {
        TeacherOutput::Logits
    }
}

/// A teacher model planned for inference.
pub struct Teacher {
    plan: Plan,
    input: String,
    options: TeacherOptions,
}

impl std::fmt::Debug for Teacher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Teacher")
            .field("input", &self.input)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn model_err(e: edgeml_onnx::Error) -> Error {
    Error::Model {
        kind: e.kind(),
        message: e.to_string(),
    }
}

impl Teacher {
    /// Plans `model` (one runtime input) for inference on one thread per batch.
    ///
    /// # Errors
    /// The runtime refuses the model ([`Error::Model`]); the model has other than one
    /// runtime input.
    pub fn new(model: &Model, options: TeacherOptions) -> Result<Teacher> {
        let plan = Plan::new(model, PlanOptions::with_threads(1)).map_err(model_err)?;
        let input = match plan.inputs() {
            [one] => one.name.clone(),
            other => {
                return Err(Error::InvalidArgument(format!(
                    "the teacher has {} runtime inputs; distillation needs exactly 1",
                    other.len()
                )));
            }
        };
        Ok(Teacher {
            plan,
            input,
            options,
        })
    }

    /// Loads and plans the model at `path` (see [`Teacher::new`]).
    ///
    /// # Errors
    /// As [`Model::load`] and [`Teacher::new`].
    pub fn load(path: impl AsRef<Path>, options: TeacherOptions) -> Result<Teacher> {
        let model = Model::load(path.as_ref()).map_err(model_err)?;
        Teacher::new(&model, options)
    }

    /// The name of the teacher's input.
    pub fn input_name(&self) -> &str {
        &self.input
    }

    /// Runs the teacher on `x` (`[samples, …]`, the shape the teacher takes) in batches,
    /// concurrently on the configured threads, and returns the chosen output.
    ///
    /// # Errors
    /// No samples; the runtime refuses the input ([`Error::Model`]); the chosen output
    /// (or, by default, every output) is not a 2-D float tensor with a row per sample
    /// ([`Error::NoTeacherOutput`]).
    pub fn predict(&self, x: ArrayViewD<'_, f32>) -> Result<SoftTargets> {
        let n = x.shape().first().copied().unwrap_or(0);
        if n == 0 {
            return Err(Error::InvalidArgument(
                "no samples to run the teacher on".into(),
            ));
        }
        let bs = if self.options.batch_size == 0 {
            256
        } else {
            self.options.batch_size
        };
        let starts: Vec<usize> = (0..n).step_by(bs).collect();
        let run = |&s0: &usize| -> Result<Array2<f32>> {
            let end = (s0 + bs).min(n);
            let batch = x.slice_axis(Axis(0), (s0..end).into()).to_owned();
            let outs = self
                .plan
                .run(&[(self.input.as_str(), Tensor::F32(batch))])
                .map_err(model_err)?;
            self.pick(outs, end - s0)
        };
        let parts: Vec<Array2<f32>> = match self.options.threads {
            Some(1) => starts.iter().map(run).collect::<Result<_>>()?,
            None => starts.par_iter().map(run).collect::<Result<_>>()?,
            Some(t) => rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .map_err(|e| Error::InvalidArgument(format!("thread pool: {e}")))?
                .install(|| starts.par_iter().map(run).collect::<Result<_>>())?,
        };
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        let values = ndarray::concatenate(Axis(0), &views)
            .map_err(|e| Error::InvalidArgument(format!("teacher batches: {e}")))?;
        Ok(SoftTargets::new(values))
    }

    /// The output to distill from, as `[rows, classes]`.
    fn pick(&self, outs: Vec<(String, Tensor)>, rows: usize) -> Result<Array2<f32>> {
        let is_2d_f32 = |t: &Tensor| t.as_f32().is_some_and(|a| a.ndim() == 2);
        let found = match &self.options.output {
            Some(name) => {
                let (_, t) = outs.into_iter().find(|(n, _)| n == name).ok_or_else(|| {
                    Error::NoTeacherOutput(format!("the teacher has no output {name:?}"))
                })?;
                if !is_2d_f32(&t) {
                    return Err(Error::NoTeacherOutput(format!(
                        "output {name:?} is {:?} of shape {:?}, not a 2-D f32 tensor",
                        t.dtype(),
                        t.shape()
                    )));
                }
                t
            }
            None => {
                let names: Vec<String> = outs.iter().map(|(n, _)| n.clone()).collect();
                let (_, t) = outs
                    .into_iter()
                    .rev()
                    .find(|(_, t)| is_2d_f32(t))
                    .ok_or_else(|| {
                        Error::NoTeacherOutput(format!(
                            "none of the outputs {names:?} is a 2-D f32 tensor"
                        ))
                    })?;
                t
            }
        };
        let Tensor::F32(a) = found else {
            return Err(Error::NoTeacherOutput("not an f32 output".into()));
        };
        let a = a
            .into_dimensionality::<Ix2>()
            .map_err(|e| Error::NoTeacherOutput(format!("not 2-D: {e}")))?;
        if a.nrows() != rows || a.ncols() == 0 {
            return Err(Error::NoTeacherOutput(format!(
                "the output has shape {:?} for a batch of {rows} samples",
                a.shape()
            )));
        }
        Ok(a)
    }

    /// [`Teacher::predict`], reading the targets from the `.npy` file `cache` when it
    /// holds one row per sample, and otherwise writing them there (atomically: a
    /// temporary file renamed over `cache`). The cache is keyed by its path only:
    /// delete it when the data or the teacher change.
    ///
    /// # Errors
    /// As [`Teacher::predict`]; the cache cannot be written ([`Error::Io`]).
    pub fn predict_cached(&self, x: ArrayViewD<'_, f32>, cache: &Path) -> Result<SoftTargets> {
        let n = x.shape().first().copied().unwrap_or(0);
        if let Ok(v) = ndarray_npy::read_npy::<_, Array2<f32>>(cache)
            && v.nrows() == n
            && v.ncols() > 0
            && v.iter().all(|x| !x.is_nan())
        {
            return Ok(SoftTargets::new(v));
        }
        let t = self.predict(x)?;
        write_npy_atomic(cache, &t.values)?;
        Ok(t)
    }
}

/// Writes `a` to `path` through a temporary file in the same folder and a rename.
fn write_npy_atomic(path: &Path, a: &Array2<f32>) -> Result<()> {
    let io = |e: &dyn std::fmt::Display| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    if let Err(e) = ndarray_npy::write_npy(&tmp, a) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(&e)
    })
}

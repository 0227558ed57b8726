//! Calibration batches: one array for a model with a single input, or a value for each
//! input, by name, for models with several (onnxruntime's `CalibrationDataReader`
//! hands its quantizer one `{input name: array}` dict per batch the same way).

use crate::{Error, Result};
use edgeml_onnx::{Dim, Model, Tensor, ValueInfo};
use ndarray::ArrayD;
use std::borrow::Cow;

/// One calibration batch of a model with several inputs: a value for every run-time
/// graph input (inputs that are also initializers do not count), by name. Values may
/// be of any element type the model declares (token ids as `i64`, masks as `bool`, …);
/// only float inputs are observed and checked for NaN and infinities.
pub type Feeds = Vec<(String, Tensor)>;

mod sealed {
    pub trait Sealed {}
    impl Sealed for ndarray::ArrayD<f32> {}
    impl Sealed for super::Feeds {}
}

/// A calibration batch [`super::quantize_static`] accepts, implemented for two forms
/// (the trait is sealed):
/// - `ArrayD<f32>`: one batch of the model's single input, e.g. `[10, 1, 8, 8]`;
/// - [`Feeds`]: a value for each of the model's inputs, by name.
pub trait CalibrationBatch: sealed::Sealed + Sync {
    /// Whether the batch names its inputs ([`Feeds`]) or feeds the model's single one.
    #[doc(hidden)]
    const NAMED: bool;

    /// The batch as `(input name, value)` pairs; `single` names the model's single
    /// input, for the form without names.
    #[doc(hidden)]
    fn feeds<'a>(&'a self, single: &str) -> Cow<'a, [(String, Tensor)]>;
}

impl CalibrationBatch for ArrayD<f32> {
    const NAMED: bool = false;

    fn feeds<'a>(&'a self, single: &str) -> Cow<'a, [(String, Tensor)]> {
        Cow::Owned(vec![(single.to_owned(), Tensor::F32(self.clone()))])
    }
}

impl CalibrationBatch for Feeds {
    const NAMED: bool = true;

    fn feeds<'a>(&'a self, _single: &str) -> Cow<'a, [(String, Tensor)]> {
        Cow::Borrowed(self)
    }
}

/// `feeds` in the form [`edgeml_onnx::Plan::run_observed`] takes.
pub(super) fn refs(feeds: &[(String, Tensor)]) -> Vec<(&str, &Tensor)> {
    feeds.iter().map(|(n, t)| (n.as_str(), t)).collect()
}

/// The model's run-time graph inputs.
fn run_inputs(model: &Model) -> Vec<&ValueInfo> {
    model.graph.runtime_inputs().collect()
}

/// The model's single run-time input.
///
/// # Errors
/// [`Error::Unsupported`] if it has none or several; the message says to pass
/// [`Feeds`].
pub(super) fn single_input(model: &Model) -> Result<&ValueInfo> {
    match run_inputs(model).as_slice() {
        [one] => Ok(one),
        many => Err(Error::Unsupported(format!(
            "an array per batch feeds models with exactly one input; this one has {} ({}): \
             give each batch as Feeds, a value for every input by name",
            many.len(),
            many.iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The name the unnamed form feeds (empty for [`Feeds`]), after checking every batch
/// against the model's inputs: each input given exactly once and no other name, ranks
/// and fixed dimensions as declared, element types as declared where declared, float
/// values finite.
///
/// # Errors
/// [`Error::EmptyCalibration`] without batches; [`Error::Unsupported`] for an unnamed
/// batch and a model without exactly one input; [`Error::Shape`] for a missing, unknown
/// or repeated input name, a wrong rank, dimension or element type; [`Error::NonFinite`]
/// for NaN or infinite float values.
pub(super) fn check<B: CalibrationBatch>(model: &Model, batches: &[B]) -> Result<String> {
    if batches.is_empty() {
        return Err(Error::EmptyCalibration);
    }
    let single = if B::NAMED {
        String::new()
    } else {
        single_input(model)?.name.clone()
    };
    let inputs = run_inputs(model);
    for (i, b) in batches.iter().enumerate() {
        let feeds = b.feeds(&single);
        for vi in &inputs {
            match feeds.iter().filter(|(n, _)| *n == vi.name).count() {
                1 => {}
                0 => {
                    return Err(Error::Shape(format!(
                        "calibration batch {i} has no value for the model's input {:?}",
                        vi.name
                    )));
                }
                _ => {
                    return Err(Error::Shape(format!(
                        "calibration batch {i} gives the input {:?} more than once",
                        vi.name
                    )));
                }
            }
        }
        for (name, t) in feeds.iter() {
            let Some(vi) = inputs.iter().find(|v| v.name == *name) else {
                return Err(Error::Shape(format!(
                    "calibration batch {i} names {name:?}, which is not an input of the model \
                     (its inputs: {})",
                    inputs
                        .iter()
                        .map(|v| v.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            check_value(vi, i, t)?;
        }
    }
    Ok(single)
}

/// Checks one value against its declared input: element type, rank, fixed dimensions,
/// finite floats.
fn check_value(vi: &ValueInfo, i: usize, t: &Tensor) -> Result<()> {
    if let Some(dtype) = vi.dtype
        && dtype != t.dtype()
    {
        return Err(Error::Shape(format!(
            "calibration batch {i}: input {:?} is {dtype:?}, the value given is {:?}",
            vi.name,
            t.dtype()
        )));
    }
    if let Some(shape) = &vi.shape {
        let fits = shape.len() == t.shape().len()
            && shape
                .iter()
                .zip(t.shape())
                .all(|(d, &n)| !matches!(d, Dim::Known(k) if *k != n));
        if !fits {
            return Err(Error::Shape(format!(
                "calibration batch {i} has shape {:?} for input {:?}, which is {shape:?}",
                t.shape(),
                vi.name
            )));
        }
    }
    if let Some(a) = t.as_f32()
        && let Some(bad) = a.iter().find(|v| !v.is_finite())
    {
        return Err(Error::NonFinite(format!(
            "calibration batch {i} holds {bad} in input {:?}",
            vi.name
        )));
    }
    Ok(())
}

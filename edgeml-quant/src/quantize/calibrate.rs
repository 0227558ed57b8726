//! Calibration: runs the float model over the batches with one observer per activation
//! tensor and returns each tensor's proposed range.

use super::{Config, Method};
use crate::{Entropy, Error, MinMax, MovingAverageMinMax, Mse, Percentile, Result};
use edgeml_core::Observer;
use edgeml_onnx::{Dim, GraphOptLevel, Model, Plan, PlanOptions, Tensor};
use ndarray::ArrayD;
use std::collections::HashMap;

pub(super) fn model_err(e: edgeml_onnx::Error) -> Error {
    Error::Model {
        kind: e.kind(),
        message: e.to_string(),
    }
}

/// The ranges of `tensors` over `batches`, in the order of `tensors`.
pub(super) fn run(
    model: &Model,
    batches: &[ArrayD<f32>],
    tensors: &[String],
    config: &Config,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<(f32, f32)>> {
    let job = Job {
        model,
        batches,
        tensors,
        threads: config.calibration_threads,
        progress,
    };
    match config.method {
        Method::MinMax => job.observe(&MinMax::new()),
        Method::Percentile { percentile, bins } => job.observe(&Percentile::new(
            bins,
            percentile,
            config.symmetric_activations,
        )?),
        Method::MovingAverage { averaging_constant } => {
            job.observe(&MovingAverageMinMax::new(averaging_constant)?)
        }
        Method::Entropy {
            bins,
            quantized_bins,
        } => job.observe(&Entropy::new(bins, quantized_bins)?),
        Method::Mse { bins } => job.observe(&Mse::new(bins)?),
    }
}

/// One calibration thread's observers, and which tensors it saw.
type Observed<O> = (Vec<Chosen<O>>, Vec<bool>);

/// A tensor's observer: the method's, or MinMax for a graph output. The histogram
/// methods clip outliers, which a later layer can absorb; a model output has no later
/// layer, and clipping it loses values outright (a detector's box coordinates, a
/// regression target), so model outputs always get their full observed range.
#[derive(Debug, Clone)]
enum Chosen<O> {
    Method(O),
    Output(MinMax),
}

impl<O: Observer> Observer for Chosen<O> {
    fn observe(&mut self, values: &[f32]) {
        match self {
            Chosen::Method(o) => o.observe(values),
            Chosen::Output(o) => o.observe(values),
        }
    }

    fn merge(&mut self, other: &Self) {
        // Both sides were made for the same tensor, so they are the same variant.
        match (self, other) {
            (Chosen::Method(a), Chosen::Method(b)) => a.merge(b),
            (Chosen::Output(a), Chosen::Output(b)) => a.merge(b),
            _ => {}
        }
    }

    fn range(&self) -> (f32, f32) {
        match self {
            Chosen::Method(o) => o.range(),
            Chosen::Output(o) => o.range(),
        }
    }
}

/// One calibration run's arguments, whatever the observer type.
struct Job<'a, 'p> {
    model: &'a Model,
    batches: &'a [ArrayD<f32>],
    tensors: &'a [String],
    threads: usize,
    progress: &'p mut dyn FnMut(usize),
}

impl Job<'_, '_> {
    /// Runs the calibration with a clone of `proto` per tensor.
    fn observe<O: Observer + Clone + Send + Sync>(self, proto: &O) -> Result<Vec<(f32, f32)>> {
        observe_all(
            self.model,
            self.batches,
            self.tensors,
            proto,
            self.threads,
            self.progress,
        )
    }
}

/// The model's single graph input (inputs that are also initializers do not count).
pub(super) fn single_input(model: &Model) -> Result<&edgeml_onnx::ValueInfo> {
    let g = &model.graph;
    let inputs: Vec<_> = g
        .inputs
        .iter()
        .filter(|i| g.initializer(&i.name).is_none())
        .collect();
    match inputs.as_slice() {
        [one] => Ok(one),
        _ => Err(Error::Unsupported(format!(
            "calibration supports models with exactly one input; this one has {}",
            inputs.len()
        ))),
    }
}

/// Checks a batch against the declared input: same rank, same fixed dimensions, finite.
fn check_batch(vi: &edgeml_onnx::ValueInfo, i: usize, b: &ArrayD<f32>) -> Result<()> {
    if let Some(shape) = &vi.shape {
        let fits = shape.len() == b.ndim()
            && shape
                .iter()
                .zip(b.shape())
                .all(|(d, &n)| !matches!(d, Dim::Known(k) if *k != n));
        if !fits {
            return Err(Error::Shape(format!(
                "calibration batch {i} has shape {:?}; the model's input {:?} is {shape:?}",
                b.shape(),
                vi.name
            )));
        }
    }
    if let Some(bad) = b.iter().find(|v| !v.is_finite()) {
        return Err(Error::NonFinite(format!(
            "calibration batch {i} holds {bad}"
        )));
    }
    Ok(())
}

fn observe_all<O: Observer + Clone + Send + Sync>(
    model: &Model,
    batches: &[ArrayD<f32>],
    tensors: &[String],
    proto: &O,
    threads: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<(f32, f32)>> {
    let vi = single_input(model)?;
    let outputs: std::collections::HashSet<&str> = model
        .graph
        .outputs
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    let protos: Vec<Chosen<O>> = tensors
        .iter()
        .map(|t| {
            if outputs.contains(t.as_str()) {
                Chosen::Output(MinMax::new())
            } else {
                Chosen::Method(proto.clone())
            }
        })
        .collect();
    for (i, b) in batches.iter().enumerate() {
        check_batch(vi, i, b)?;
    }
    let mut opts = PlanOptions::with_threads(1);
    // Every value the quantizer needs must stay visible to the observer.
    opts.optimization = GraphOptLevel::Disabled;
    let plan = Plan::new(model, opts).map_err(model_err)?;
    let index: HashMap<&str, usize> = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        n => n,
    }
    .clamp(1, batches.len().max(1));
    let input = vi.name.as_str();
    // Contiguous runs of batches, one per thread, merged in order afterwards (the
    // moving average's merge appends), so the result is that of one observer fed every
    // batch (exact for MinMax, Entropy and Mse; see each observer's merge).
    let per = batches.len().div_ceil(threads);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let parts: Vec<Result<Observed<O>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = batches
            .chunks(per.max(1))
            .map(|chunk| {
                let tx = tx.clone();
                let (plan, index, protos) = (&plan, &index, &protos);
                scope.spawn(move || -> Result<Observed<O>> {
                    let mut observers = protos.clone();
                    let mut seen = vec![false; tensors.len()];
                    for b in chunk {
                        if let Some(&i) = index.get(input) {
                            observe_array(&mut observers[i], b);
                            seen[i] = true;
                        }
                        let x = Tensor::F32(b.clone());
                        plan.run_observed(&[(input, &x)], &mut |name, t| {
                            if let (Some(&i), Some(a)) = (index.get(name), t.as_f32()) {
                                observe_array(&mut observers[i], a);
                                seen[i] = true;
                            }
                        })
                        .map_err(model_err)?;
                        // The receiver only stops listening once every worker is done.
                        let _ = tx.send(());
                    }
                    Ok((observers, seen))
                })
            })
            .collect();
        drop(tx);
        let mut done = 0;
        for () in rx.iter() {
            done += 1;
            progress(done);
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Invalid("a calibration thread panicked".into())))
            })
            .collect()
    });
    let mut observers = protos;
    let mut seen = vec![false; tensors.len()];
    for part in parts {
        let (obs, s) = part?;
        for (a, b) in observers.iter_mut().zip(&obs) {
            a.merge(b);
        }
        for (a, b) in seen.iter_mut().zip(s) {
            *a |= b;
        }
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(Error::Unsupported(format!(
            "tensor {:?} is not computed at run time (a constant?); it cannot be calibrated",
            tensors[i]
        )));
    }
    Ok(observers.iter().map(Observer::range).collect())
}

fn observe_array<O: Observer>(o: &mut O, a: &ArrayD<f32>) {
    match a.as_slice() {
        Some(s) => o.observe(s),
        None => o.observe(&a.iter().copied().collect::<Vec<_>>()),
    }
}

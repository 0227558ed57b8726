//! Calibration: runs the float model over the batches with one observer per activation
//! tensor and returns each tensor's proposed range.

use super::feeds::{CalibrationBatch, refs};
use super::{Config, Method};
use crate::{Entropy, Error, MinMax, MovingAverageMinMax, Mse, Percentile, Result};
use edgeml_core::Observer;
use edgeml_onnx::{GraphOptLevel, Model, Plan, PlanOptions};
use ndarray::ArrayD;
use std::collections::HashMap;

pub(super) fn model_err(e: edgeml_onnx::Error) -> Error {
    Error::Model {
        kind: e.kind(),
        message: e.to_string(),
    }
}

/// A tensor's calibrated range, and the full range observed beside it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Ranges {
    /// The method's proposal.
    pub(super) method: (f32, f32),
    /// The minimum and maximum seen (MinMax), for [`super::Config::range_check`].
    pub(super) full: (f32, f32),
}

/// The ranges of `tensors` over `batches`, in the order of `tensors`.
pub(super) fn run<B: CalibrationBatch>(
    model: &Model,
    batches: &[B],
    single: &str,
    tensors: &[String],
    config: &Config,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Ranges>> {
    let job = Job {
        model,
        batches,
        single,
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
type Observed<O> = (Vec<Both<O>>, Vec<bool>);

/// A tensor's observer beside a MinMax of the same values.
#[derive(Debug, Clone)]
struct Both<O> {
    chosen: Chosen<O>,
    full: MinMax,
}

impl<O: Observer> Both<O> {
    fn observe(&mut self, values: &[f32]) {
        self.chosen.observe(values);
        self.full.observe(values);
    }

    fn merge(&mut self, other: &Self) {
        self.chosen.merge(&other.chosen);
        self.full.merge(&other.full);
    }

    fn ranges(&self) -> Ranges {
        Ranges {
            method: self.chosen.range(),
            full: self.full.range(),
        }
    }
}

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
struct Job<'a, 'p, B> {
    model: &'a Model,
    batches: &'a [B],
    /// The model's single input's name, for unnamed batches.
    single: &'a str,
    tensors: &'a [String],
    threads: usize,
    progress: &'p mut dyn FnMut(usize),
}

impl<B: CalibrationBatch> Job<'_, '_, B> {
    /// Runs the calibration with a clone of `proto` per tensor.
    fn observe<O: Observer + Clone + Send + Sync>(self, proto: &O) -> Result<Vec<Ranges>> {
        observe_all(
            self.model,
            self.batches,
            self.single,
            self.tensors,
            proto,
            self.threads,
            self.progress,
        )
    }
}

fn observe_all<B: CalibrationBatch, O: Observer + Clone + Send + Sync>(
    model: &Model,
    batches: &[B],
    single: &str,
    tensors: &[String],
    proto: &O,
    threads: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Ranges>> {
    let outputs: std::collections::HashSet<&str> = model
        .graph
        .outputs
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    let protos: Vec<Both<O>> = tensors
        .iter()
        .map(|t| Both {
            chosen: if outputs.contains(t.as_str()) {
                Chosen::Output(MinMax::new())
            } else {
                Chosen::Method(proto.clone())
            },
            full: MinMax::new(),
        })
        .collect();
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
                        let feeds = b.feeds(single);
                        for (name, t) in feeds.iter() {
                            if let (Some(&i), Some(a)) = (index.get(name.as_str()), t.as_f32()) {
                                observe_array(&mut observers[i], a);
                                seen[i] = true;
                            }
                        }
                        plan.run_observed(&refs(&feeds), &mut |name, t| {
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
    Ok(observers.iter().map(Both::ranges).collect())
}

fn observe_array<O: Observer>(o: &mut Both<O>, a: &ArrayD<f32>) {
    match a.as_slice() {
        Some(s) => o.observe(s),
        None => o.observe(&a.iter().copied().collect::<Vec<_>>()),
    }
}

//! The static pass: calibration once, then rounds of rewriting (and, with a target
//! SQNR, measuring and keeping the worst node in float) with the same ranges.

use super::{
    BiasCheck, Config, Format, KeptFloat, NodeRef, RangeCheck, Report, bias, calibrate,
    check_config, equalize, feeds, node_ref, rewrite, select, select_except, sqnr,
};
use crate::onnx::{FuseTarget, fuse_qdq_for};
use crate::{Error, Result};
use edgeml_onnx::Model;
use feeds::CalibrationBatch;
use std::collections::{HashMap, HashSet};

/// How much higher (dB, strictly more) the calibration output SQNR of an alternative
/// ([`Config::range_check`], [`Config::bias_check`]) must be for it to be kept: smaller
/// differences are within the noise of a calibration set (on the models of
/// BENCHMARKS.md, 0.01 dB on the calibration data came out as 0.7 dB the other way on
/// held-out data).
const CHECK_MARGIN_DB: f64 = 0.1;

/// [`super::quantize_static_with_progress`]: the QDQ model, then fused into
/// [`Config::format`].
pub(super) fn run<B: CalibrationBatch>(
    model: &Model,
    batches: &[B],
    config: &Config,
    progress: &mut dyn FnMut(usize),
) -> Result<(Model, Report)> {
    let (mut out, mut report) = run_qdq(model, batches, config, progress)?;
    let target = match config.format {
        Format::Qdq => return Ok((out, report)),
        Format::QOperator => FuseTarget::Onnx,
        Format::QOperatorContrib => FuseTarget::OnnxRuntime,
    };
    report.qoperator = Some(fuse_qdq_for(&mut out, target));
    // The scales and zero points only the removed nodes read.
    out.graph.remove_dead();
    Ok((out, report))
}

fn run_qdq<B: CalibrationBatch>(
    model: &Model,
    batches: &[B],
    config: &Config,
    progress: &mut dyn FnMut(usize),
) -> Result<(Model, Report)> {
    check_config(model, config)?;
    if let Some(t) = config.target_sqnr
        && !(t.is_finite() && t >= 0.0)
    {
        return Err(Error::Invalid(format!(
            "target SQNR {t} dB: give a finite value of at least 0"
        )));
    }
    let single = feeds::check(model, batches)?;
    // The model quantized: equalized or not. Errors are measured against the
    // original; node indices are the same in both.
    let mut work = model.clone();
    let equalized = if config.equalize {
        equalize::run(&mut work)?
    } else {
        Vec::new()
    };
    let original = model;
    let model = &work;
    let sel = select(model, config)?;
    if sel.targets.is_empty() {
        return Err(Error::Unsupported(
            "the model has no quantizable node (Conv, Gemm or MatMul with a constant weight)"
                .into(),
        ));
    }
    let calibrated = calibrate::run(model, batches, &single, &sel.tensors, config, progress)?;
    let method: Vec<(f32, f32)> = calibrated.iter().map(|r| r.method).collect();
    let full: Vec<(f32, f32)> = calibrated.iter().map(|r| r.full).collect();
    // The output SQNR on the calibration data of the model written with `shifts` and
    // `ranges` (`None` without an f32 output).
    let score = |shifts: &[bias::Shift], ranges: &[(f32, f32)]| -> Result<Option<f64>> {
        let (base, _) = bias::apply(model, shifts, &sel)?;
        let out = rewrite::write(&base, &sel, ranges, config, &mut Report::default())?;
        Ok(sqnr::measure(original, &out, &single, batches, &[])?.output_sqnr_db)
    };
    let forced = if config.bias_correction {
        bias::measure(model, &single, batches, &sel, config)?
    } else {
        Vec::new()
    };
    let mut range_check = None;
    let mut chosen = method.clone();
    let mut chosen_db = None;
    if config.range_check
        && method != full
        && let (Some(m), Some(f)) = (score(&forced, &method)?, score(&forced, &full)?)
    {
        let kept_full_range = f > m + CHECK_MARGIN_DB;
        range_check = Some(RangeCheck {
            method_sqnr_db: m,
            full_range_sqnr_db: f,
            kept_full_range,
        });
        if kept_full_range {
            chosen = full;
        }
        chosen_db = Some(if kept_full_range { f } else { m });
    }
    let mut bias_check = None;
    let shifts = if !config.bias_correction && config.bias_check {
        let measured = bias::measure(model, &single, batches, &sel, config)?;
        // Without a bias to correct there is nothing to compare.
        let without = match chosen_db {
            _ if measured.is_empty() => None,
            Some(db) => Some(db),
            None => score(&[], &chosen)?,
        };
        match without {
            Some(without_db) => {
                let with_db = score(&measured, &chosen)?.unwrap_or(f64::NEG_INFINITY);
                let kept_correction = with_db > without_db + CHECK_MARGIN_DB;
                bias_check = Some(BiasCheck {
                    without_sqnr_db: without_db,
                    with_sqnr_db: with_db,
                    kept_correction,
                });
                if kept_correction {
                    measured
                } else {
                    Vec::new()
                }
            }
            None => Vec::new(),
        }
    } else {
        forced
    };
    let ranges: HashMap<String, (f32, f32)> = sel.tensors.iter().cloned().zip(chosen).collect();
    let measure = config.layer_errors || config.target_sqnr.is_some();
    let mut keep: HashSet<usize> = HashSet::new();
    let mut kept: Vec<KeptFloat> = Vec::new();
    // Each round keeps one more node in float: at most one round per target, plus the
    // last one.
    for _ in 0..=sel.targets.len() {
        let sel = select_except(model, config, &keep)?;
        let (base, corrections) = bias::apply(model, &shifts, &sel)?;
        let mut report = Report {
            batches: batches.len(),
            bias_corrections: corrections,
            equalized: equalized.clone(),
            range_check,
            bias_check,
            ..Report::default()
        };
        let out = if sel.targets.is_empty() {
            report.float_nodes.clone_from(&sel.float_nodes);
            original.clone()
        } else {
            // A node kept in float changes no other node's tensors, so every tensor
            // here was calibrated in the first round.
            let r: Vec<(f32, f32)> =
                sel.tensors
                    .iter()
                    .map(|t| {
                        ranges.get(t).copied().ok_or_else(|| {
                            Error::Invalid(format!("tensor {t:?} was not calibrated"))
                        })
                    })
                    .collect::<Result<_>>()?;
            rewrite::write(&base, &sel, &r, config, &mut report)?
        };
        if !measure {
            return Ok((out, report));
        }
        let layers: Vec<(usize, NodeRef, String)> = sel
            .targets
            .iter()
            .map(|t| {
                let n = &model.graph.nodes[t.node];
                let y = t
                    .fold
                    .map_or(&n.outputs[0], |j| &model.graph.nodes[j].outputs[0]);
                (t.node, node_ref(n), y.clone())
            })
            .collect();
        let named: Vec<(NodeRef, String)> = layers
            .iter()
            .map(|(_, n, y)| (n.clone(), y.clone()))
            .collect();
        let m = sqnr::measure(original, &out, &single, batches, &named)?;
        report.layers = m.layers;
        report.output_sqnr_db = m.output_sqnr_db;
        let worst = report
            .layers
            .iter()
            .min_by(|a, b| a.sqnr_db.total_cmp(&b.sqnr_db))
            .and_then(|l| {
                let i = layers
                    .iter()
                    .find(|(_, n, y)| *n == l.node && *y == l.tensor)?
                    .0;
                Some((i, l.clone()))
            });
        let below = match (config.target_sqnr, m.output_sqnr_db) {
            (Some(target), Some(got)) if got < target => Some(got),
            _ => None,
        };
        match (worst, below) {
            (Some((i, l)), Some(got)) => {
                kept.push(KeptFloat {
                    node: l.node,
                    layer_sqnr_db: l.sqnr_db,
                    output_sqnr_db: got,
                });
                keep.insert(i);
            }
            _ => {
                report.kept_float = kept;
                return Ok((out, report));
            }
        }
    }
    Err(Error::Invalid(
        "the SQNR loop did not end (a node kept in float stayed quantized)".into(),
    ))
}

//! `edgeml bench`: latency of a model on generated inputs.
//!
//! Inputs are generated from the declared types and shapes: fixed dimensions as
//! declared, symbolic ones from `--dim NAME=VALUE` (else 1), unknown ones 1. Float inputs
//! are uniform in [-1, 1) from a fixed-seed generator; integer inputs are 0 (a valid
//! index for embedding-style inputs); booleans are false.
//!
//! Each run is timed separately after the warm-up runs. Reported: median, p10, p90,
//! mean and minimum latency; plan time; peak resident memory of the process (`VmHWM`
//! from `/proc/self/status`, Linux only: it includes the model, the plan and all
//! buffers ever live, so it is an upper bound on what inference needs).

use anyhow::{Context, bail};
use edgeml_core::DType;
use edgeml_onnx::{Dim, PlanOptions, Tensor};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Arguments of `edgeml bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Let idle worker threads sleep during a run instead of spin-waiting for work
    /// (saves CPU time and power on shared or battery-powered machines, costs latency).
    #[arg(long)]
    no_spin: bool,
    /// Timed runs.
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// Untimed warm-up runs.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Value of a symbolic dimension, as `NAME=VALUE` (repeatable).
    #[arg(long = "dim", value_name = "NAME=VALUE")]
    dims: Vec<String>,
    /// The whole shape of one input, as `NAME=1,3,48,192` (repeatable; overrides the
    /// declared shape, for unnamed or dynamic dimensions, as trtexec's `--shapes`).
    #[arg(long = "shape", value_name = "NAME=D0,D1,...")]
    shapes: Vec<String>,
    /// Real data for one input, as `NAME=FILE.npy` (repeatable; a bare `FILE.npy` when
    /// the model has one input); other inputs are generated.
    #[arg(short, long = "input", value_name = "NAME=FILE.npy")]
    inputs: Vec<String>,
    /// Run QDQ models as written instead of fusing them onto the INT8 kernels.
    #[arg(long)]
    no_fuse_qdq: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bounds: crate::planning::Bounds,
}

/// The measurements `edgeml bench` reports.
#[derive(Debug, serde::Serialize)]
struct Report {
    model: String,
    threads: usize,
    iters: usize,
    inputs: Vec<(String, String, Vec<usize>)>,
    plan_ms: f64,
    median_ms: f64,
    p10_ms: f64,
    p90_ms: f64,
    mean_ms: f64,
    min_ms: f64,
    peak_rss_kib: Option<u64>,
    /// The INT8 kernel path in use (`EDGEML_KERNELS` or the best this CPU has).
    int8_kernels: &'static str,
    /// Every INT8 kernel path this CPU can run, best first.
    int8_available: Vec<&'static str>,
}

/// Peak resident set size in KiB (`VmHWM`), on Linux.
fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A deterministic input for a declared type and shape.
fn make_input(dtype: DType, shape: &[usize], seed: &mut u64) -> anyhow::Result<Tensor> {
    let n: usize = shape.iter().product();
    if n > 1 << 28 {
        bail!("a generated input of shape {shape:?} would be too large");
    }
    let sh = IxDyn(shape);
    Ok(match dtype {
        DType::F32 | DType::F64 | DType::F16 => {
            let v: Vec<f32> = (0..n)
                .map(|_| {
                    // xorshift64*: fixed seed, uniform in [-1, 1).
                    *seed ^= *seed >> 12;
                    *seed ^= *seed << 25;
                    *seed ^= *seed >> 27;
                    let r = seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
                    r as f32 / (1u64 << 23) as f32 - 1.0
                })
                .collect();
            let a = ArrayD::from_shape_vec(sh, v)?;
            match dtype {
                DType::F64 => Tensor::F64(a.mapv(f64::from)),
                DType::F16 => Tensor::F16(a.mapv(edgeml_core::f16::from_f32)),
                _ => Tensor::F32(a),
            }
        }
        DType::I64 => Tensor::I64(ArrayD::zeros(sh)),
        DType::I32 => Tensor::I32(ArrayD::zeros(sh)),
        DType::I8 => Tensor::I8(ArrayD::zeros(sh)),
        DType::U8 => Tensor::U8(ArrayD::zeros(sh)),
        DType::Bool => Tensor::Bool(ArrayD::from_elem(sh, false)),
        other => bail!("cannot generate inputs of element type {other:?}"),
    })
}

/// Runs `edgeml bench`.
pub(crate) fn main(args: Args) -> anyhow::Result<()> {
    let mut dims: HashMap<String, usize> = HashMap::new();
    for d in &args.dims {
        let (k, v) = d
            .split_once('=')
            .with_context(|| format!("--dim {d:?}: write NAME=VALUE"))?;
        let v: usize = v
            .parse()
            .with_context(|| format!("--dim {d:?}: VALUE must be a count"))?;
        dims.insert(k.to_owned(), v);
    }
    if args.iters == 0 {
        bail!("--iters must be at least 1");
    }
    let mut shapes: HashMap<String, Vec<usize>> = HashMap::new();
    for d in &args.shapes {
        let (k, v) = d
            .split_once('=')
            .with_context(|| format!("--shape {d:?}: write NAME=D0,D1,..."))?;
        let dims: Result<Vec<usize>, _> = v.split(',').map(|x| x.trim().parse::<usize>()).collect();
        let dims = dims.with_context(|| format!("--shape {d:?}: dimensions must be counts"))?;
        shapes.insert(k.to_owned(), dims);
    }
    let t0 = Instant::now();
    let mut opts = PlanOptions::default();
    opts.threads = args.threads;
    opts.spin = !args.no_spin;
    args.bounds.apply(&mut opts)?;
    let plan = crate::planning::load_and_plan(&args.model, opts, !args.no_fuse_qdq)?;
    let plan_time = t0.elapsed();
    let declared: Vec<String> = plan.inputs().iter().map(|i| i.name.clone()).collect();
    let mut given: HashMap<String, Tensor> = HashMap::new();
    for spec in &args.inputs {
        let (name, file) = match spec.split_once('=') {
            Some((n, f)) => (n.to_owned(), f),
            None if declared.len() == 1 => (declared[0].clone(), spec.as_str()),
            None => {
                bail!("--input {spec:?}: write NAME=FILE.npy; the model's inputs are {declared:?}")
            }
        };
        if !declared.contains(&name) {
            bail!("--input {spec:?}: the model has no input {name:?}; its inputs are {declared:?}");
        }
        given.insert(name, crate::run::read_any(std::path::Path::new(file))?);
    }
    for k in shapes.keys() {
        if !declared.contains(k) {
            bail!("--shape: the model has no input {k:?}; its inputs are {declared:?}");
        }
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut inputs = Vec::new();
    let mut described = Vec::new();
    for info in plan.inputs() {
        if let Some(t) = given.remove(&info.name) {
            described.push((
                info.name.clone(),
                format!("{:?} (from file)", t.dtype()),
                t.shape().to_vec(),
            ));
            inputs.push((info.name.clone(), t));
            continue;
        }
        if let Some(shape) = shapes.get(&info.name) {
            let dtype = info.dtype.unwrap_or(DType::F32);
            inputs.push((info.name.clone(), make_input(dtype, shape, &mut seed)?));
            described.push((info.name.clone(), format!("{dtype:?}"), shape.clone()));
            continue;
        }
        let declared = info.shape.as_ref().with_context(|| {
            format!(
                "input {:?} has no declared shape: give it with --shape or --input",
                info.name
            )
        })?;
        let shape: Vec<usize> = declared
            .iter()
            .map(|d| match d {
                Dim::Known(k) => *k,
                Dim::Symbolic(s) => dims.get(s).copied().unwrap_or(1),
                Dim::Unknown => 1,
            })
            .collect();
        let dtype = info.dtype.unwrap_or(DType::F32);
        inputs.push((info.name.clone(), make_input(dtype, &shape, &mut seed)?));
        described.push((info.name.clone(), format!("{dtype:?}"), shape));
    }
    let refs: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    for _ in 0..args.warmup {
        plan.run_with(&refs, &args.bounds.run_options()?)
            .context("the model failed to run")?;
    }
    let mut times = Vec::with_capacity(args.iters);
    for _ in 0..args.iters {
        let run_opts = args.bounds.run_options()?;
        let t = Instant::now();
        let out = plan
            .run_with(&refs, &run_opts)
            .context("the model failed to run")?;
        times.push(t.elapsed());
        drop(out);
    }
    times.sort();
    let total: Duration = times.iter().sum();
    let report = Report {
        model: args.model.display().to_string(),
        threads: plan.threads(),
        iters: args.iters,
        inputs: described,
        plan_ms: ms(plan_time),
        median_ms: ms(percentile(&times, 50.0)),
        p10_ms: ms(percentile(&times, 10.0)),
        p90_ms: ms(percentile(&times, 90.0)),
        mean_ms: ms(total) / args.iters as f64,
        min_ms: ms(times[0]),
        peak_rss_kib: peak_rss_kib(),
        int8_kernels: edgeml_quant::Isa::selected().name(),
        int8_available: edgeml_quant::Isa::available()
            .into_iter()
            .map(edgeml_quant::Isa::name)
            .collect(),
    };
    if args.json {
        outln!("{}", serde_json::to_string(&report)?);
    } else {
        outln!("model     {}", report.model);
        for (n, d, s) in &report.inputs {
            outln!("input     {n}: {d} {s:?}");
        }
        outln!("threads   {}", report.threads);
        outln!(
            "int8      {} kernels (this CPU: {})",
            report.int8_kernels,
            report.int8_available.join(", ")
        );
        outln!("plan      {:.2} ms", report.plan_ms);
        outln!(
            "latency   median {:.3} ms  p10 {:.3} ms  p90 {:.3} ms  mean {:.3} ms  min {:.3} ms  ({} runs)",
            report.median_ms,
            report.p10_ms,
            report.p90_ms,
            report.mean_ms,
            report.min_ms,
            report.iters
        );
        match report.peak_rss_kib {
            Some(k) => outln!("peak RSS  {:.1} MiB (VmHWM)", k as f64 / 1024.0),
            None => outln!("peak RSS  unavailable (needs /proc/self/status)"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(5));
        assert_eq!(percentile(&v, 10.0), Duration::from_millis(1));
        assert_eq!(percentile(&v, 90.0), Duration::from_millis(9));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn generated_floats_are_in_range_and_deterministic() {
        let mut s1 = 1u64;
        let mut s2 = 1u64;
        let a = make_input(DType::F32, &[100], &mut s1).unwrap();
        let b = make_input(DType::F32, &[100], &mut s2).unwrap();
        assert_eq!(a, b);
        assert!(a.as_f32().unwrap().iter().all(|v| (-1.0..1.0).contains(v)));
    }
}

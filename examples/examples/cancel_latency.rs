//! Cancellation latency: how long a run takes to return after `CancelToken::cancel()`
//! is called from another thread (issue 19's "within 10 ms of the next step boundary").
//!
//! Two models, each run `TRIALS` times and cancelled 20–30 ms into the run:
//!
//! * `short steps`: a `Loop` of 2⁵⁰ iterations whose body is three tiny operators, so a
//!   step boundary (where the token is checked) comes every few microseconds;
//! * `long MatMul`: one 2048×2048 by 2048×2048 `MatMul` (a single step lasting
//!   hundreds of milliseconds), stopped from inside the GEMM, whose tiles poll the token
//!   once per block of work.
//!
//! Prints the median, 90th percentile and maximum of the time from `cancel()` to the
//! run returning `Error::Cancelled`. Run it on an otherwise idle machine:
//!
//! ```text
//! cargo run --release -p edgeml-examples --example cancel_latency [TRIALS] [THREADS]
//! ```
//!
//! (`TRIALS` defaults to 50, `THREADS`, the plan's thread count, to the plan default.)

use anyhow::{Context, bail, ensure};
use edgeml::core::{DType, ErrorKind};
use edgeml::onnx::{
    Attribute, CancelToken, Dim, Graph, Model, ModelBuilder, Node, Plan, PlanOptions, RunLimits,
    RunOptions, Tensor, ValueInfo,
};
use ndarray::ArrayD;
use std::time::{Duration, Instant};

fn scalar_f32(v: f32) -> Tensor {
    Tensor::F32(ArrayD::from_elem(vec![], v))
}

fn fixed(name: &str, dtype: DType, shape: &[usize]) -> ValueInfo {
    ValueInfo::tensor(name, dtype, shape.iter().map(|&d| Dim::Known(d)).collect())
}

/// `Loop` over `M` iterations of `x = (x + 1) + 1 - 1` (three short steps each).
fn short_steps() -> anyhow::Result<Model> {
    let body = Graph {
        name: "body".into(),
        nodes: vec![
            Node::new("Identity", &["c"], &["c_out"]).with_name("keep"),
            Node::new("Add", &["x", "one"], &["x1"]).with_name("add"),
            Node::new("Add", &["x1", "one"], &["x2"]).with_name("twice"),
            Node::new("Sub", &["x2", "one"], &["x_out"]).with_name("back"),
        ],
        inputs: vec![
            fixed("i", DType::I64, &[]),
            fixed("c", DType::Bool, &[]),
            fixed("x", DType::F32, &[]),
        ],
        outputs: vec![
            fixed("c_out", DType::Bool, &[]),
            fixed("x_out", DType::F32, &[]),
        ],
        initializers: vec![("one".into(), scalar_f32(1.0))],
        ..Default::default()
    };
    Ok(ModelBuilder::new(17)
        .input(fixed("M", DType::I64, &[]))
        .initializer("x0", scalar_f32(0.0))
        .node(
            Node::new("Loop", &["M", "", "x0"], &["y"])
                .with_name("long_loop")
                .with_attr("body", Attribute::Graph(Box::new(body))),
        )
        .output(fixed("y", DType::F32, &[]))
        .build()?)
}

/// One `MatMul` of two `s × s` inputs.
fn long_matmul(s: usize) -> anyhow::Result<Model> {
    Ok(ModelBuilder::new(17)
        .input(fixed("a", DType::F32, &[s, s]))
        .input(fixed("b", DType::F32, &[s, s]))
        .node(Node::new("MatMul", &["a", "b"], &["c"]).with_name("long_mm"))
        .output(fixed("c", DType::F32, &[s, s]))
        .build()?)
}

/// Runs `plan` on `inputs` `trials` times, cancelling each run after 20–30 ms;
/// returns the cancel→return latencies, sorted.
fn measure(
    plan: &Plan,
    inputs: &[(&str, &Tensor)],
    trials: usize,
) -> anyhow::Result<Vec<Duration>> {
    let token = CancelToken::new();
    let opts = RunOptions::new().cancel_token(token.clone());
    let mut lags = Vec::with_capacity(trials);
    for t in 0..trials {
        token.reset();
        let (res, returned, cancelled) = std::thread::scope(|s| {
            let h = s.spawn(|| {
                let r = plan.run_with(inputs, &opts);
                (r, Instant::now())
            });
            // Vary the phase of the cancellation relative to the run's steps/blocks.
            std::thread::sleep(Duration::from_micros(20_000 + (t as u64 * 1_237) % 10_000));
            let at = Instant::now();
            token.cancel();
            let (r, returned) = h.join().expect("the run thread does not panic");
            (r, returned, at)
        });
        match res {
            Err(e) if e.kind() == ErrorKind::Cancelled => {}
            Err(e) => bail!("trial {t}: expected a cancellation, got {e}"),
            Ok(_) => bail!("trial {t}: the run finished before it was cancelled"),
        }
        lags.push(returned.saturating_duration_since(cancelled));
    }
    lags.sort();
    Ok(lags)
}

fn report(name: &str, lags: &[Duration]) {
    let q = |p: f64| lags[((lags.len() - 1) as f64 * p).round() as usize];
    println!(
        "{name:<12} {:>5} {:>12.3} {:>12.3} {:>12.3}",
        lags.len(),
        q(0.5).as_secs_f64() * 1e3,
        q(0.9).as_secs_f64() * 1e3,
        q(1.0).as_secs_f64() * 1e3,
    );
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let trials: usize = match args.next() {
        Some(a) => a.parse().context("TRIALS must be a number")?,
        None => 50,
    };
    ensure!(trials > 0, "TRIALS must be at least 1");
    let mut opts = PlanOptions::default();
    if let Some(a) = args.next() {
        opts = PlanOptions::with_threads(a.parse().context("THREADS must be a number")?);
    }
    opts.limits = RunLimits::unlimited();

    let loop_plan = Plan::new(&short_steps()?, opts.clone())?;
    let m = Tensor::I64(ArrayD::from_elem(vec![], 1i64 << 50));
    let loop_lags = measure(&loop_plan, &[("M", &m)], trials)?;

    let s = 2048;
    let mm_plan = Plan::new(&long_matmul(s)?, opts)?;
    let a = Tensor::F32(ArrayD::from_elem(vec![s, s], 0.5f32));
    let b = Tensor::F32(ArrayD::from_elem(vec![s, s], 0.25f32));
    let mm_lags = measure(&mm_plan, &[("a", &a), ("b", &b)], trials)?;

    println!("cancel() -> run returns (ms)");
    println!(
        "{:<12} {:>5} {:>12} {:>12} {:>12}",
        "model", "runs", "median", "p90", "max"
    );
    report("short steps", &loop_lags);
    report("long MatMul", &mm_lags);
    Ok(())
}

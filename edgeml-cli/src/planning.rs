//! Loading and planning a model the same way in every command: the INT8 operators of
//! `edgeml-quant` are registered, and QDQ groups are fused onto them unless asked not to.

use anyhow::Context;
use edgeml_onnx::{Model, Plan, PlanOptions};
use std::path::Path;

/// Loads `path` and plans it with `opts`. With `fuse_qdq`, `DequantizeLinear → op →
/// QuantizeLinear` groups run as fused INT8 operators (as onnxruntime does); without,
/// they run as written (the float operator between Q/DQ pairs). Prints what the fusion
/// changed to stderr when it changed anything.
///
/// # Errors
/// The model does not load or does not plan.
pub(crate) fn load_and_plan(
    path: &Path,
    opts: PlanOptions,
    fuse_qdq: bool,
) -> anyhow::Result<Plan> {
    let mut model = Model::load(path).with_context(|| format!("cannot load {}", path.display()))?;
    let registry = edgeml_quant::onnx::registry();
    if fuse_qdq {
        let report = edgeml_quant::onnx::fuse_qdq(&mut model);
        if report.total() > 0 {
            eprintln!("int8      {report}");
        }
    }
    Plan::from_model(model, opts, &registry).context("cannot plan the model")
}

/// The bounds of `edgeml run` and `edgeml bench`: a per-run timeout and the run limits
/// of [`edgeml_onnx::RunLimits`].
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Bounds {
    /// Stop a run that takes longer than SECONDS (checked between operators and loop
    /// iterations) with an error naming the node that was running. Also caps the time
    /// spent folding constants while planning. For `bench`, each run gets SECONDS.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Most `Loop` iterations one run may execute, all loops together, nested ones
    /// included [default: 10000000].
    #[arg(long, value_name = "N")]
    max_loop_iterations: Option<u64>,
    /// Most memory, in MiB, that the intermediate values of one run may hold at once
    /// [default: 4096].
    #[arg(long, value_name = "MIB")]
    max_memory_mib: Option<u64>,
}

impl Bounds {
    /// The timeout as a duration, if one was given.
    ///
    /// # Errors
    /// A timeout that is not a positive, finite number of seconds.
    fn timeout(&self) -> anyhow::Result<Option<std::time::Duration>> {
        match self.timeout {
            None => Ok(None),
            Some(s) if s.is_finite() && s > 0.0 => std::time::Duration::try_from_secs_f64(s)
                .map(Some)
                .with_context(|| format!("--timeout {s}: too long")),
            Some(s) => anyhow::bail!("--timeout {s}: give a positive number of seconds"),
        }
    }

    /// Sets the plan's limits from the options.
    ///
    /// # Errors
    /// An invalid `--timeout`.
    pub(crate) fn apply(&self, opts: &mut PlanOptions) -> anyhow::Result<()> {
        let mut l = opts.limits;
        if let Some(n) = self.max_loop_iterations {
            l = l.max_loop_iterations(n).max_loop_trip_count(n);
        }
        if let Some(m) = self.max_memory_mib {
            l = l.max_live_bytes(m.saturating_mul(1 << 20));
        }
        if let Some(t) = self.timeout()? {
            l = l.max_fold_time(l.fold_time().min(t));
        }
        opts.limits = l;
        Ok(())
    }

    /// Options for one run: its deadline starts now.
    ///
    /// # Errors
    /// An invalid `--timeout`.
    pub(crate) fn run_options(&self) -> anyhow::Result<edgeml_onnx::RunOptions> {
        let o = edgeml_onnx::RunOptions::new();
        Ok(match self.timeout()? {
            Some(t) => o.timeout(t),
            None => o,
        })
    }
}

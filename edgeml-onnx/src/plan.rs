//! The interpreter: plan a model once, run it many times.
//!
//! [`Plan::new`] does all the work that does not depend on input values:
//!
//! - **order**: nodes are sorted topologically (files are not always in order);
//!   dependencies through `If`/`Loop` subgraphs on outer-scope values count;
//! - **constant folding**: a node whose inputs are all known (initializers, `Constant`s,
//!   earlier folded values) runs once at plan time and its outputs become constants;
//!   an `If` whose condition is known is replaced by the branch it takes;
//! - **kernel choice**: every node's [`OpFactory`](crate::OpFactory) is called with the
//!   constant inputs, so kernels can pre-pack weights; unknown operators fail here,
//!   naming op, domain and opset;
//! - **liveness**: each intermediate value is dropped right after its last consumer.
//!
//! [`Plan::run`] takes `&self`, so one plan can serve many threads (`Plan` is
//! `Send + Sync`). Inputs are validated against the declared graph inputs: names,
//! element types, ranks and fixed dimensions; symbolic dimensions (`"batch"`) are bound
//! from the actual inputs on each run and must agree across inputs.
//!
//! Every run is bounded ([`RunLimits`] in [`PlanOptions::limits`]: loop iterations, live
//! memory; [`RunOptions`] for [`Plan::run_with`]: a deadline and a [`CancelToken`]);
//! constant folding is bounded by the same limits' folding budget.
//!
//! Graph inputs that have an initializer are constants (they are folded and cannot be
//! overridden at run time). Non-finite values flow through operators as IEEE arithmetic
//! says (no errors are raised for NaN/Inf in activations).

pub(crate) mod budget;
mod build;
mod control;
pub(crate) mod fused;
pub(crate) mod optimize;
mod program;

use crate::{Dim, Error, Model, Registry, Result, RunLimits, Tensor, ValueInfo};
pub use budget::{CancelToken, RunMeter, RunOptions, RunStop};
use program::Program;
use std::collections::HashMap;
use std::sync::Arc;

/// Options of [`Plan::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PlanOptions {
    /// Worker threads for the kernels: `None` = available cores, `Some(1)` = run on the
    /// calling thread only. A rayon pool is built once per plan when more than one
    /// thread is requested. Tiny runs (weights plus inputs under 32 Ki elements, e.g.
    /// the digits CNN) stay on the calling thread even then: entering the pool would
    /// cost more than the model.
    pub threads: Option<usize>,
    /// Skip constant folding (every node runs at run time). Default `false`.
    pub no_constant_folding: bool,
    /// Plan-time graph rewrites, like onnxruntime's graph optimization levels. Default
    /// [`GraphOptLevel::Extended`]; [`GraphOptLevel::Disabled`] plans the graph exactly
    /// as written (useful to compare fused and unfused results).
    pub optimization: GraphOptLevel,
    /// Let the pool's idle workers spin between parallel passes. Default `true`: while
    /// a run is in progress on a plan with more than one thread, the workers the run's
    /// own thread is not using wait for work by spinning (stealing pending tasks as soon
    /// as they appear) instead of going to sleep, as onnxruntime's intra-op pool does by
    /// default (`session.intra_op.allow_spinning`). A model runs dozens of short
    /// parallel passes, and waking a sleeping thread for each costs 5–50 µs. Spinning
    /// burns CPU time on those cores for the length of the run (never between runs);
    /// set this to `false` on battery-powered devices or when the cores are shared with
    /// other busy work.
    pub spin: bool,
    /// Bounds on constant folding while planning and on every run of the plan: loop
    /// iterations, live memory (see [`RunLimits`] for the defaults). Deadlines and
    /// cancellation are per run: [`Plan::run_with`].
    pub limits: RunLimits,
    /// Whether `MatMul`/`Gemm`/`Conv` layers with a constant, mostly-zero weight (a
    /// pruned model) run the sparse kernel. Default [`SparseMode::Auto`].
    pub sparse: SparseMode,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            threads: None,
            no_constant_folding: false,
            optimization: GraphOptLevel::default(),
            spin: true,
            limits: RunLimits::default(),
            sparse: SparseMode::default(),
        }
    }
}

/// How much [`Plan::new`] rewrites the main graph before choosing kernels (the
/// counterpart of onnxruntime's `GraphOptimizationLevel`). Every rewrite keeps the
/// graph's outputs and their names; values that a rewrite removes are no longer seen by
/// [`Plan::run_observed`].
///
/// - `Disabled`: no rewrites.
/// - `Basic`: semantics-preserving removals: `Identity` and inference-mode `Dropout`
///   are dropped (their consumers read the input directly), and a
///   `BatchNormalization` (inference mode, constant `scale`/`B`/`mean`/`var`) that is
///   the only consumer of a `Conv` with constant weights is folded into that
///   convolution's weights and bias (`W' = W·s`, `B' = (B − mean)·s + b` with
///   `s = scale / sqrt(var + epsilon)`; a missing bias becomes zeros). Folding changes
///   rounding slightly (the product is computed once, in `f64`, at plan time).
/// - `Extended` (default): also fuses a `Conv` with the activation that is its only
///   consumer (`Relu`, `LeakyRelu`, `Sigmoid`, `Tanh`, `HardSigmoid`, `Clip` with
///   constant bounds) into onnxruntime's `com.microsoft` `FusedConv`, and a `Conv`
///   whose only consumer is a two-operand `Add`/`Sum` (a residual connection), plus an
///   optional activation after it, into one step that adds the other operand `Z` to the
///   convolution's output in place. When `Z`'s shape turns out to differ from the
///   convolution's output at run time (a broadcasting `Add`), that step falls back to
///   the unfused `Add`, so results never depend on the optimization. A `Concat` on
///   axis 1 whose operands are all such chains without `Z` becomes one step in which,
///   at batch 1, each convolution writes its channels straight into the concatenated
///   output (other batches run the convolutions, then the `Concat`). A `MatMul` with a
///   constant 2-D weight whose only consumer is an `Add` of a constant bias along the
///   last axis (`[N]`, `[1, N]`, …; any number of leading axes on `A`) becomes one step
///   that adds the bias to the product in place (bit-identical to the `Add`).
///
/// A value is only fused away when it has exactly one consumer and is not a graph
/// output. Subgraphs (`If`/`Loop` bodies) are planned unoptimized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GraphOptLevel {
    /// No rewrites.
    Disabled,
    /// `Identity`/`Dropout` removal and BatchNormalization folding.
    Basic,
    /// `Basic` plus Conv + activation, Conv + Add (+ activation), Conv chains +
    /// channel `Concat` and MatMul + bias `Add` fusion.
    #[default]
    Extended,
}

/// How `MatMul` and `Gemm` multiply by a constant 2-D weight (their `B` input), and
/// `Conv`/`FusedConv` by a constant weight: the packed dense SGEMM
/// ([`crate::kernels::sgemm`], [`crate::kernels::sgemm_packed_b`]) or the sparse kernel
/// over the weight's non-zeros, compressed once at plan time ([`crate::kernels::spmm`],
/// [`crate::kernels::spmm_packed_b`]).
///
/// A convolution's weight `[M, C/group, KH, KW]` is judged as one
/// `C/group·KH·KW × M` matrix (all groups together). Depthwise convolutions (one input
/// channel per group, more than one group) are always dense: their direct kernel
/// already reads only each filter's taps.
///
/// The INT8 matrix products that `edgeml-quant` registers (`QLinearMatMul`,
/// `MatMulInteger`, `QGemm`, …) read this option too, with their own rule
/// (`edgeml_quant::sparse::prefer_sparse_int8`): `Sparse` runs their constant 2-D
/// weights through its sparse INT8 product (bit-identical outputs), `Dense` never, and
/// `Auto` only when the selected INT8 kernel path is `avx2` and at least 95 % of the
/// weight equals its zero point; on every other INT8 path `Auto` keeps them dense
/// (on `avx512vnni` the dense INT8 GEMM measured faster up to 99 % zeros, and the
/// others are not measured).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SparseMode {
    /// Sparse where [`crate::kernels::prefer_sparse`] says it is faster (at least 80 %
    /// zeros, measured), dense elsewhere. For `edgeml-quant`'s INT8 matrix products:
    /// sparse only on the `avx2` INT8 kernel path and from 95 % zeros (entries equal to
    /// their zero point), dense on the other paths (see above).
    #[default]
    Auto,
    /// Always dense (as before pruned weights were computed sparse).
    Dense,
    /// Sparse for every constant 2-D float weight and every constant non-depthwise
    /// convolution weight, however dense, and for the constant 2-D weights of the INT8
    /// matrix products (for tests and benchmarks, and to run pruned INT8 weights sparse
    /// on a path where `Auto` keeps them dense).
    Sparse,
}

impl SparseMode {
    /// Whether a `k × n` weight with `zeros` zero entries is computed sparse.
    pub fn use_sparse(self, k: usize, n: usize, zeros: usize) -> bool {
        match self {
            SparseMode::Auto => crate::kernels::prefer_sparse(k, n, zeros),
            SparseMode::Dense => false,
            SparseMode::Sparse => true,
        }
    }
}

impl PlanOptions {
    /// These options with [`PlanOptions::sparse`] set to `sparse`.
    pub fn with_sparse(mut self, sparse: SparseMode) -> Self {
        self.sparse = sparse;
        self
    }

    /// Options with `threads` worker threads.
    pub fn with_threads(threads: usize) -> Self {
        Self {
            threads: Some(threads),
            ..Self::default()
        }
    }
}

/// A planned model, ready to run many times.
pub struct Plan {
    program: Program,
    inputs: Vec<ValueInfo>,
    pool: Option<rayon::ThreadPool>,
    threads: usize,
    /// Idle workers spin during a run ([`PlanOptions::spin`]).
    spin: bool,
    /// Elements of all constants the steps read (weights): with the run's input sizes,
    /// the estimate of a run's work that decides whether the pool is worth entering.
    const_elems: usize,
    /// Loop and memory bounds of every run.
    limits: RunLimits,
}

/// Runs whose weights plus inputs hold fewer elements than this stay on the calling
/// thread even when the plan has a pool: handing a run to the pool costs a cross-thread
/// wake-up (5–20 µs), more than such a model takes (the digits CNN runs in ~5 µs), and
/// every operator of it would run on one thread anyway (operators only split passes of
/// ≥ 16 Ki elements).
const INLINE_BELOW_ELEMS: usize = 1 << 15;

/// Keeps a pool worker busy-waiting, executing any pending task of the pool, until
/// `done` is set ([`PlanOptions::spin`]). Spawned once per extra worker at the start of
/// a run; `home` is the worker that runs the program. If `home` itself picks the task
/// up (e.g. while it waits for a stolen task), it returns at once: it must not spin on a
/// flag that only its own suspended caller can set.
fn keep_awake(done: &std::sync::atomic::AtomicBool, home: Option<usize>) {
    if rayon::current_thread_index() == home {
        return;
    }
    while !done.load(std::sync::atomic::Ordering::Acquire) {
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            // A short pause between looks at the queues, so that the spinning thread
            // does not keep pulling the deque's cache lines away from the worker that
            // is pushing tasks onto it.
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
    }
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("inputs", &self.inputs)
            .field("outputs", &self.output_names())
            .field("steps", &self.program.num_steps())
            .field("threads", &self.threads)
            .field("spin", &self.spin)
            .finish()
    }
}

impl Plan {
    /// Plans `model` with the built-in operators ([`crate::ops::default_registry`]).
    ///
    /// # Errors
    /// An operator that is not registered for its domain and opset; invalid attributes;
    /// a graph that references undefined values or has a cycle; failures of constant
    /// folding; a thread pool that cannot be created.
    pub fn new(model: &Model, options: PlanOptions) -> Result<Plan> {
        Self::with_registry(model, options, &crate::ops::default_registry())
    }

    /// Plans `model` with the operators of `registry` (e.g. the default registry plus
    /// INT8 operators).
    ///
    /// # Errors
    /// As [`Plan::new`].
    pub fn with_registry(model: &Model, options: PlanOptions, registry: &Registry) -> Result<Plan> {
        let inits = model
            .graph
            .initializers
            .iter()
            .map(|(n, t)| (n.clone(), Arc::new(t.clone())))
            .collect();
        Self::build(model, inits, options, registry)
    }

    /// Plans `model`, taking ownership so that its initializers are moved into the plan
    /// rather than copied (halves peak memory for large models).
    ///
    /// # Errors
    /// As [`Plan::new`].
    pub fn from_model(mut model: Model, options: PlanOptions, registry: &Registry) -> Result<Plan> {
        let inits = std::mem::take(&mut model.graph.initializers)
            .into_iter()
            .map(|(n, t)| (n, Arc::new(t)))
            .collect();
        Self::build(&model, inits, options, registry)
    }

    fn build(
        model: &Model,
        inits: Vec<(String, Arc<Tensor>)>,
        options: PlanOptions,
        registry: &Registry,
    ) -> Result<Plan> {
        let threads = options
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let pool = if threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .map_err(|e| Error::InvalidInput(format!("cannot build thread pool: {e}")))?,
            )
        } else {
            None
        };
        let mut opsets = HashMap::new();
        for o in &model.opset_imports {
            let d = if o.domain == "ai.onnx" { "" } else { &o.domain };
            opsets.insert(d.to_owned(), o.version);
        }
        if options.optimization == GraphOptLevel::Extended {
            // The fused nodes the optimizer writes are onnxruntime's contrib operators.
            opsets.entry(optimize::MS_DOMAIN.to_owned()).or_insert(1);
        }
        let ctx = build::Ctx {
            registry,
            opsets: &opsets,
            fold: !options.no_constant_folding,
            optimization: options.optimization,
            limits: options.limits,
            sparse: options.sparse,
            fold_spent: std::cell::Cell::new(std::time::Duration::ZERO),
        };
        let init_names: std::collections::HashSet<&str> =
            inits.iter().map(|(n, _)| n.as_str()).collect();
        let inputs: Vec<ValueInfo> = model
            .graph
            .inputs
            .iter()
            .filter(|i| !init_names.contains(i.name.as_str()))
            .cloned()
            .collect();
        drop(init_names);
        let program = build::build_main(&ctx, &model.graph, &inputs, inits)?;
        let const_elems = program.const_elems();
        Ok(Plan {
            program,
            inputs,
            pool,
            threads,
            spin: options.spin,
            const_elems,
            limits: options.limits,
        })
    }

    /// The runtime inputs (graph inputs without an initializer), as declared.
    pub fn inputs(&self) -> &[ValueInfo] {
        &self.inputs
    }

    /// The output names, in graph order.
    pub fn output_names(&self) -> Vec<&str> {
        self.program.output_names()
    }

    /// The number of worker threads this plan runs with.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The element type and shape of the value `name` (a graph input, initializer,
    /// intermediate value or output) as known at plan time: exact for constants, as
    /// declared in the model, or inferred by planning (see the crate README, "Shape
    /// inference"). Symbolic dimensions stay [`Dim::Symbolic`]; dimensions only a run
    /// can tell are [`Dim::Unknown`]. `None` when nothing is known about `name`.
    pub fn value_type(&self, name: &str) -> Option<&crate::InputType> {
        self.program.types.get(name)
    }

    /// How many steps of the main graph multiply by their constant weight with the
    /// sparse kernel ([`PlanOptions::sparse`]): `MatMul`, `Gemm` and `Conv` (also when
    /// fused with its activation, a residual `Add` or a channel `Concat`; such a step
    /// counts once), and registered operators that say so (`edgeml-quant`'s INT8
    /// matrix products): the steps whose [`crate::Operator::runs_sparse`] is `true`.
    pub fn sparse_steps(&self) -> usize {
        self.program
            .steps
            .iter()
            .filter(|s| s.op.runs_sparse())
            .count()
    }

    /// The number of operator invocations per run (after folding).
    pub fn num_steps(&self) -> usize {
        self.program.num_steps()
    }

    /// The loop and memory limits every run of this plan is held to.
    pub fn limits(&self) -> &RunLimits {
        &self.limits
    }

    /// Runs the model on named inputs and returns the graph outputs by name, in graph
    /// order.
    ///
    /// # Errors
    /// Missing, unknown or duplicate inputs, wrong element types or shapes
    /// ([`Error::InvalidInput`], [`Error::ShapeMismatch`]); errors of operators; a
    /// [`RunLimits`] bound exceeded ([`Error::LimitExceeded`], naming the node).
    pub fn run(&self, inputs: &[(&str, Tensor)]) -> Result<Vec<(String, Tensor)>> {
        let refs: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (*n, t)).collect();
        self.run_refs(&refs)
    }

    /// [`Plan::run`] with inputs in a map.
    ///
    /// # Errors
    /// As [`Plan::run`].
    pub fn run_map(&self, inputs: &HashMap<String, Tensor>) -> Result<Vec<(String, Tensor)>> {
        let refs: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
        self.run_refs(&refs)
    }

    /// [`Plan::run`] on borrowed inputs.
    ///
    /// # Errors
    /// As [`Plan::run`].
    pub fn run_refs(&self, inputs: &[(&str, &Tensor)]) -> Result<Vec<(String, Tensor)>> {
        self.run_observed(inputs, &mut |_, _| {})
    }

    /// [`Plan::run`] with a deadline and/or a cancellation token (onnxruntime's
    /// `RunOptions`). Both are checked before every step of the graph and of its
    /// `Loop`/`If` bodies, and before every loop iteration; a single operator is not
    /// interrupted, so a run stops within one step's time of the deadline or the
    /// cancellation. The plan stays usable afterwards.
    ///
    /// # Errors
    /// As [`Plan::run`]; [`Error::DeadlineExceeded`] or [`Error::Cancelled`] naming the
    /// node at which the run stopped.
    pub fn run_with(
        &self,
        inputs: &[(&str, &Tensor)],
        options: &RunOptions,
    ) -> Result<Vec<(String, Tensor)>> {
        self.run_observed_with(inputs, options, &mut |_, _| {})
    }

    /// [`Plan::run`] calling `observer(name, value)` for every value computed at run time
    /// (node outputs, not constants), e.g. to collect calibration statistics.
    ///
    /// Values that the plan's graph rewrites remove (the output of a `Conv` fused with
    /// its activation, of a folded `BatchNormalization`, of an `Identity`) are not
    /// computed, so not observed. To observe every named value of the graph as written,
    /// plan with [`PlanOptions::optimization`] set to [`GraphOptLevel::Disabled`]: every
    /// node output that depends on a runtime input is then reported under its own name.
    ///
    /// # Errors
    /// As [`Plan::run`].
    pub fn run_observed(
        &self,
        inputs: &[(&str, &Tensor)],
        observer: &mut (dyn FnMut(&str, &Tensor) + Send),
    ) -> Result<Vec<(String, Tensor)>> {
        self.run_observed_with(inputs, &RunOptions::default(), observer)
    }

    /// [`Plan::run_observed`] with [`RunOptions`].
    ///
    /// # Errors
    /// As [`Plan::run_with`].
    pub fn run_observed_with(
        &self,
        inputs: &[(&str, &Tensor)],
        options: &RunOptions,
        observer: &mut (dyn FnMut(&str, &Tensor) + Send),
    ) -> Result<Vec<(String, Tensor)>> {
        let ordered = self.validate(inputs)?;
        let state = std::sync::Arc::new(budget::RunState::new(self.limits, options));
        let run = |observer: &mut (dyn FnMut(&str, &Tensor) + Send)| {
            let _entered = budget::enter(state.clone());
            self.program.run(&ordered, observer, &state)
        };
        let work = ordered
            .iter()
            .fold(self.const_elems, |acc, t| acc.saturating_add(t.len()));
        let outs = match &self.pool {
            Some(p) if work >= INLINE_BELOW_ELEMS => p.install(|| {
                let done = std::sync::atomic::AtomicBool::new(false);
                let home = rayon::current_thread_index();
                rayon::scope(|s| {
                    if self.spin {
                        for _ in 1..self.threads {
                            s.spawn(|_| keep_awake(&done, home));
                        }
                    }
                    let r = run(observer);
                    done.store(true, std::sync::atomic::Ordering::Release);
                    r
                })
            })?,
            _ => run(observer)?,
        };
        Ok(self
            .program
            .output_names()
            .into_iter()
            .map(str::to_owned)
            .zip(outs)
            .collect())
    }

    /// Checks names, dtypes and shapes; returns the inputs in declaration order.
    fn validate<'t>(&self, given: &[(&str, &'t Tensor)]) -> Result<Vec<&'t Tensor>> {
        let mut by_name: HashMap<&str, &'t Tensor> = HashMap::new();
        for (n, t) in given {
            if !self.inputs.iter().any(|i| i.name == *n) {
                let known: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
                return Err(Error::InvalidInput(format!(
                    "unknown input {n:?}; the model's inputs are {known:?}"
                )));
            }
            if by_name.insert(n, t).is_some() {
                return Err(Error::InvalidInput(format!("input {n:?} given twice")));
            }
        }
        let mut bound: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::with_capacity(self.inputs.len());
        for info in &self.inputs {
            let t = by_name
                .get(info.name.as_str())
                .copied()
                .ok_or_else(|| Error::InvalidInput(format!("missing input {:?}", info.name)))?;
            if let Some(dt) = info.dtype
                && t.dtype() != dt
            {
                return Err(Error::InvalidInput(format!(
                    "input {:?} has element type {:?}, the model declares {dt:?}",
                    info.name,
                    t.dtype()
                )));
            }
            if let Some(dims) = &info.shape {
                check_shape(&info.name, dims, t.shape(), &mut bound)?;
            }
            out.push(t);
        }
        Ok(out)
    }
}

fn check_shape<'a>(
    name: &str,
    dims: &'a [Dim],
    shape: &[usize],
    bound: &mut HashMap<&'a str, usize>,
) -> Result<()> {
    if dims.len() != shape.len() {
        return Err(Error::ShapeMismatch(format!(
            "input {name:?} has shape {shape:?} (rank {}), the model declares rank {}",
            shape.len(),
            dims.len()
        )));
    }
    for (i, (d, &s)) in dims.iter().zip(shape).enumerate() {
        match d {
            Dim::Known(k) if *k != s => {
                return Err(Error::ShapeMismatch(format!(
                    "input {name:?} has shape {shape:?}, but dimension {i} must be {k}"
                )));
            }
            // "?" is how some exporters (paddle2onnx) write "unknown", not a name shared
            // by dimensions that must agree.
            Dim::Symbolic(sym) if sym != "?" => {
                let v = *bound.entry(sym.as_str()).or_insert(s);
                if v != s {
                    return Err(Error::ShapeMismatch(format!(
                        "input {name:?} has shape {shape:?}: dimension {i} ({sym:?}) is {s}, \
                         but another input bound {sym:?} to {v}"
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

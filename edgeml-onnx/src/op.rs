//! The operator interface and the registry that maps ONNX ops to implementations.
//!
//! An [`OpFactory`] is looked up by `(domain, op_type, opset)` when a plan is built; it
//! inspects the node (attributes, which inputs are constants, the opset in force) and
//! returns a ready-to-run [`Operator`]. Factories fail at plan time with a clear error, so
//! a model either plans completely or not at all.
//!
//! `edgeml-quant` registers its INT8 operators here; users can register their own
//! without forking.

use crate::{Node, Result, Tensor};
use std::sync::Arc;

/// What a factory knows when it builds an operator for one node.
#[derive(Debug)]
#[non_exhaustive]
pub struct BuildContext<'a> {
    /// The node being built.
    pub node: &'a Node,
    /// The opset version in force for the node's domain.
    pub opset: i64,
    /// For each node input: the value if it is known at plan time (an initializer or a
    /// folded constant), else `None`. Omitted optional inputs are `None` too.
    pub constant_inputs: Vec<Option<&'a Tensor>>,
    /// For each node input: its element type and shape as far as known at plan time
    /// (exact for constants; as declared on the graph's inputs, `value_info` and outputs
    /// otherwise), or `None`. A hint for kernel choice: run-time inputs may still differ
    /// in symbolic dimensions.
    pub input_types: Vec<Option<InputType>>,
    /// Whether constant weights of `MatMul`/`Gemm`/`Conv` are computed sparse
    /// ([`crate::PlanOptions::sparse`]).
    pub sparse: crate::plan::SparseMode,
}

/// What the planner knows about one operator input before running.
#[derive(Debug, Clone, PartialEq)]
pub struct InputType {
    /// Element type, if known.
    pub dtype: Option<edgeml_core::DType>,
    /// Shape, if the rank is known (dimensions may be symbolic or unknown).
    pub shape: Option<Vec<crate::Dim>>,
}

impl<'a> BuildContext<'a> {
    /// Creates a context (used by the planner and by tests of operators).
    pub fn new(node: &'a Node, opset: i64, constant_inputs: Vec<Option<&'a Tensor>>) -> Self {
        Self {
            node,
            opset,
            constant_inputs,
            input_types: Vec::new(),
            sparse: crate::plan::SparseMode::default(),
        }
    }

    /// Sets [`BuildContext::sparse`].
    pub fn with_sparse(mut self, sparse: crate::plan::SparseMode) -> Self {
        self.sparse = sparse;
        self
    }

    /// Sets [`BuildContext::input_types`].
    pub fn with_input_types(mut self, input_types: Vec<Option<InputType>>) -> Self {
        self.input_types = input_types;
        self
    }
}

/// A ready-to-run operator, built once per node at plan time.
///
/// # Implementing
/// `run` receives one entry per node input (`None` for an omitted optional input) and
/// returns one tensor per node output, in order (omitted trailing outputs may be left
/// out). It must not panic on any input: wrong shapes or types are errors naming the node.
/// Operators are shared across threads, so `run` takes `&self`; per-call scratch memory is
/// allocated in `run` or kept in thread-local storage.
///
/// # Errors
/// Shape or dtype mismatches discovered at run time, unsupported input types.
pub trait Operator: Send + Sync + std::fmt::Debug {
    /// Executes the operator.
    ///
    /// # Errors
    /// See the trait documentation.
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>>;

    /// Whether [`Operator::run_consuming`] can reuse the memory of input 0 (e.g. a
    /// `Reshape`, which only relabels the shape). When this is `true` and no later step
    /// reads input 0, the interpreter hands input 0 over by value instead of by reference.
    fn consumes_first_input(&self) -> bool {
        false
    }

    /// Like [`Operator::run`], with input 0 given by value (`rest` holds inputs 1, 2, …).
    /// The default runs [`Operator::run`] on a reference to `first`.
    ///
    /// # Errors
    /// As for [`Operator::run`].
    fn run_consuming(&self, first: Tensor, rest: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let mut args = Vec::with_capacity(rest.len() + 1);
        args.push(Some(&first));
        args.extend_from_slice(rest);
        self.run(&args)
    }

    /// The operator as [`std::any::Any`], for plan-time rewrites that only apply to a
    /// known implementation (e.g. convolutions writing straight into a `Concat`'s
    /// output only when the registry's `Conv` is edgeml's own). The default, `None`,
    /// opts out of such rewrites, which is always correct.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// Whether this operator multiplies by a constant weight with a sparse kernel, as
    /// [`crate::PlanOptions::sparse`] chose at build time (counted by
    /// [`crate::Plan::sparse_steps`]). The default is `false`; edgeml's `MatMul`,
    /// `Gemm` and `Conv` (and the fused steps built around them) say `true` when they
    /// chose the sparse kernel, as do operators registered from other crates (the INT8
    /// products of `edgeml-quant`). A step that wraps other operators answers for them.
    fn runs_sparse(&self) -> bool {
        false
    }
}

/// Runs `op` on `args`, turning a panic inside the operator (a bug, or a hostile input
/// an operator failed to validate) into [`crate::Error::Internal`] naming `what`, so a
/// bad model never takes the caller's process down.
pub(crate) fn run_guarded(
    op: &dyn Operator,
    args: &[Option<&Tensor>],
    what: &str,
) -> Result<Vec<Tensor>> {
    guarded(what, || op.run(args))
}

/// [`run_guarded`] for [`Operator::run_consuming`].
pub(crate) fn run_guarded_consuming(
    op: &dyn Operator,
    first: Tensor,
    rest: &[Option<&Tensor>],
    what: &str,
) -> Result<Vec<Tensor>> {
    guarded(what, || op.run_consuming(first, rest))
}

fn guarded(what: &str, f: impl FnOnce() -> Result<Vec<Tensor>>) -> Result<Vec<Tensor>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Err(crate::Error::Internal(format!("{what} panicked: {msg}")))
    })
}

/// Builds an [`Operator`] for a node.
///
/// Implemented for every `Fn(&BuildContext) -> Result<Box<dyn Operator>>`.
///
/// # Errors
/// Unsupported attribute combinations or input types, named with the node.
pub trait OpFactory: Send + Sync {
    /// Builds the operator for `ctx.node`.
    ///
    /// # Errors
    /// See the trait documentation.
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>>;
}

impl<F> OpFactory for F
where
    F: Fn(&BuildContext<'_>) -> Result<Box<dyn Operator>> + Send + Sync,
{
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
        self(ctx)
    }
}

/// One registry entry: an implementation valid for opsets `since..=until` of an op.
#[derive(Clone)]
struct Entry {
    domain: String,
    op_type: String,
    since: i64,
    until: i64,
    factory: Arc<dyn OpFactory>,
}

/// Maps `(domain, op_type, opset range)` to operator factories.
///
/// Later registrations take precedence over earlier ones for overlapping ranges, so
/// users can override built-in operators.
#[derive(Clone, Default)]
pub struct Registry {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("entries", &self.entries.len())
            .finish()
    }
}

fn norm_domain(d: &str) -> &str {
    if d == "ai.onnx" { "" } else { d }
}

impl Registry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Registers `factory` for `op_type` in `domain` (`""` = default ONNX domain) for
    /// opset versions `since..=until` (use `i64::MAX` for "all later versions").
    pub fn register(
        &mut self,
        domain: &str,
        op_type: &str,
        since: i64,
        until: i64,
        factory: impl OpFactory + 'static,
    ) -> &mut Self {
        self.entries.push(Entry {
            domain: norm_domain(domain).to_owned(),
            op_type: op_type.to_owned(),
            since,
            until,
            factory: Arc::new(factory),
        });
        self
    }

    /// Replaces the factory of every entry of `domain` whose operator type is in `ops`
    /// by `wrap(factory)`.
    pub(crate) fn wrap(
        &mut self,
        domain: &str,
        ops: &[&str],
        wrap: impl Fn(Arc<dyn OpFactory>) -> Arc<dyn OpFactory>,
    ) {
        for e in &mut self.entries {
            if e.domain == norm_domain(domain) && ops.contains(&e.op_type.as_str()) {
                e.factory = wrap(e.factory.clone());
            }
        }
    }

    /// The factory for `op_type` in `domain` at `opset`, if registered.
    pub fn lookup(&self, domain: &str, op_type: &str, opset: i64) -> Option<&dyn OpFactory> {
        let domain = norm_domain(domain);
        self.entries
            .iter()
            .rev()
            .find(|e| {
                e.domain == domain && e.op_type == op_type && (e.since..=e.until).contains(&opset)
            })
            .map(|e| &*e.factory)
    }
}

//! Resource limits and load options.

use std::path::PathBuf;

/// Upper bounds that a model must respect to be loaded.
///
/// Every check happens before the corresponding allocation, so a hostile file cannot
/// make the loader allocate more than these bounds (plus the protobuf parser's own
/// bounded overhead, see the crate README). The defaults suit models up to the ONNX
/// protobuf size limit of 2 GiB; lower them for untrusted input on small devices.
///
/// ```
/// use edgeml_onnx::Limits;
/// let l = Limits::default().max_model_bytes(64 << 20).max_nodes(10_000);
/// assert_eq!(l.model_bytes(), 64 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    model_bytes: u64,
    tensor_elements: u64,
    total_weight_bytes: u64,
    nodes: usize,
    graph_depth: usize,
}

impl Default for Limits {
    /// 2 GiB of protobuf (ONNX's own limit), 2³¹ elements per tensor, 8 GiB of
    /// weights in total (external data included), 1 000 000 nodes, subgraphs nested
    /// 16 deep.
    fn default() -> Self {
        Self {
            model_bytes: 2 << 30,
            tensor_elements: 1 << 31,
            total_weight_bytes: 8 << 30,
            nodes: 1_000_000,
            graph_depth: 16,
        }
    }
}

impl Limits {
    /// Limits that only stop the absurd: useful for trusted files larger than the
    /// defaults. Allocation is still checked against these bounds.
    pub fn unlimited() -> Self {
        Self {
            model_bytes: u64::MAX,
            tensor_elements: u64::MAX,
            total_weight_bytes: u64::MAX,
            nodes: usize::MAX,
            graph_depth: 30,
        }
    }

    /// Maximum size of the protobuf file in bytes.
    pub fn max_model_bytes(mut self, n: u64) -> Self {
        self.model_bytes = n;
        self
    }

    /// Maximum number of elements of one tensor (initializer, attribute, external).
    pub fn max_tensor_elements(mut self, n: u64) -> Self {
        self.tensor_elements = n;
        self
    }

    /// Maximum total decoded size of all tensors of the model, in bytes.
    pub fn max_total_weight_bytes(mut self, n: u64) -> Self {
        self.total_weight_bytes = n;
        self
    }

    /// Maximum number of nodes, subgraphs included.
    pub fn max_nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }

    /// Maximum nesting depth of subgraphs (the main graph has depth 0). Capped at 30 so
    /// that the protobuf parser's recursion limit stays meaningful.
    pub fn max_graph_depth(mut self, n: usize) -> Self {
        self.graph_depth = n.min(30);
        self
    }

    /// The configured maximum model size in bytes.
    pub fn model_bytes(&self) -> u64 {
        self.model_bytes
    }

    /// The configured maximum number of elements per tensor.
    pub fn tensor_elements(&self) -> u64 {
        self.tensor_elements
    }

    /// The configured maximum total weight bytes.
    pub fn total_weight_bytes(&self) -> u64 {
        self.total_weight_bytes
    }

    /// The configured maximum number of nodes.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// The configured maximum subgraph nesting depth.
    pub fn graph_depth(&self) -> usize {
        self.graph_depth
    }
}

/// Options of [`Model::load_with`](crate::Model::load_with) and
/// [`Model::from_bytes_with`](crate::Model::from_bytes_with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    pub(crate) limits: Limits,
    pub(crate) base_dir: Option<PathBuf>,
    pub(crate) validate: bool,
}

impl Default for LoadOptions {
    /// Default [`Limits`], no external-data folder (set by `load` to the model's
    /// folder), graph validation on.
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            base_dir: None,
            validate: true,
        }
    }
}

impl LoadOptions {
    /// Options with default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `limits`.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The folder that external-data paths are relative to. `Model::load` sets it to
    /// the model's folder; set it when loading bytes of a model with external data.
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    /// Whether to validate the graph after loading (names defined before use, no
    /// cycles, no duplicate definitions; see [`Graph::topo_order`](crate::Graph::topo_order)).
    /// On by default.
    pub fn validate(mut self, on: bool) -> Self {
        self.validate = on;
        self
    }

    /// The limits in force.
    pub fn get_limits(&self) -> &Limits {
        &self.limits
    }
}

/// Bounds on the work of planning and of each run of a [`Plan`](crate::Plan), so that a
/// hostile but valid model ends in a typed error instead of hanging or exhausting the
/// device ([`PlanOptions::limits`](crate::PlanOptions::limits)).
///
/// - **loop trip count**: iterations one execution of a `Loop` node may run. A `Loop`
///   whose `M` is larger is fine as long as its condition stops it in time (exporters
///   write `M = i64::MAX` for `while` loops); the error comes when the iteration past
///   the limit would start. Default 10⁷.
/// - **loop iterations**: iterations of all `Loop` nodes of one run together, nested
///   loops included (two nested loops of 10⁵ make 10¹⁰). Default 10⁷.
/// - **live bytes**: the most memory the values of one run may hold at once: every
///   intermediate value from the step that makes it to its last use, plus the state and
///   per-iteration outputs of running `Loop`s (the model's weights and the caller's
///   inputs are not counted). A step whose output size the plan knows is refused before
///   it allocates. Default 4 GiB.
/// - **fold elements**: constant folding at plan time skips a node whose outputs would
///   hold more elements than this; it runs at run time instead, under the run limits.
///   Default 2²⁶ (256 MiB of `f32`).
/// - **fold time**: once constant folding has taken this long in one `Plan::new`, the
///   remaining nodes are left to run time. Default 10 s.
///
/// Errors name the node: [`Error::LimitExceeded`](crate::Error::LimitExceeded).
///
/// ```
/// use edgeml_onnx::RunLimits;
/// let l = RunLimits::default().max_loop_iterations(1_000).max_live_bytes(64 << 20);
/// assert_eq!(l.loop_iterations(), 1_000);
/// assert_eq!(l.loop_trip_count(), 10_000_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    loop_trip_count: u64,
    loop_iterations: u64,
    live_bytes: u64,
    fold_elements: u64,
    fold_time: std::time::Duration,
}

impl Default for RunLimits {
    /// 10⁷ iterations per `Loop` and per run, 4 GiB of live values per run, folding of
    /// outputs up to 2²⁶ elements for at most 10 s per plan.
    fn default() -> Self {
        Self {
            loop_trip_count: 10_000_000,
            loop_iterations: 10_000_000,
            live_bytes: 4 << 30,
            fold_elements: 1 << 26,
            fold_time: std::time::Duration::from_secs(10),
        }
    }
}

impl RunLimits {
    /// No bounds (the behaviour before these limits existed): for trusted models only.
    pub fn unlimited() -> Self {
        Self {
            loop_trip_count: u64::MAX,
            loop_iterations: u64::MAX,
            live_bytes: u64::MAX,
            fold_elements: u64::MAX,
            fold_time: std::time::Duration::MAX,
        }
    }

    /// Maximum iterations of one execution of one `Loop` node.
    pub fn max_loop_trip_count(mut self, n: u64) -> Self {
        self.loop_trip_count = n;
        self
    }

    /// Maximum iterations of all `Loop` nodes of one run together.
    pub fn max_loop_iterations(mut self, n: u64) -> Self {
        self.loop_iterations = n;
        self
    }

    /// Maximum bytes of values one run may hold at once.
    pub fn max_live_bytes(mut self, n: u64) -> Self {
        self.live_bytes = n;
        self
    }

    /// Largest output (in elements) constant folding computes at plan time.
    pub fn max_fold_elements(mut self, n: u64) -> Self {
        self.fold_elements = n;
        self
    }

    /// Time constant folding may take in one `Plan::new` before it stops folding.
    pub fn max_fold_time(mut self, d: std::time::Duration) -> Self {
        self.fold_time = d;
        self
    }

    /// The configured maximum trip count of one `Loop` execution.
    pub fn loop_trip_count(&self) -> u64 {
        self.loop_trip_count
    }

    /// The configured maximum loop iterations per run.
    pub fn loop_iterations(&self) -> u64 {
        self.loop_iterations
    }

    /// The configured maximum live bytes per run.
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    /// The configured maximum elements of a folded output.
    pub fn fold_elements(&self) -> u64 {
        self.fold_elements
    }

    /// The configured constant-folding time budget per plan.
    pub fn fold_time(&self) -> std::time::Duration {
        self.fold_time
    }
}

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

//! The graph IR: an owned, validated view of an ONNX model.
//!
//! Loading (see the `load` functions) turns protobuf into these types; saving turns them
//! back. Passes (quantization, pruning, folding) rewrite a [`Graph`] in place and the
//! interpreter plans and runs it.

mod constant;
mod extras;
mod sparse;
mod summary;
mod tensor;

pub use extras::{GraphExtras, ModelExtras, RawAttribute};
pub use sparse::SparseTensor;
pub use summary::{ModelSummary, ParamStats, format_type};
pub use tensor::Tensor;

use edgeml_core::DType;

/// One dimension of a declared shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A known extent.
    Known(usize),
    /// A named symbolic extent (`"batch"`, `"N"`), bound at run time.
    Symbolic(String),
    /// Neither value nor name is given.
    Unknown,
}

/// A graph input, output or intermediate value with its (optional) type and shape.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ValueInfo {
    /// The value's name.
    pub name: String,
    /// Element type, if declared and a tensor type edgeml supports.
    pub dtype: Option<DType>,
    /// Declared shape; `None` when the rank is unknown.
    pub shape: Option<Vec<Dim>>,
    /// Documentation string.
    pub doc_string: String,
}

/// A node attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attribute {
    /// `FLOAT`.
    Float(f32),
    /// `INT`.
    Int(i64),
    /// `STRING` (raw bytes; usually UTF-8).
    String(Vec<u8>),
    /// `TENSOR`.
    Tensor(Tensor),
    /// `GRAPH` (a subgraph, as in `If`, `Loop`, `Scan`).
    Graph(Box<Graph>),
    /// `FLOATS`.
    Floats(Vec<f32>),
    /// `INTS`.
    Ints(Vec<i64>),
    /// `STRINGS`.
    Strings(Vec<Vec<u8>>),
    /// `TENSORS`.
    Tensors(Vec<Tensor>),
    /// `GRAPHS`.
    Graphs(Vec<Graph>),
    /// `SPARSE_TENSOR` (e.g. `Constant`'s `sparse_value`), kept sparse so that saving
    /// writes it back unchanged; [`SparseTensor::to_dense`] densifies it.
    SparseTensor(SparseTensor),
    /// `SPARSE_TENSORS`.
    SparseTensors(Vec<SparseTensor>),
    /// Attribute kinds the IR does not model (`TYPE_PROTO`, `TYPE_PROTOS`), kept as the
    /// encoded `AttributeProto` so that saving writes them back unchanged.
    Raw(RawAttribute),
}

/// One operator application.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Node {
    /// Node name (may be empty in the file).
    pub name: String,
    /// Operator type, e.g. `"Conv"`.
    pub op_type: String,
    /// Operator domain; `""` is the default ONNX domain (`ai.onnx`).
    pub domain: String,
    /// Input value names; `""` marks an omitted optional input.
    pub inputs: Vec<String>,
    /// Output value names; `""` marks an omitted optional output.
    pub outputs: Vec<String>,
    /// Attributes in file order.
    pub attributes: Vec<(String, Attribute)>,
    /// Documentation string.
    pub doc_string: String,
}

impl Node {
    /// The attribute called `name`, if present.
    pub fn attr(&self, name: &str) -> Option<&Attribute> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
    }

    /// The integer attribute `name`, or `default` when it is absent (or not an integer;
    /// loading already refused attributes of the wrong type for known operators).
    pub fn int_attr(&self, name: &str, default: i64) -> i64 {
        match self.attr(name) {
            Some(Attribute::Int(v)) => *v,
            _ => default,
        }
    }

    /// The float attribute `name`, or `default` when it is absent (or not a float).
    pub fn float_attr(&self, name: &str, default: f32) -> f32 {
        match self.attr(name) {
            Some(Attribute::Float(v)) => *v,
            _ => default,
        }
    }

    /// The integer-list attribute `name`, if present.
    pub fn ints_attr(&self, name: &str) -> Option<&[i64]> {
        match self.attr(name) {
            Some(Attribute::Ints(v)) => Some(v),
            _ => None,
        }
    }
}

/// A computation graph (the main graph or a subgraph).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Graph {
    /// Graph name.
    pub name: String,
    /// Nodes, in file order (which ONNX requires to be topological, but files do not
    /// always honour).
    pub nodes: Vec<Node>,
    /// Graph inputs (may include names that also have initializers).
    pub inputs: Vec<ValueInfo>,
    /// Graph outputs.
    pub outputs: Vec<ValueInfo>,
    /// Type/shape annotations of intermediate values.
    pub value_info: Vec<ValueInfo>,
    /// Constant tensors, by name, in file order. Sparse initializers are densified on
    /// load and listed here too.
    pub initializers: Vec<(String, Tensor)>,
    /// Documentation string.
    pub doc_string: String,
    /// Parts of the `GraphProto` the IR does not model, kept so that saving is lossless.
    pub extras: GraphExtras,
}

impl Graph {
    /// The initializer called `name`, if any.
    pub fn initializer(&self, name: &str) -> Option<&Tensor> {
        self.initializers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
    }

    /// Marks every initializer of rank 2 or more whose COO form
    /// ([`crate::SparseTensor::from_dense`]: values plus 8-byte indices) is smaller than
    /// its dense form for saving as a `sparse_initializer` (loading densifies it again);
    /// returns how many were marked. The rule of `edgeml prune --sparse-storage`: with
    /// `f32` values, above two thirds zeros.
    pub fn store_sparse_where_smaller(&mut self) -> usize {
        let names: Vec<String> = self
            .initializers
            .iter()
            .filter(|(n, t)| {
                t.shape().len() >= 2
                    && !self.extras.sparse_initializers.contains(n)
                    && crate::SparseTensor::from_dense(t).size_bytes() < t.size_bytes()
            })
            .map(|(n, _)| n.clone())
            .collect();
        self.extras
            .sparse_initializers
            .extend(names.iter().cloned());
        names.len()
    }

    /// The inputs fed at run time: graph inputs that are not also initializers (before
    /// IR version 4 every initializer was listed among the inputs too, as a default).
    pub fn runtime_inputs(&self) -> impl Iterator<Item = &ValueInfo> {
        self.inputs
            .iter()
            .filter(|v| self.initializer(&v.name).is_none())
    }
}

/// An operator-set import: `domain` at `version`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OpsetImport {
    /// Domain; `""` is the default ONNX domain.
    pub domain: String,
    /// Opset version.
    pub version: i64,
}

/// A whole model: graph plus metadata.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Model {
    /// ONNX IR version.
    pub ir_version: i64,
    /// Opset imports.
    pub opset_imports: Vec<OpsetImport>,
    /// Producer name (e.g. `"pytorch"`).
    pub producer_name: String,
    /// Producer version.
    pub producer_version: String,
    /// Model domain (reverse-DNS).
    pub domain: String,
    /// Model version.
    pub model_version: i64,
    /// Documentation string.
    pub doc_string: String,
    /// `metadata_props` key/value pairs, in file order.
    pub metadata_props: Vec<(String, String)>,
    /// The main graph.
    pub graph: Graph,
    /// Parts of the `ModelProto` the IR does not model (functions, training info),
    /// kept so that saving is lossless.
    pub extras: ModelExtras,
}

impl Model {
    /// The imported opset version for `domain` (`""` or `"ai.onnx"` for the default
    /// domain), if any.
    pub fn opset(&self, domain: &str) -> Option<i64> {
        let norm = |d: &str| if d == "ai.onnx" { "" } else { d }.to_owned();
        let want = norm(domain);
        self.opset_imports
            .iter()
            .find(|o| norm(&o.domain) == want)
            .map(|o| o.version)
    }
}

//! Parts of the ONNX protobuf that the IR does not model but saving must keep.
//!
//! They are stored as encoded protobuf messages: opaque to passes, written back
//! unchanged. See the crate README ("Round-trip") for what is and is not preserved.

/// Graph-level protobuf content that the IR does not model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GraphExtras {
    /// Encoded `TypeProto` of values whose declared type the IR cannot express exactly
    /// (sequences, maps, optionals, sparse tensors, string or other unsupported element
    /// types, denotations), by value name. Saving uses the stored type when the value's
    /// [`ValueInfo`](super::ValueInfo) still reads back the same as when it was loaded.
    pub value_types: Vec<(String, Vec<u8>)>,
    /// Encoded `TensorAnnotation` messages (`quantization_annotation`).
    pub quantization_annotation: Vec<Vec<u8>>,
    /// `metadata_props` of the graph, in file order.
    pub metadata_props: Vec<(String, String)>,
    /// Encoded `NodeProto` carrying only the node fields the IR does not model
    /// (`overload`, `metadata_props`, attribute doc strings), keyed by the node's first
    /// output name.
    pub node_extras: Vec<(String, Vec<u8>)>,
    /// Names of initializers that saving writes as `sparse_initializer` (COO: the
    /// non-zero values and their linear `int64` indices, see
    /// [`SparseTensor::from_dense`](super::SparseTensor::from_dense)) instead of dense
    /// `initializer`s. The IR keeps them dense; loading leaves this empty (sparse
    /// initializers are densified on load). Names with no initializer are ignored.
    pub sparse_initializers: Vec<String>,
}

impl GraphExtras {
    /// The stored encoded `TypeProto` of value `name`, if any.
    pub fn value_type(&self, name: &str) -> Option<&[u8]> {
        self.value_types
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }
}

/// Model-level protobuf content that the IR does not model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelExtras {
    /// Encoded `FunctionProto` messages (model-local functions).
    pub functions: Vec<Vec<u8>>,
    /// Encoded `TrainingInfoProto` messages.
    pub training_info: Vec<Vec<u8>>,
}

/// An attribute of a kind the IR does not model (`TYPE_PROTO`, `TYPE_PROTOS`).
#[derive(Debug, Clone, PartialEq)]
pub struct RawAttribute {
    /// The ONNX `AttributeProto.AttributeType` code.
    pub type_code: i32,
    /// The whole encoded `AttributeProto` (name included).
    pub bytes: Vec<u8>,
}

//! Saving: [`Model`] → protobuf bytes, and atomic writes to disk.
//!
//! Tensors are always written as little-endian `raw_data` (whatever encoding they were
//! loaded from) and sparse initializers as dense initializers, except those named in
//! `GraphExtras::sparse_initializers`, written as COO `sparse_initializer`; everything
//! else the IR or its `extras` hold is written back as loaded. See the crate README
//! ("Round-trip").

use crate::ir::{Attribute, Dim, Graph, Model, Node, SparseTensor, Tensor, ValueInfo};
use crate::{Error, Result};
use onnx_protobuf::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, SparseTensorProto,
    StringStringEntryProto, TensorAnnotation, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
    tensor_shape_proto::{Dimension, dimension},
    type_proto,
};
use protobuf::{EnumOrUnknown, Message, MessageField};
use std::io::Write;
use std::path::Path;

fn raw_le(t: &Tensor) -> Vec<u8> {
    let mut out = Vec::with_capacity(t.size_bytes());
    macro_rules! put {
        ($a:expr, $f:expr) => {
            for v in $a.iter() {
                out.extend_from_slice(&$f(v));
            }
        };
    }
    match t {
        Tensor::F32(a) => put!(a, |v: &f32| v.to_le_bytes()),
        Tensor::F64(a) => put!(a, |v: &f64| v.to_le_bytes()),
        Tensor::F16(a) => put!(a, |v: &edgeml_core::f16| v.to_bits().to_le_bytes()),
        Tensor::BF16(a) => put!(a, |v: &edgeml_core::bf16| v.to_bits().to_le_bytes()),
        Tensor::I8(a) => put!(a, |v: &i8| v.to_le_bytes()),
        Tensor::U8(a) => put!(a, |v: &u8| v.to_le_bytes()),
        Tensor::I16(a) => put!(a, |v: &i16| v.to_le_bytes()),
        Tensor::U16(a) => put!(a, |v: &u16| v.to_le_bytes()),
        Tensor::I32(a) => put!(a, |v: &i32| v.to_le_bytes()),
        Tensor::I64(a) => put!(a, |v: &i64| v.to_le_bytes()),
        Tensor::Bool(a) => put!(a, |v: &bool| [u8::from(*v)]),
    }
    out
}

/// Encodes a tensor as a `TensorProto` with little-endian `raw_data`.
pub(crate) fn tensor_proto(name: &str, t: &Tensor) -> TensorProto {
    let mut p = TensorProto::new();
    p.name = name.to_owned();
    p.data_type = t.dtype().onnx_code();
    p.dims = t.shape().iter().map(|&d| d as i64).collect();
    p.raw_data = raw_le(t);
    p
}

fn sparse_proto(s: &SparseTensor) -> SparseTensorProto {
    let mut p = SparseTensorProto::new();
    p.values = MessageField::some(tensor_proto("", &s.values));
    p.indices = MessageField::some(tensor_proto("", &Tensor::I64(s.indices.clone())));
    p.dims = s.dims.iter().map(|&d| d as i64).collect();
    p
}

fn encode_err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> Error + '_ {
    move |e| Error::InvalidModel(format!("{what}: {e}"))
}

fn attribute_proto(name: &str, a: &Attribute) -> Result<AttributeProto> {
    use onnx_protobuf::attribute_proto::AttributeType as T;
    let mut p = AttributeProto::new();
    p.name = name.to_owned();
    let ty = match a {
        Attribute::Float(f) => {
            p.f = *f;
            T::FLOAT
        }
        Attribute::Int(i) => {
            p.i = *i;
            T::INT
        }
        Attribute::String(s) => {
            p.s = s.clone();
            T::STRING
        }
        Attribute::Tensor(t) => {
            p.t = MessageField::some(tensor_proto("", t));
            T::TENSOR
        }
        Attribute::Graph(g) => {
            p.g = MessageField::some(graph_proto(g)?);
            T::GRAPH
        }
        Attribute::Floats(v) => {
            p.floats = v.clone();
            T::FLOATS
        }
        Attribute::Ints(v) => {
            p.ints = v.clone();
            T::INTS
        }
        Attribute::Strings(v) => {
            p.strings = v.clone();
            T::STRINGS
        }
        Attribute::Tensors(v) => {
            p.tensors = v.iter().map(|t| tensor_proto("", t)).collect();
            T::TENSORS
        }
        Attribute::Graphs(v) => {
            p.graphs = v.iter().map(graph_proto).collect::<Result<_>>()?;
            T::GRAPHS
        }
        Attribute::SparseTensor(s) => {
            p.sparse_tensor = MessageField::some(sparse_proto(s));
            T::SPARSE_TENSOR
        }
        Attribute::SparseTensors(v) => {
            p.sparse_tensors = v.iter().map(sparse_proto).collect();
            T::SPARSE_TENSORS
        }
        Attribute::Raw(r) => {
            let mut q = AttributeProto::parse_from_bytes(&r.bytes)
                .map_err(encode_err(&format!("raw attribute {name:?}")))?;
            q.name = name.to_owned();
            return Ok(q);
        }
    };
    p.type_ = EnumOrUnknown::new(ty);
    Ok(p)
}

/// The `TypeProto` the IR view of a value stands for (`None` when it declares nothing).
pub(crate) fn type_proto(v: &ValueInfo) -> Option<TypeProto> {
    if v.dtype.is_none() && v.shape.is_none() {
        return None;
    }
    let mut tt = type_proto::Tensor::new();
    tt.elem_type = v.dtype.map_or(0, |d| d.onnx_code());
    if let Some(shape) = &v.shape {
        let mut s = TensorShapeProto::new();
        s.dim = shape
            .iter()
            .map(|d| {
                let mut x = Dimension::new();
                x.value = match d {
                    Dim::Known(n) => Some(dimension::Value::DimValue(*n as i64)),
                    Dim::Symbolic(p) => Some(dimension::Value::DimParam(p.clone())),
                    Dim::Unknown => None,
                };
                x
            })
            .collect();
        tt.shape = MessageField::some(s);
    }
    let mut t = TypeProto::new();
    t.set_tensor_type(tt);
    Some(t)
}

fn value_info_proto(v: &ValueInfo, g: &Graph) -> Result<ValueInfoProto> {
    let mut p = ValueInfoProto::new();
    p.name = v.name.clone();
    p.doc_string = v.doc_string.clone();
    let mut ty = type_proto(v);
    if let Some(raw) = g.extras.value_type(&v.name) {
        let orig =
            TypeProto::parse_from_bytes(raw).map_err(encode_err(&format!("value {:?}", v.name)))?;
        // Use the stored type unless a pass changed what the IR says about the value.
        if crate::load::ir_type(&orig, &v.name).ok() == Some((v.dtype, v.shape.clone())) {
            ty = Some(orig);
        }
    }
    p.type_ = ty.into();
    Ok(p)
}

fn node_proto(n: &Node, g: &Graph) -> Result<NodeProto> {
    let mut p = NodeProto::new();
    p.name = n.name.clone();
    p.op_type = n.op_type.clone();
    p.domain = n.domain.clone();
    p.input = n.inputs.clone();
    p.output = n.outputs.clone();
    p.doc_string = n.doc_string.clone();
    p.attribute = n
        .attributes
        .iter()
        .map(|(k, a)| attribute_proto(k, a))
        .collect::<Result<_>>()?;
    let key = n.outputs.first();
    if let Some((_, raw)) = g.extras.node_extras.iter().find(|(k, _)| Some(k) == key) {
        let stub =
            NodeProto::parse_from_bytes(raw).map_err(encode_err(&format!("node {:?}", n.name)))?;
        p.overload = stub.overload;
        p.metadata_props = stub.metadata_props;
        for s in stub.attribute {
            if let Some(a) = p.attribute.iter_mut().find(|a| a.name == s.name) {
                a.doc_string = s.doc_string;
                a.ref_attr_name = s.ref_attr_name;
            }
        }
    }
    Ok(p)
}

fn entries(v: &[(String, String)]) -> Vec<StringStringEntryProto> {
    v.iter()
        .map(|(k, val)| {
            let mut e = StringStringEntryProto::new();
            e.key = k.clone();
            e.value = val.clone();
            e
        })
        .collect()
}

fn graph_proto(g: &Graph) -> Result<GraphProto> {
    let mut p = GraphProto::new();
    p.name = g.name.clone();
    p.doc_string = g.doc_string.clone();
    p.node = g
        .nodes
        .iter()
        .map(|n| node_proto(n, g))
        .collect::<Result<_>>()?;
    let sparse = |n: &String| g.extras.sparse_initializers.contains(n);
    p.initializer = g
        .initializers
        .iter()
        .filter(|(n, _)| !sparse(n))
        .map(|(n, t)| tensor_proto(n, t))
        .collect();
    p.sparse_initializer = g
        .initializers
        .iter()
        .filter(|(n, _)| sparse(n))
        .map(|(n, t)| {
            let mut s = sparse_proto(&SparseTensor::from_dense(t));
            if let Some(v) = s.values.as_mut() {
                // ONNX names a sparse initializer by its values tensor.
                v.name = n.clone();
            }
            s
        })
        .collect();
    p.input = g
        .inputs
        .iter()
        .map(|v| value_info_proto(v, g))
        .collect::<Result<_>>()?;
    p.output = g
        .outputs
        .iter()
        .map(|v| value_info_proto(v, g))
        .collect::<Result<_>>()?;
    p.value_info = g
        .value_info
        .iter()
        .map(|v| value_info_proto(v, g))
        .collect::<Result<_>>()?;
    p.quantization_annotation = g
        .extras
        .quantization_annotation
        .iter()
        .map(|b| {
            TensorAnnotation::parse_from_bytes(b).map_err(encode_err("quantization_annotation"))
        })
        .collect::<Result<_>>()?;
    p.metadata_props = entries(&g.extras.metadata_props);
    Ok(p)
}

/// The `ModelProto` of `m`.
pub(crate) fn model_proto(m: &Model) -> Result<ModelProto> {
    let mut p = ModelProto::new();
    p.ir_version = m.ir_version;
    p.opset_import = m
        .opset_imports
        .iter()
        .map(|o| {
            let mut x = OperatorSetIdProto::new();
            x.domain = o.domain.clone();
            x.version = o.version;
            x
        })
        .collect();
    p.producer_name = m.producer_name.clone();
    p.producer_version = m.producer_version.clone();
    p.domain = m.domain.clone();
    p.model_version = m.model_version;
    p.doc_string = m.doc_string.clone();
    p.metadata_props = entries(&m.metadata_props);
    p.graph = MessageField::some(graph_proto(&m.graph)?);
    p.functions = m
        .extras
        .functions
        .iter()
        .map(|b| protobuf::Message::parse_from_bytes(b).map_err(encode_err("function")))
        .collect::<Result<_>>()?;
    p.training_info = m
        .extras
        .training_info
        .iter()
        .map(|b| protobuf::Message::parse_from_bytes(b).map_err(encode_err("training_info")))
        .collect::<Result<_>>()?;
    Ok(p)
}

/// Protobuf's limit on one message: a model that encodes to this many bytes or more
/// cannot be a single file.
const PROTOBUF_LIMIT: u64 = 2 << 30;

/// Offsets of tensors in an external data file are multiples of this (a page, so a
/// reader may map each tensor).
const EXTERNAL_ALIGN: u64 = 4096;

/// [`Model::save`]'s threshold when it has to move tensors out of a model over 2 GiB
/// (onnx's `convert_model_to_external_data` default `size_threshold`).
const AUTO_EXTERNAL_MIN_BYTES: usize = 1024;

fn entry(key: &str, value: String) -> StringStringEntryProto {
    let mut e = StringStringEntryProto::new();
    e.key = key.to_owned();
    e.value = value;
    e
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, flushed,
/// renamed over `path`).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        source: e,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".edgeml-save-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Moves the `raw_data` of every top-level initializer of at least `min_bytes` bytes
/// into `path` + `.data` (written atomically first), then writes the model atomically.
fn save_external(mut p: ModelProto, path: &Path, min_bytes: usize) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidModel(format!("{}: not a file path", path.display())))?
        .to_string_lossy()
        .into_owned();
    let location = format!("{name}.data");
    let data_path = path.with_file_name(&location);
    let mut data = Vec::new();
    let g = p.graph.mut_or_insert_default();
    for t in g.initializer.iter_mut() {
        if t.raw_data.len() < min_bytes || t.raw_data.is_empty() {
            continue;
        }
        let offset = (data.len() as u64).next_multiple_of(EXTERNAL_ALIGN);
        data.resize(offset as usize, 0);
        data.extend_from_slice(&t.raw_data);
        t.external_data = vec![
            entry("location", location.clone()),
            entry("offset", offset.to_string()),
            entry("length", t.raw_data.len().to_string()),
        ];
        t.data_location = EnumOrUnknown::new(onnx_protobuf::tensor_proto::DataLocation::EXTERNAL);
        t.raw_data = Vec::new();
    }
    let size = p.compute_size();
    if size >= PROTOBUF_LIMIT {
        return Err(Error::LimitExceeded(format!(
            "the encoded model would be {size} bytes even with its initializers of {min_bytes} bytes or more in external data, over protobuf's 2 GiB limit"
        )));
    }
    let bytes = p
        .write_to_bytes()
        .map_err(encode_err("encoding the model"))?;
    if !data.is_empty() {
        write_atomic(&data_path, &data)?;
    }
    write_atomic(path, &bytes)
}

impl Model {
    /// Encodes the model as ONNX protobuf bytes.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] when the encoding would exceed protobuf's 2 GiB limit;
    /// [`Error::InvalidModel`] when a preserved opaque part (see `extras`) is corrupt.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let p = model_proto(self)?;
        let size = p.compute_size();
        if size >= PROTOBUF_LIMIT {
            return Err(Error::LimitExceeded(format!(
                "the encoded model would be {size} bytes, over protobuf's 2 GiB limit"
            )));
        }
        p.write_to_bytes().map_err(encode_err("encoding the model"))
    }

    /// Writes the model to `path` atomically: the bytes go to a temporary file in the
    /// same folder, which is flushed to disk and then renamed over `path`, so an
    /// interrupted save never leaves a truncated file.
    ///
    /// A model that would encode to 2 GiB or more (protobuf's limit) is saved with ONNX
    /// external data, as [`Model::save_with_external_data`] with a 1024-byte threshold
    /// (onnx's default): its initializers go to `path` + `.data` (e.g.
    /// `model.onnx.data`), the model file keeps the rest.
    ///
    /// # Errors
    /// [`Error::InvalidModel`] when a preserved opaque part (see `extras`) is corrupt;
    /// [`Error::LimitExceeded`] when even with external data the model would exceed
    /// 2 GiB; [`Error::Io`] when writing fails.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let p = model_proto(self)?;
        if p.compute_size() >= PROTOBUF_LIMIT {
            return save_external(p, path, AUTO_EXTERNAL_MIN_BYTES);
        }
        let bytes = p
            .write_to_bytes()
            .map_err(encode_err("encoding the model"))?;
        write_atomic(path, &bytes)
    }

    /// Writes the model to `path` with every top-level initializer of at least
    /// `min_bytes` bytes in ONNX external data: one file, `path` + `.data` (e.g.
    /// `model.onnx.data`), each tensor's bytes at an offset that is a multiple of 4096,
    /// named by the tensor's `location`/`offset`/`length` entries, as onnx's
    /// `save_model(..., save_as_external_data=True, all_tensors_to_one_file=True)` and
    /// onnxruntime read them. Both files are written atomically, the data file first.
    /// Initializers of subgraphs (`If`/`Loop` bodies) stay inside the model file. When
    /// no initializer reaches `min_bytes`, no data file is written.
    ///
    /// # Errors
    /// As [`Model::save`].
    pub fn save_with_external_data(&self, path: impl AsRef<Path>, min_bytes: usize) -> Result<()> {
        save_external(model_proto(self)?, path.as_ref(), min_bytes)
    }
}

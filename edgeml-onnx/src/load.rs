//! Loading: bytes, readers and paths → [`Model`], with limits checked before allocation.

mod graph;
pub(crate) use graph::ir_type;
pub(crate) mod tensor;

use crate::ir::{Model, ModelExtras, OpsetImport};
use crate::limits::{Limits, LoadOptions};
use crate::{Error, Result};
use onnx_protobuf::{ModelProto, TensorProto};
use protobuf::{CodedInputStream, Message};
use std::io::Read;
use std::path::Path;

/// Running totals of one load, checked against the [`Limits`].
pub(crate) struct Ctx<'a> {
    pub(crate) limits: &'a Limits,
    pub(crate) base_dir: Option<&'a Path>,
    nodes: usize,
    weight_bytes: u64,
}

impl<'a> Ctx<'a> {
    fn new(opts: &'a LoadOptions) -> Self {
        Self {
            limits: &opts.limits,
            base_dir: opts.base_dir.as_deref(),
            nodes: 0,
            weight_bytes: 0,
        }
    }

    pub(crate) fn add_weight_bytes(&mut self, n: u64, what: &str) -> Result<()> {
        self.weight_bytes = self.weight_bytes.saturating_add(n);
        if self.weight_bytes > self.limits.total_weight_bytes() {
            return Err(Error::LimitExceeded(format!(
                "{what}: total weight bytes {} exceed the limit of {}",
                self.weight_bytes,
                self.limits.total_weight_bytes()
            )));
        }
        Ok(())
    }

    pub(crate) fn add_nodes(&mut self, n: usize, graph: &str) -> Result<()> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.limits.nodes() {
            return Err(Error::LimitExceeded(format!(
                "graph {graph:?}: {} nodes exceed the limit of {}",
                self.nodes,
                self.limits.nodes()
            )));
        }
        Ok(())
    }
}

/// Parses the protobuf with a recursion limit derived from the graph-depth limit.
///
/// With the stream bounded by the data, rust-protobuf refuses a length prefix that runs
/// past the end before allocating; the one allocation it makes from a declared length
/// before checking it (packed repeated fields) is guarded by [`crate::proto_scan`].
pub(crate) fn parse_proto(bytes: &[u8], limits: &Limits) -> Result<ModelProto> {
    if bytes.len() as u64 > limits.model_bytes() {
        return Err(Error::LimitExceeded(format!(
            "model is {} bytes, the limit is {}",
            bytes.len(),
            limits.model_bytes()
        )));
    }
    // Each level of subgraph costs three message levels (Graph → Node → Attribute),
    // plus headroom for TypeProto nesting.
    let recursion = (3 * limits.graph_depth() + 24) as u32;
    crate::proto_scan::scan(bytes, recursion)?;
    let mut is = CodedInputStream::from_bytes(bytes);
    is.set_recursion_limit(recursion);
    // rust-protobuf reading a slice has no overall limit, so a nested message whose
    // length prefix runs past the end of the data would silently end at EOF (a
    // truncated file would parse). Bounding the stream by the data makes every
    // over-long prefix a `LimitIncrease` error.
    is.push_limit(bytes.len() as u64)
        .map_err(|e| Error::InvalidModel(format!("not a valid ONNX protobuf: {e}")))?;
    let m = ModelProto::parse_from(&mut is)
        .and_then(|m| is.check_eof().map(|()| m))
        .map_err(|e| Error::InvalidModel(format!("not a valid ONNX protobuf: {e}")))?;
    Ok(m)
}

/// Parses one serialized `TensorProto` (the format of the ONNX backend test data's
/// `input_N.pb` / `output_N.pb` files) and decodes it with `opts.limits`.
pub(crate) fn tensor_from_bytes(
    bytes: &[u8],
    opts: &LoadOptions,
) -> Result<(String, crate::Tensor)> {
    if bytes.len() as u64 > opts.limits.model_bytes() {
        return Err(Error::LimitExceeded(format!(
            "tensor file is {} bytes, the limit is {}",
            bytes.len(),
            opts.limits.model_bytes()
        )));
    }
    crate::proto_scan::scan_tensor(bytes)?;
    let mut is = CodedInputStream::from_bytes(bytes);
    is.push_limit(bytes.len() as u64)
        .map_err(|e| Error::InvalidModel(format!("not a valid ONNX TensorProto: {e}")))?;
    let tp = TensorProto::parse_from(&mut is)
        .and_then(|m| is.check_eof().map(|()| m))
        .map_err(|e| Error::InvalidModel(format!("not a valid ONNX TensorProto: {e}")))?;
    let mut ctx = Ctx::new(opts);
    let name = tp.name.clone();
    let what = if name.is_empty() {
        "tensor".to_owned()
    } else {
        format!("tensor {name:?}")
    };
    let t = tensor::decode_tensor(&tp, &what, &mut ctx)?;
    Ok((name, t))
}

fn encode<M: Message>(m: &M) -> Result<Vec<u8>> {
    m.write_to_bytes()
        .map_err(|e| Error::InvalidModel(format!("re-encoding {}: {e}", M::NAME)))
}

fn convert_model(p: &ModelProto, ctx: &mut Ctx<'_>) -> Result<Model> {
    let g = p
        .graph
        .as_ref()
        .ok_or_else(|| Error::InvalidModel("the model has no graph".into()))?;
    let graph = graph::convert_graph(g, 0, ctx)?;
    Ok(Model {
        ir_version: p.ir_version,
        opset_imports: p
            .opset_import
            .iter()
            .map(|o| OpsetImport {
                domain: o.domain.clone(),
                version: o.version,
            })
            .collect(),
        producer_name: p.producer_name.clone(),
        producer_version: p.producer_version.clone(),
        domain: p.domain.clone(),
        model_version: p.model_version,
        doc_string: p.doc_string.clone(),
        metadata_props: p
            .metadata_props
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect(),
        graph,
        extras: ModelExtras {
            functions: p.functions.iter().map(encode).collect::<Result<_>>()?,
            training_info: p.training_info.iter().map(encode).collect::<Result<_>>()?,
        },
    })
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source: e,
    }
}

impl Model {
    /// Loads a model from protobuf bytes with default [`LoadOptions`].
    ///
    /// # Errors
    /// [`Error::InvalidModel`] for malformed protobuf or inconsistent tensors and
    /// graphs, [`Error::LimitExceeded`], [`Error::Unsupported`] element types, and
    /// [`Error::InvalidModel`] if the model uses external data (no folder is known:
    /// use [`Model::load`] or set [`LoadOptions::base_dir`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
        Self::from_bytes_with(bytes, &LoadOptions::default())
    }

    /// Loads a model from protobuf bytes with `opts`.
    ///
    /// # Errors
    /// As [`Model::from_bytes`], plus [`Error::UnsafePath`] and [`Error::Io`] for
    /// external data.
    pub fn from_bytes_with(bytes: &[u8], opts: &LoadOptions) -> Result<Model> {
        let proto = parse_proto(bytes, &opts.limits)?;
        let mut ctx = Ctx::new(opts);
        let model = convert_model(&proto, &mut ctx)?;
        if opts.validate {
            model.validate()?;
        }
        Ok(model)
    }

    /// Reads a whole model from `reader` (at most the model-size limit) and loads it.
    ///
    /// # Errors
    /// As [`Model::from_bytes`]; [`Error::Io`] when reading fails.
    pub fn from_reader(reader: impl Read) -> Result<Model> {
        Self::from_reader_with(reader, &LoadOptions::default())
    }

    /// Reads a whole model from `reader` and loads it with `opts`.
    ///
    /// # Errors
    /// As [`Model::from_bytes_with`]; [`Error::Io`] when reading fails.
    pub fn from_reader_with(reader: impl Read, opts: &LoadOptions) -> Result<Model> {
        let max = opts.limits.model_bytes();
        let mut buf = Vec::new();
        reader
            .take(max.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|e| io_err(Path::new("<reader>"), e))?;
        Self::from_bytes_with(&buf, opts)
    }

    /// Loads the model file at `path`; external data is read from its folder.
    ///
    /// # Errors
    /// As [`Model::from_bytes_with`]; [`Error::Io`] when the file cannot be read.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Self::load_with(path, &LoadOptions::default())
    }

    /// Loads the model file at `path` with `opts`. Unless `opts` sets a base folder,
    /// external data is read from the model's folder.
    ///
    /// # Errors
    /// As [`Model::from_bytes_with`]; [`Error::Io`] when the file cannot be read.
    pub fn load_with(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Model> {
        let path = path.as_ref();
        let f = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
        let len = f.metadata().map_err(|e| io_err(path, e))?.len();
        if len > opts.limits.model_bytes() {
            return Err(Error::LimitExceeded(format!(
                "{}: {len} bytes, the limit is {}",
                path.display(),
                opts.limits.model_bytes()
            )));
        }
        let mut buf = Vec::with_capacity(len as usize);
        f.take(opts.limits.model_bytes().saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|e| io_err(path, e))?;
        let mut opts = opts.clone();
        if opts.base_dir.is_none() {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
            opts.base_dir = Some(dir.unwrap_or(Path::new(".")).to_path_buf());
        }
        Self::from_bytes_with(&buf, &opts)
    }
}

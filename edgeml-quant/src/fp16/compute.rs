//! Whole-graph float16: every float32 value of the graph becomes float16 (see
//! [`super::convert_float_to_float16`]).

use super::{Fp16Report, to_f16};
use crate::{Error, Result};
use edgeml_core::DType;
use edgeml_onnx::passes::infer_value_types;
use edgeml_onnx::{Attribute, Model, Node, Tensor};
use std::collections::{HashMap, HashSet};

/// ONNX `TensorProto.FLOAT` and `FLOAT16`.
const FLOAT: i64 = 1;
const FLOAT16: i64 = 10;

/// onnxconverter-common's `DEFAULT_OP_BLOCK_LIST` (operators kept in float32): the
/// `ai.onnx.ml` ones are outside the default domain and kept anyway.
const BLOCKED: &[&str] = &[
    "NonMaxSuppression",
    "TopK",
    "RoiAlign",
    "Resize",
    "Range",
    "CumSum",
    "Min",
    "Max",
    "Upsample",
    // Operators whose output type an attribute names (onnxconverter-common rewrites
    // the attribute; keeping them float32 behind a Cast is the same).
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "EyeLike",
    "Multinomial",
    // Quantization operators: their float scales are float32 before opset 19.
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
];

/// Options of [`super::convert_float_to_float16`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HalfOptions {
    /// Keep the graph's float32 inputs and outputs float32, with `Cast` nodes after
    /// the inputs and before the outputs (default `true`; onnxconverter-common's
    /// `keep_io_types`, whose own default is `false`).
    pub keep_io_types: bool,
    /// Node names or operator types to keep in float32 (onnxconverter-common's
    /// `node_block_list` and `op_block_list`, added to its default block list).
    pub keep: Vec<String>,
}

impl Default for HalfOptions {
    fn default() -> Self {
        Self {
            keep_io_types: true,
            keep: Vec::new(),
        }
    }
}

/// The numeric type a float32 value has in the converted graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    F32,
    F16,
}

pub(super) fn convert(model: &Model, opts: &HalfOptions) -> Result<(Model, Fp16Report)> {
    let opset = model.opset("").unwrap_or(1);
    if opset < 6 {
        return Err(Error::Unsupported(format!(
            "the model imports opset {opset}; float16 conversion needs Cast from opset 6"
        )));
    }
    let g = &model.graph;
    if let Some(n) = g.nodes.iter().find(|n| {
        n.attributes
            .iter()
            .any(|(_, a)| matches!(a, Attribute::Graph(_) | Attribute::Graphs(_)))
    }) {
        return Err(Error::Unsupported(format!(
            "node {:?} ({}) has a subgraph; float16 conversion handles flat graphs only",
            n.name, n.op_type
        )));
    }
    let types = infer_value_types(model).map_err(|e| Error::Model {
        kind: e.kind(),
        message: e.to_string(),
    })?;
    let dtype = |v: &str| types.get(v).and_then(|t| t.dtype);
    let blocked = |n: &Node| {
        !n.domain.is_empty()
            || BLOCKED.contains(&n.op_type.as_str())
            || opts.keep.iter().any(|k| *k == n.name || *k == n.op_type)
    };
    // Every value must have a known type: a float32 value left unconverted next to
    // converted ones would make the graph ill-typed.
    for n in &g.nodes {
        for v in n.outputs.iter().filter(|v| !v.is_empty()) {
            if dtype(v).is_none() {
                return Err(Error::Unsupported(format!(
                    "the element type of {v:?} (output of {} {:?}) is unknown; float16 \
                     conversion needs every value's type (declare it in value_info, or keep \
                     the node in float32)",
                    n.op_type, n.name
                )));
            }
        }
    }
    let is_f32 = |v: &str| dtype(v) == Some(DType::F32);
    let graph_inputs: HashSet<&str> = g.inputs.iter().map(|i| i.name.as_str()).collect();
    // Which type each float32 value is produced in.
    let mut native: HashMap<String, Kind> = HashMap::new();
    for i in &g.inputs {
        if is_f32(&i.name) && g.initializer(&i.name).is_none() {
            let k = if opts.keep_io_types {
                Kind::F32
            } else {
                Kind::F16
            };
            native.insert(i.name.clone(), k);
        }
    }
    for n in &g.nodes {
        let k = if blocked(n) { Kind::F32 } else { Kind::F16 };
        for v in n.outputs.iter().filter(|v| is_f32(v)) {
            native.insert(v.clone(), k);
        }
    }
    // Initializers: float16 when a converted node reads them, or float32 if only kept
    // nodes do (and always when they are graph inputs, overridable at run time).
    let mut report = Fp16Report::default();
    let mut m = model.clone();
    for (name, t) in &mut m.graph.initializers {
        let Some(a) = t.as_f32() else { continue };
        let read_by_converted = g
            .nodes
            .iter()
            .any(|n| !blocked(n) && n.inputs.contains(name));
        if graph_inputs.contains(name.as_str()) || !read_by_converted {
            native.insert(name.clone(), Kind::F32);
            continue;
        }
        if let Some(bad) = a.iter().find(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "initializer {name:?} holds {bad}"
            )));
        }
        *t = Tensor::F16(a.mapv(|v| to_f16(v, &mut report.clamped)));
        native.insert(name.clone(), Kind::F16);
        report.converted.push(name.clone());
    }
    let mut names: HashSet<String> = HashSet::new();
    for n in &g.nodes {
        names.extend(n.inputs.iter().chain(&n.outputs).cloned());
    }
    names.extend(g.initializers.iter().map(|(n, _)| n.clone()));
    names.extend(g.inputs.iter().chain(&g.outputs).map(|v| v.name.clone()));
    let mut fresh = |base: &str| {
        let mut s = base.to_owned();
        let mut i = 0;
        while names.contains(&s) {
            i += 1;
            s = format!("{base}_{i}");
        }
        names.insert(s.clone());
        s
    };
    // Graph outputs keep their names: a value produced in the other type is renamed
    // and cast into the output.
    let want_out = if opts.keep_io_types {
        Kind::F32
    } else {
        Kind::F16
    };
    let mut renamed: HashMap<String, String> = HashMap::new();
    let mut tail = Vec::new();
    for o in &g.outputs {
        match native.get(&o.name) {
            Some(&k) if k != want_out && !graph_inputs.contains(o.name.as_str()) => {
                let inner = fresh(&format!("{}_{}", o.name, suffix(k)));
                tail.push(cast(&inner, &o.name, want_out));
                native.insert(inner.clone(), k);
                renamed.insert(o.name.clone(), inner);
            }
            _ => {}
        }
    }
    // Each node reads float32 values in its own type, through one shared Cast per value
    // and direction.
    let mut casts: HashMap<(String, Kind), String> = HashMap::new();
    let mut nodes = Vec::with_capacity(g.nodes.len() + 8);
    for (i, n) in g.nodes.iter().enumerate() {
        let mut n = n.clone();
        let want = if blocked(&g.nodes[i]) {
            Kind::F32
        } else {
            Kind::F16
        };
        for v in n.inputs.iter_mut().chain(n.outputs.iter_mut()) {
            if let Some(r) = renamed.get(v.as_str()) {
                v.clone_from(r);
            }
        }
        for v in &mut n.inputs {
            let Some(&k) = native.get(v.as_str()) else {
                continue;
            };
            if k == want {
                continue;
            }
            let key = (v.clone(), want);
            let c = match casts.get(&key) {
                Some(c) => c.clone(),
                None => {
                    let c = fresh(&format!("{v}_{}", suffix(want)));
                    nodes.push(cast(v, &c, want));
                    casts.insert(key, c.clone());
                    c
                }
            };
            *v = c;
        }
        if want == Kind::F16 {
            retype_attributes(&mut n, &native, &mut report)?;
        }
        nodes.push(n);
    }
    nodes.extend(tail);
    m.graph.nodes = nodes;
    // Declared types follow.
    if !opts.keep_io_types {
        for i in &mut m.graph.inputs {
            if native.get(&i.name) == Some(&Kind::F16) && i.dtype == Some(DType::F32) {
                i.dtype = Some(DType::F16);
            }
        }
    }
    if want_out == Kind::F16 {
        for o in &mut m.graph.outputs {
            if o.dtype == Some(DType::F32) && !graph_inputs.contains(o.name.as_str()) {
                o.dtype = Some(DType::F16);
            }
        }
    }
    for vi in &mut m.graph.value_info {
        if native.get(&vi.name) == Some(&Kind::F16) && vi.dtype == Some(DType::F32) {
            vi.dtype = Some(DType::F16);
        }
    }
    Ok((m, report))
}

fn suffix(k: Kind) -> &'static str {
    match k {
        Kind::F32 => "fp32",
        Kind::F16 => "fp16",
    }
}

fn cast(from: &str, to: &str, k: Kind) -> Node {
    Node {
        name: format!("{to}_cast"),
        op_type: "Cast".into(),
        inputs: vec![from.to_owned()],
        outputs: vec![to.to_owned()],
        attributes: vec![(
            "to".into(),
            Attribute::Int(if k == Kind::F16 { FLOAT16 } else { FLOAT }),
        )],
        ..Node::default()
    }
}

/// A converted node whose attributes name its float32 output: `Cast(to = FLOAT)`,
/// `Constant` and `ConstantOfShape` values.
fn retype_attributes(
    n: &mut Node,
    native: &HashMap<String, Kind>,
    report: &mut Fp16Report,
) -> Result<()> {
    let out_half = n
        .outputs
        .first()
        .is_some_and(|o| native.get(o) == Some(&Kind::F16));
    if !out_half {
        return Ok(());
    }
    if n.op_type == "ConstantOfShape" && n.attr("value").is_none() {
        // The default value is a float32 zero.
        let zero = ndarray::ArrayD::from_elem(ndarray::IxDyn(&[1]), edgeml_core::f16::ZERO);
        n.attributes
            .push(("value".into(), Attribute::Tensor(Tensor::F16(zero))));
    }
    for (k, a) in &mut n.attributes {
        match (n.op_type.as_str(), k.as_str(), &mut *a) {
            ("Cast", "to", Attribute::Int(to)) if *to == FLOAT => *to = FLOAT16,
            ("Constant", "value", Attribute::Tensor(t))
            | ("ConstantOfShape", "value", Attribute::Tensor(t)) => {
                if let Some(x) = t.as_f32() {
                    if let Some(bad) = x.iter().find(|v| !v.is_finite())
                        && n.op_type == "Constant"
                    {
                        return Err(Error::NonFinite(format!(
                            "Constant {:?} holds {bad}",
                            n.name
                        )));
                    }
                    *t = Tensor::F16(x.mapv(|v| {
                        if v.is_finite() {
                            to_f16(v, &mut report.clamped)
                        } else {
                            edgeml_core::f16::from_f32(v)
                        }
                    }));
                }
            }
            ("Constant", "value_float" | "value_floats", _) => {
                return Err(Error::Unsupported(format!(
                    "Constant {:?} with {k}: give it a tensor value, or keep it in float32",
                    n.name
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

//! `GraphProto` / `NodeProto` / `AttributeProto` / `ValueInfoProto` → IR.

use super::tensor::{decode_sparse, decode_tensor};
use super::{Ctx, encode};
use crate::ir::{Attribute, Dim, Graph, GraphExtras, Node, RawAttribute, ValueInfo};
use crate::{Error, Result};
use edgeml_core::DType;
use onnx_protobuf::{
    AttributeProto, GraphProto, NodeProto, TypeProto, ValueInfoProto,
    attribute_proto::AttributeType, tensor_shape_proto::dimension,
};

/// The IR view of a `TypeProto`: element type and shape, if it is a tensor type.
pub(crate) fn ir_type(t: &TypeProto, what: &str) -> Result<(Option<DType>, Option<Vec<Dim>>)> {
    if !t.has_tensor_type() {
        return Ok((None, None));
    }
    let tt = t.tensor_type();
    let dtype = DType::from_onnx(tt.elem_type);
    let shape = match tt.shape.as_ref() {
        None => None,
        Some(s) => Some(
            s.dim
                .iter()
                .map(|d| match &d.value {
                    // Some exporters write -1 for a dynamic dimension; onnxruntime reads
                    // it as unknown, and so do we.
                    Some(dimension::Value::DimValue(-1)) => Ok(Dim::Unknown),
                    Some(dimension::Value::DimValue(v)) => {
                        usize::try_from(*v).map(Dim::Known).map_err(|_| {
                            Error::InvalidModel(format!("{what}: negative dimension {v}"))
                        })
                    }
                    Some(dimension::Value::DimParam(p)) => Ok(Dim::Symbolic(p.clone())),
                    _ => Ok(Dim::Unknown),
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    Ok((dtype, shape))
}

fn value_info(vi: &ValueInfoProto, extras: &mut GraphExtras) -> Result<ValueInfo> {
    let what = format!("value {:?}", vi.name);
    let (dtype, shape) = match vi.type_.as_ref() {
        Some(t) => ir_type(t, &what)?,
        None => (None, None),
    };
    let v = ValueInfo {
        name: vi.name.clone(),
        dtype,
        shape,
        doc_string: vi.doc_string.clone(),
    };
    // Keep the original type when the IR cannot express it exactly.
    if let Some(t) = vi.type_.as_ref()
        && crate::save::type_proto(&v).as_ref() != Some(t)
        && extras.value_type(&vi.name).is_none()
    {
        extras.value_types.push((vi.name.clone(), encode(t)?));
    }
    Ok(v)
}

fn infer_type(a: &AttributeProto) -> i32 {
    use AttributeType as T;
    let t = if a.t.is_some() {
        T::TENSOR
    } else if a.g.is_some() {
        T::GRAPH
    } else if a.sparse_tensor.is_some() {
        T::SPARSE_TENSOR
    } else if !a.floats.is_empty() {
        T::FLOATS
    } else if !a.ints.is_empty() {
        T::INTS
    } else if !a.strings.is_empty() {
        T::STRINGS
    } else if !a.tensors.is_empty() {
        T::TENSORS
    } else if !a.graphs.is_empty() {
        T::GRAPHS
    } else if !a.s.is_empty() {
        T::STRING
    } else if a.f != 0.0 {
        T::FLOAT
    } else {
        T::INT
    };
    t as i32
}

fn attribute(a: &AttributeProto, node: &str, depth: usize, ctx: &mut Ctx<'_>) -> Result<Attribute> {
    let what = format!("node {node:?} attribute {:?}", a.name);
    let mut code = a.type_.value();
    if code == 0 {
        code = infer_type(a);
    }
    let need = |present: bool| {
        if present {
            Ok(())
        } else {
            Err(Error::InvalidModel(format!(
                "{what}: declared type {code} but the value is missing"
            )))
        }
    };
    Ok(match code {
        1 => Attribute::Float(a.f),
        2 => Attribute::Int(a.i),
        3 => Attribute::String(a.s.clone()),
        4 => {
            need(a.t.is_some())?;
            Attribute::Tensor(decode_tensor(a.t.get_or_default(), &what, ctx)?)
        }
        5 => {
            need(a.g.is_some())?;
            Attribute::Graph(Box::new(convert_graph(
                a.g.get_or_default(),
                depth + 1,
                ctx,
            )?))
        }
        6 => Attribute::Floats(a.floats.clone()),
        7 => Attribute::Ints(a.ints.clone()),
        8 => Attribute::Strings(a.strings.clone()),
        9 => Attribute::Tensors(
            a.tensors
                .iter()
                .map(|t| decode_tensor(t, &what, ctx))
                .collect::<Result<_>>()?,
        ),
        10 => Attribute::Graphs(
            a.graphs
                .iter()
                .map(|g| convert_graph(g, depth + 1, ctx))
                .collect::<Result<_>>()?,
        ),
        11 => {
            need(a.sparse_tensor.is_some())?;
            Attribute::SparseTensor(decode_sparse(a.sparse_tensor.get_or_default(), &what, ctx)?)
        }
        12 => Attribute::SparseTensors(
            a.sparse_tensors
                .iter()
                .map(|s| decode_sparse(s, &what, ctx))
                .collect::<Result<_>>()?,
        ),
        13 | 14 => Attribute::Raw(RawAttribute {
            type_code: code,
            bytes: encode(a)?,
        }),
        other => {
            return Err(Error::InvalidModel(format!(
                "{what}: unknown attribute type code {other}"
            )));
        }
    })
}

fn node(n: &NodeProto, depth: usize, ctx: &mut Ctx<'_>, extras: &mut GraphExtras) -> Result<Node> {
    let label = if n.name.is_empty() {
        n.output.first().cloned().unwrap_or_default()
    } else {
        n.name.clone()
    };
    let mut attributes = Vec::with_capacity(n.attribute.len());
    for a in &n.attribute {
        attributes.push((a.name.clone(), attribute(a, &label, depth, ctx)?));
    }
    // Node fields the IR does not model, kept by first output name.
    let attr_extra = n
        .attribute
        .iter()
        .any(|a| !a.doc_string.is_empty() || !a.ref_attr_name.is_empty());
    if (!n.overload.is_empty() || !n.metadata_props.is_empty() || attr_extra)
        && let Some(key) = n.output.first()
    {
        let mut stub = NodeProto::new();
        stub.overload = n.overload.clone();
        stub.metadata_props = n.metadata_props.clone();
        if attr_extra {
            stub.attribute = n
                .attribute
                .iter()
                .map(|a| {
                    let mut s = AttributeProto::new();
                    s.name = a.name.clone();
                    s.doc_string = a.doc_string.clone();
                    s.ref_attr_name = a.ref_attr_name.clone();
                    s
                })
                .collect();
        }
        extras.node_extras.push((key.clone(), encode(&stub)?));
    }
    Ok(Node {
        name: n.name.clone(),
        op_type: n.op_type.clone(),
        domain: n.domain.clone(),
        inputs: n.input.clone(),
        outputs: n.output.clone(),
        attributes,
        doc_string: n.doc_string.clone(),
    })
}

/// Converts a graph at nesting `depth` (0 = main graph).
pub(crate) fn convert_graph(g: &GraphProto, depth: usize, ctx: &mut Ctx<'_>) -> Result<Graph> {
    if depth > ctx.limits.graph_depth() {
        return Err(Error::LimitExceeded(format!(
            "graph {:?} is nested {depth} deep, the limit is {}",
            g.name,
            ctx.limits.graph_depth()
        )));
    }
    ctx.add_nodes(g.node.len(), &g.name)?;
    let mut extras = GraphExtras {
        quantization_annotation: g
            .quantization_annotation
            .iter()
            .map(encode)
            .collect::<Result<_>>()?,
        metadata_props: g
            .metadata_props
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect(),
        ..GraphExtras::default()
    };
    let mut initializers = Vec::with_capacity(g.initializer.len() + g.sparse_initializer.len());
    for t in &g.initializer {
        let what = format!("initializer {:?}", t.name);
        initializers.push((t.name.clone(), decode_tensor(t, &what, ctx)?));
    }
    for s in &g.sparse_initializer {
        let name = s
            .values
            .as_ref()
            .map(|v| v.name.clone())
            .unwrap_or_default();
        let what = format!("sparse initializer {name:?}");
        let dense = decode_sparse(s, &what, ctx)?.to_dense()?;
        initializers.push((name, dense));
    }
    let mut nodes = Vec::with_capacity(g.node.len());
    for n in &g.node {
        nodes.push(node(n, depth, ctx, &mut extras)?);
    }
    let mut vis = |v: &[ValueInfoProto]| -> Result<Vec<ValueInfo>> {
        v.iter().map(|x| value_info(x, &mut extras)).collect()
    };
    let inputs = vis(&g.input)?;
    let outputs = vis(&g.output)?;
    let value_info = vis(&g.value_info)?;
    Ok(Graph {
        name: g.name.clone(),
        nodes,
        inputs,
        outputs,
        value_info,
        initializers,
        doc_string: g.doc_string.clone(),
        extras,
    })
}

//! Typed access to node attributes, with errors that name the node.
//!
//! ```
//! use edgeml_onnx::{Attribute, Node};
//! use edgeml_onnx::ops::attr::Attrs;
//!
//! let node = Node {
//!     op_type: "Softmax".into(),
//!     attributes: vec![("axis".into(), Attribute::Int(1))],
//!     ..Default::default()
//! };
//! let a = Attrs::new(&node);
//! assert_eq!(a.int("axis", -1).unwrap(), 1);
//! assert_eq!(a.float("alpha", 0.5).unwrap(), 0.5);
//! assert!(a.string("mode", "x").is_ok());
//! ```

use crate::{Attribute, Error, Graph, Node, Result, Tensor};

/// A short description of a node for error messages: `Conv "conv1"`.
pub fn describe(node: &Node) -> String {
    if node.name.is_empty() {
        let out = node.outputs.first().map(String::as_str).unwrap_or("");
        format!("{} (output {out:?})", node.op_type)
    } else {
        format!("{} {:?}", node.op_type, node.name)
    }
}

/// An [`Error::InvalidModel`] naming `node`.
pub fn invalid(node: &Node, msg: impl std::fmt::Display) -> Error {
    Error::InvalidModel(format!("{}: {msg}", describe(node)))
}

/// An [`Error::Unsupported`] naming `node`.
pub fn unsupported(node: &Node, msg: impl std::fmt::Display) -> Error {
    Error::Unsupported(format!("{}: {msg}", describe(node)))
}

/// An [`Error::ShapeMismatch`] naming `node` (operands whose shapes do not fit).
pub fn shape_mismatch(node: &Node, msg: impl std::fmt::Display) -> Error {
    Error::ShapeMismatch(format!("{}: {msg}", describe(node)))
}

/// The ONNX name of an attribute's type (`"INTS"`), for messages.
pub(crate) fn kind_name(a: &Attribute) -> &'static str {
    match a {
        Attribute::Float(_) => "FLOAT",
        Attribute::Int(_) => "INT",
        Attribute::String(_) => "STRING",
        Attribute::Tensor(_) => "TENSOR",
        Attribute::Graph(_) => "GRAPH",
        Attribute::Floats(_) => "FLOATS",
        Attribute::Ints(_) => "INTS",
        Attribute::Strings(_) => "STRINGS",
        Attribute::Tensors(_) => "TENSORS",
        Attribute::Graphs(_) => "GRAPHS",
        Attribute::SparseTensor(_) => "SPARSE_TENSOR",
        Attribute::SparseTensors(_) => "SPARSE_TENSORS",
        Attribute::Raw(_) => "an unsupported attribute type",
    }
}

/// Typed, defaulting accessors over one node's attributes.
#[derive(Debug, Clone, Copy)]
pub struct Attrs<'a> {
    node: &'a Node,
}

impl<'a> Attrs<'a> {
    /// Wraps `node`.
    pub fn new(node: &'a Node) -> Self {
        Self { node }
    }

    /// The node.
    pub fn node(&self) -> &'a Node {
        self.node
    }

    fn wrong(&self, name: &str, want: &str, got: &Attribute) -> Error {
        invalid(
            self.node,
            format!(
                "attribute {name:?} must be {want}, found {}",
                kind_name(got)
            ),
        )
    }

    /// Whether the attribute is present.
    pub fn has(&self, name: &str) -> bool {
        self.node.attr(name).is_some()
    }

    /// An `INT` attribute, if present.
    ///
    /// # Errors
    /// The attribute has another type.
    pub fn int_opt(&self, name: &str) -> Result<Option<i64>> {
        match self.node.attr(name) {
            None => Ok(None),
            Some(Attribute::Int(v)) => Ok(Some(*v)),
            Some(a) => Err(self.wrong(name, "INT", a)),
        }
    }

    /// An `INT` attribute, or `default`.
    ///
    /// # Errors
    /// The attribute has another type.
    pub fn int(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.int_opt(name)?.unwrap_or(default))
    }

    /// A `FLOAT` attribute, if present (an `INT` is accepted and converted).
    ///
    /// # Errors
    /// The attribute has another type.
    pub fn float_opt(&self, name: &str) -> Result<Option<f32>> {
        match self.node.attr(name) {
            None => Ok(None),
            Some(Attribute::Float(v)) => Ok(Some(*v)),
            Some(Attribute::Int(v)) => Ok(Some(*v as f32)),
            Some(a) => Err(self.wrong(name, "FLOAT", a)),
        }
    }

    /// A `FLOAT` attribute, or `default`.
    ///
    /// # Errors
    /// The attribute has another type.
    pub fn float(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self.float_opt(name)?.unwrap_or(default))
    }

    /// A `STRING` attribute as UTF-8, if present.
    ///
    /// # Errors
    /// The attribute has another type or is not UTF-8.
    pub fn string_opt(&self, name: &str) -> Result<Option<String>> {
        match self.node.attr(name) {
            None => Ok(None),
            Some(Attribute::String(v)) => String::from_utf8(v.clone())
                .map(Some)
                .map_err(|_| invalid(self.node, format!("attribute {name:?} is not UTF-8"))),
            Some(a) => Err(self.wrong(name, "STRING", a)),
        }
    }

    /// A `STRING` attribute, or `default`.
    ///
    /// # Errors
    /// The attribute has another type or is not UTF-8.
    pub fn string(&self, name: &str, default: &str) -> Result<String> {
        Ok(self.string_opt(name)?.unwrap_or_else(|| default.to_owned()))
    }

    /// An `INTS` attribute, if present.
    ///
    /// # Errors
    /// The attribute has another type.
    pub fn ints_opt(&self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.node.attr(name) {
            None => Ok(None),
            Some(Attribute::Ints(v)) => Ok(Some(v.clone())),
            Some(a) => Err(self.wrong(name, "INTS", a)),
        }
    }

    /// An `INTS` attribute, or `default`.
    ///
    /// # Errors
    /// The attribute has another type.
    pub fn ints(&self, name: &str, default: &[i64]) -> Result<Vec<i64>> {
        Ok(self.ints_opt(name)?.unwrap_or_else(|| default.to_vec()))
    }

    /// An `INTS` attribute of non-negative entries (kernel extents, strides, pads…),
    /// if present.
    ///
    /// # Errors
    /// The attribute has another type or a negative entry.
    pub fn usizes_opt(&self, name: &str) -> Result<Option<Vec<usize>>> {
        self.ints_opt(name)?
            .map(|v| {
                v.iter()
                    .map(|&x| {
                        usize::try_from(x).map_err(|_| {
                            invalid(
                                self.node,
                                format!("attribute {name:?} has a negative entry {x}"),
                            )
                        })
                    })
                    .collect()
            })
            .transpose()
    }

    /// An `INTS` attribute of exactly `len` non-negative entries (one per spatial axis,
    /// say), or `len` copies of `default` when absent.
    ///
    /// # Errors
    /// The attribute has another type, another length or a negative entry.
    pub fn usizes(&self, name: &str, len: usize, default: usize) -> Result<Vec<usize>> {
        match self.usizes_opt(name)? {
            None => Ok(vec![default; len]),
            Some(v) if v.len() == len => Ok(v),
            Some(v) => Err(invalid(
                self.node,
                format!("attribute {name:?} has {} entries, expected {len}", v.len()),
            )),
        }
    }

    /// A `FLOATS` attribute, if present.
    ///
    /// # Errors
    /// The attribute has another type.
    pub fn floats_opt(&self, name: &str) -> Result<Option<Vec<f32>>> {
        match self.node.attr(name) {
            None => Ok(None),
            Some(Attribute::Floats(v)) => Ok(Some(v.clone())),
            Some(a) => Err(self.wrong(name, "FLOATS", a)),
        }
    }

    /// A `STRINGS` attribute as UTF-8, if present.
    ///
    /// # Errors
    /// The attribute has another type or an entry is not UTF-8.
    pub fn strings_opt(&self, name: &str) -> Result<Option<Vec<String>>> {
        match self.node.attr(name) {
            None => Ok(None),
            Some(Attribute::Strings(v)) => v
                .iter()
                .map(|s| {
                    String::from_utf8(s.clone())
                        .map_err(|_| invalid(self.node, format!("attribute {name:?} is not UTF-8")))
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(a) => Err(self.wrong(name, "STRINGS", a)),
        }
    }

    /// A `TENSOR` attribute, if present.
    ///
    /// # Errors
    /// The attribute has another type.
    pub fn tensor_opt(&self, name: &str) -> Result<Option<&'a Tensor>> {
        match self.node.attr(name) {
            None => Ok(None),
            Some(Attribute::Tensor(t)) => Ok(Some(t)),
            Some(a) => Err(self.wrong(name, "TENSOR", a)),
        }
    }

    /// A `GRAPH` attribute.
    ///
    /// # Errors
    /// The attribute is missing or has another type.
    pub fn graph(&self, name: &str) -> Result<&'a Graph> {
        match self.node.attr(name) {
            None => Err(invalid(
                self.node,
                format!("missing required attribute {name:?}"),
            )),
            Some(Attribute::Graph(g)) => Ok(g),
            Some(a) => Err(self.wrong(name, "GRAPH", a)),
        }
    }

    /// A required `INT` attribute.
    ///
    /// # Errors
    /// The attribute is missing or has another type.
    pub fn int_req(&self, name: &str) -> Result<i64> {
        self.int_opt(name)?
            .ok_or_else(|| invalid(self.node, format!("missing required attribute {name:?}")))
    }
}

/// Normalizes a possibly negative `axis` against `rank` (`-1` is the last axis).
///
/// # Errors
/// The axis is outside `-rank..rank`.
pub fn norm_axis(node: &Node, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(Error::InvalidInput(format!(
            "{}: axis {axis} is out of range for rank {rank}",
            describe(node)
        )));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

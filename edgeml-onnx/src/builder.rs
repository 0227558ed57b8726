//! A small model builder for users, examples and tests.

use crate::Result;
use crate::ir::{Attribute, Dim, Graph, Model, Node, OpsetImport, Tensor, ValueInfo};
use edgeml_core::DType;

impl From<usize> for Dim {
    fn from(d: usize) -> Self {
        Dim::Known(d)
    }
}

impl From<&str> for Dim {
    fn from(s: &str) -> Self {
        Dim::Symbolic(s.to_owned())
    }
}

impl ValueInfo {
    /// A tensor value of element type `dtype` and shape `shape` (known extents as
    /// `usize`, symbolic ones as `&str`, via `Dim::from`).
    pub fn tensor(name: &str, dtype: DType, shape: Vec<Dim>) -> Self {
        Self {
            name: name.to_owned(),
            dtype: Some(dtype),
            shape: Some(shape),
            doc_string: String::new(),
        }
    }

    /// A value with a name only (type and shape unknown).
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::default()
        }
    }
}

impl Node {
    /// A default-domain node applying `op_type` to `inputs`, producing `outputs`
    /// (`""` marks an omitted optional input or output). The node is unnamed.
    pub fn new(op_type: &str, inputs: &[&str], outputs: &[&str]) -> Self {
        Self {
            op_type: op_type.to_owned(),
            inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
            outputs: outputs.iter().map(|s| (*s).to_owned()).collect(),
            ..Self::default()
        }
    }

    /// The node with attribute `name` set to `value` (appended).
    #[must_use]
    pub fn with_attr(mut self, name: &str, value: Attribute) -> Self {
        self.attributes.push((name.to_owned(), value));
        self
    }

    /// The node with name `name`.
    #[must_use]
    pub fn with_name(mut self, name: &str) -> Self {
        name.clone_into(&mut self.name);
        self
    }

    /// The node in operator domain `domain` (e.g. `"com.microsoft"`).
    #[must_use]
    pub fn with_domain(mut self, domain: &str) -> Self {
        domain.clone_into(&mut self.domain);
        self
    }
}

/// Builds a [`Model`] step by step: opsets, inputs, outputs, nodes, initializers.
///
/// ```
/// use edgeml_onnx::{Model, ModelBuilder, Node, Tensor, ValueInfo};
/// use edgeml_core::DType;
/// use ndarray::{ArrayD, IxDyn};
///
/// # fn main() -> edgeml_onnx::Result<()> {
/// let model: Model = ModelBuilder::new(17)
///     .input(ValueInfo::tensor("x", DType::F32, vec!["N".into(), 4.into()]))
///     .initializer("b", Tensor::F32(ArrayD::zeros(IxDyn(&[4]))))
///     .node(Node::new("Add", &["x", "b"], &["y"]))
///     .output(ValueInfo::tensor("y", DType::F32, vec!["N".into(), 4.into()]))
///     .build()?;
/// assert_eq!(model.graph.nodes.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ModelBuilder {
    model: Model,
}

impl ModelBuilder {
    /// A model importing the default domain at `opset` (IR version 8, producer
    /// `edgeml`).
    pub fn new(opset: i64) -> Self {
        Self {
            model: Model {
                ir_version: 8,
                opset_imports: vec![OpsetImport {
                    domain: String::new(),
                    version: opset,
                }],
                producer_name: "edgeml".to_owned(),
                graph: Graph {
                    name: "main".to_owned(),
                    ..Graph::default()
                },
                ..Model::default()
            },
        }
    }

    /// Replaces the whole graph built so far by `graph` (e.g. one written as a struct
    /// literal).
    #[must_use]
    pub fn with_graph(mut self, graph: Graph) -> Self {
        self.model.graph = graph;
        self
    }

    /// Imports `domain` at `version` too (replacing an earlier import of `domain`).
    #[must_use]
    pub fn opset(mut self, domain: &str, version: i64) -> Self {
        self.model.opset_imports.retain(|o| o.domain != domain);
        self.model.opset_imports.push(OpsetImport {
            domain: domain.to_owned(),
            version,
        });
        self
    }

    /// Adds a graph input.
    #[must_use]
    pub fn input(mut self, value: ValueInfo) -> Self {
        self.model.graph.inputs.push(value);
        self
    }

    /// Adds a graph output.
    #[must_use]
    pub fn output(mut self, value: ValueInfo) -> Self {
        self.model.graph.outputs.push(value);
        self
    }

    /// Adds a node (after the ones added before).
    #[must_use]
    pub fn node(mut self, node: Node) -> Self {
        self.model.graph.nodes.push(node);
        self
    }

    /// Adds an initializer.
    #[must_use]
    pub fn initializer(mut self, name: &str, value: Tensor) -> Self {
        self.model.graph.initializers.push((name.to_owned(), value));
        self
    }

    /// Adds a `value_info` annotation.
    #[must_use]
    pub fn value_info(mut self, value: ValueInfo) -> Self {
        self.model.graph.value_info.push(value);
        self
    }

    /// The model, validated ([`Model::validate`]).
    ///
    /// # Errors
    /// As [`Model::validate`]: dangling inputs, cycles, values defined twice, outputs
    /// never produced.
    pub fn build(self) -> Result<Model> {
        self.model.validate()?;
        Ok(self.model)
    }

    /// The model as it stands, not validated (for tests of invalid graphs).
    pub fn build_unchecked(self) -> Model {
        self.model
    }
}

//! Graph rewrites over the public editing API, each usable on its own or in a
//! [`Pipeline`].
//!
//! | pass | what it does |
//! |---|---|
//! | [`ConstantToInitializer`] | `Constant` nodes become initializers |
//! | [`FoldConstants`] | nodes whose inputs are all constant run once through the runtime's own operators; their outputs become initializers (bounded by a size limit) |
//! | [`EliminateCommonSubexpressions`] | identical constants and identical deterministic nodes (same operator, attributes and inputs) are merged into the first |
//! | [`MergeTransposes`] | `Transpose` of a `Transpose` becomes one (or none, when the permutations cancel) |
//! | [`TransposeToReshape`] | a `Transpose` that only moves extent-1 axes becomes a `Reshape` |
//! | [`MergeReshapes`] | a `Reshape` of a `Reshape` becomes one; a `Reshape` to the shape its input has becomes an `Identity` |
//! | [`EliminateIdentity`] | `Identity` and inference `Dropout` are removed, their consumers read the input |
//! | [`FuseConvMul`] | a constant per-channel `Mul` after a `Conv` scales its weights and bias |
//! | [`FuseConvAddBias`] | a constant per-channel `Add` after a `Conv` becomes its bias |
//! | [`FuseMatMulAdd`] | a 2-D `MatMul` with constant weights and a constant bias `Add` becomes a `Gemm` |
//! | [`FoldBatchNorm`] | an inference `BatchNormalization` after a `Conv`, `ConvTranspose` (any `group`), `Gemm` or 2-D `MatMul` with constant weights is folded into them |
//! | [`FuseHardSwish`] | `x · clip(x + 3, 0, 6) / 6` in element-wise operators → `HardSwish` (opset ≥ 14; extended level only: may differ in the last bits) |
//! | [`FuseConvActivation`] | `Conv` + activation → onnxruntime's `com.microsoft` `FusedConv` (extended level only) |
//! | [`EliminateDeadCode`] | [`Graph::remove_dead`](crate::Graph::remove_dead) |
//! | [`InferShapes`] | element types and shapes of intermediate values are written into `value_info` |
//!
//! Passes rewrite the main graph; subgraphs (`If`/`Loop` bodies) are left as they are.
//! Graph input and output names never change. From IR version 4 on, an initializer
//! that is also listed as a graph input can be overridden at run time (onnxruntime
//! does), so no pass treats it as a constant then.

mod bias;
mod bn;
mod cse;
mod fold;
mod fuse;
mod gemm;
mod hardswish;
mod infer;
mod reshape;
mod simplify;
mod transpose;

pub use bias::{FuseConvAddBias, FuseConvMul};
pub use bn::FoldBatchNorm;
pub(crate) use bn::fold_into_layer;
pub use cse::EliminateCommonSubexpressions;
pub use fold::FoldConstants;
pub use fuse::FuseConvActivation;
pub use gemm::FuseMatMulAdd;
pub use hardswish::FuseHardSwish;
pub use infer::{InferShapes, infer_shapes, infer_value_types};
pub use reshape::{MergeReshapes, TransposeToReshape};
pub use simplify::{ConstantToInitializer, EliminateDeadCode, EliminateIdentity};
pub use transpose::MergeTransposes;

use crate::{Graph, Model, Result, Tensor};
use std::collections::{HashMap, HashSet};

/// One graph rewrite.
///
/// # Implementing
/// `run` rewrites `model` in place through the editing API and returns how many
/// rewrites it made (0 when the model is unchanged). It must leave a valid graph
/// (topologically sorted, every input defined) when given one, and must not panic.
///
/// # Errors
/// A pass fails only when the model itself is invalid (a cycle, a dangling input, a
/// shape contradiction); a rewrite that does not apply is skipped, not an error.
pub trait Pass {
    /// A short name, for reports (`"fold-constants"`).
    fn name(&self) -> &'static str;

    /// Applies the pass to `model`; returns the number of rewrites.
    ///
    /// # Errors
    /// See the trait documentation.
    fn run(&self, model: &mut Model) -> Result<usize>;
}

/// Which passes [`Pipeline::for_level`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OptimizeLevel {
    /// Standard-domain rewrites only, so any runtime runs the result: constant
    /// folding, merging of duplicate constants and nodes, `Identity`/`Dropout`
    /// removal, `Transpose`/`Reshape` simplification, Conv scale and bias, `MatMul` + `Add` →
    /// `Gemm` and BatchNormalization folding, dead code.
    #[default]
    Basic,
    /// `Basic` plus fusions into onnxruntime's `com.microsoft` operators
    /// ([`FuseConvActivation`]).
    Extended,
}

/// What a [`Pipeline`] run changed: rewrites per pass, in pass order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PipelineReport {
    /// `(pass name, rewrites)` summed over rounds.
    pub changes: Vec<(&'static str, usize)>,
    /// Rounds run (a round runs every pass once; the pipeline stops after a round that
    /// changed nothing).
    pub rounds: usize,
}

impl PipelineReport {
    /// Total rewrites.
    pub fn total(&self) -> usize {
        self.changes.iter().map(|(_, n)| n).sum()
    }
}

/// Passes run in order, round after round, until a round changes nothing (at most
/// [`Pipeline::max_rounds`] rounds), so that running a pipeline twice changes nothing
/// the second time.
pub struct Pipeline {
    passes: Vec<Box<dyn Pass>>,
    max_rounds: usize,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field(
                "passes",
                &self.passes.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .field("max_rounds", &self.max_rounds)
            .finish()
    }
}

impl Default for Pipeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Pipeline {
    /// An empty pipeline (at most 8 rounds).
    pub fn new() -> Self {
        Self {
            passes: Vec::new(),
            max_rounds: 8,
        }
    }

    /// The pipeline with `pass` appended.
    #[must_use]
    pub fn with(mut self, pass: impl Pass + 'static) -> Self {
        self.passes.push(Box::new(pass));
        self
    }

    /// The pipeline with at most `rounds` rounds (at least 1).
    #[must_use]
    pub fn max_rounds(mut self, rounds: usize) -> Self {
        self.max_rounds = rounds.max(1);
        self
    }

    /// The passes of `level`: [`ConstantToInitializer`], [`FoldConstants`] (default
    /// limit), [`EliminateCommonSubexpressions`], [`MergeTransposes`],
    /// [`TransposeToReshape`], [`MergeReshapes`], [`EliminateIdentity`],
    /// [`FuseConvMul`], [`FuseConvAddBias`], [`FuseMatMulAdd`], [`FoldBatchNorm`], then for `Extended`
    /// [`FuseHardSwish`] and [`FuseConvActivation`], and [`EliminateDeadCode`] last.
    pub fn for_level(level: OptimizeLevel) -> Self {
        Self::for_level_with(level, FoldConstants::default())
    }

    /// [`Pipeline::for_level`] with `fold` as the folding pass (e.g. another size
    /// limit).
    pub fn for_level_with(level: OptimizeLevel, fold: FoldConstants) -> Self {
        let p = Self::new()
            .with(ConstantToInitializer)
            .with(fold)
            .with(EliminateCommonSubexpressions)
            .with(MergeTransposes)
            .with(TransposeToReshape)
            .with(MergeReshapes)
            .with(EliminateIdentity)
            .with(FuseConvMul)
            .with(FuseConvAddBias)
            .with(FuseMatMulAdd)
            .with(FoldBatchNorm);
        let p = match level {
            OptimizeLevel::Basic => p,
            OptimizeLevel::Extended => p.with(FuseHardSwish).with(FuseConvActivation),
        };
        p.with(EliminateDeadCode)
    }

    /// Sorts the graph topologically, then runs the passes.
    ///
    /// # Errors
    /// A cycle or dangling input ([`crate::Error::InvalidModel`]), or the first error
    /// of a pass. The model may be partly rewritten then (each pass leaves it valid).
    pub fn run(&self, model: &mut Model) -> Result<PipelineReport> {
        model.graph.sort_topologically()?;
        let mut report = PipelineReport {
            changes: self.passes.iter().map(|p| (p.name(), 0)).collect(),
            rounds: 0,
        };
        for _ in 0..self.max_rounds {
            report.rounds += 1;
            let mut changed = 0;
            for (p, slot) in self.passes.iter().zip(&mut report.changes) {
                let n = p.run(model)?;
                log::debug!("pass {}: {n} rewrites", p.name());
                slot.1 += n;
                changed += n;
            }
            if changed == 0 {
                break;
            }
        }
        Ok(report)
    }
}

/// The constant values of the main graph: its initializers, except, from IR version 4
/// on, those also listed as graph inputs (onnxruntime lets a caller override those at
/// run time; before IR 4 every initializer had to be listed as an input).
pub(crate) fn constants(g: &Graph, ir_version: i64) -> HashMap<&str, &Tensor> {
    let inputs: HashSet<&str> = if ir_version >= 4 {
        g.inputs.iter().map(|v| v.name.as_str()).collect()
    } else {
        HashSet::new()
    };
    g.initializers
        .iter()
        .filter(|(n, _)| !inputs.contains(n.as_str()))
        .map(|(n, t)| (n.as_str(), t))
        .collect()
}

/// Operators whose outputs differ between runs: never folded at plan time nor merged
/// by common-subexpression elimination.
pub(crate) const NONDETERMINISTIC: &[&str] = &[
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
];

/// What [`of_constant`] found: the binary node's producer operand and its constant.
pub(crate) struct OfConstant<'m> {
    /// Index of the node whose single output is the non-constant operand.
    pub(crate) producer: usize,
    /// Name of the constant operand.
    pub(crate) constant: &'m str,
    /// The main graph's constants ([`constants`]), for the caller's further checks.
    pub(crate) consts: HashMap<&'m str, &'m Tensor>,
}

/// Whether node `k` is a default-domain `op` (`Add`, `Mul`) of two distinct operands,
/// one a constant and the other the single-use, only output of a default-domain
/// `producer_op` node (the shape of every "fold a constant `Add`/`Mul` into the layer
/// before it" rewrite).
pub(crate) fn of_constant<'m>(
    model: &'m Model,
    k: usize,
    op: &str,
    producer_op: &str,
) -> Option<OfConstant<'m>> {
    let g = &model.graph;
    let add = &g.nodes[k];
    if !default_domain(add)
        || add.op_type != op
        || add.inputs.len() != 2
        || add.outputs.len() != 1
        || add.inputs[0] == add.inputs[1]
    {
        return None;
    }
    let consts = constants(g, model.ir_version);
    let (y, c) = if consts.contains_key(add.inputs[1].as_str()) {
        (&add.inputs[0], &add.inputs[1])
    } else if consts.contains_key(add.inputs[0].as_str()) {
        (&add.inputs[1], &add.inputs[0])
    } else {
        return None;
    };
    let ix = g.index();
    let producer = ix.producer(y)?;
    let p = &g.nodes[producer];
    if !default_domain(p) || p.op_type != producer_op || p.outputs.len() != 1 || ix.uses(y) != 1 {
        return None;
    }
    Some(OfConstant {
        producer,
        constant: c,
        consts,
    })
}

/// Whether `node` is in the default ONNX domain.
pub(crate) fn default_domain(node: &crate::Node) -> bool {
    node.domain.is_empty() || node.domain == "ai.onnx"
}

/// Whether `node` has subgraph attributes.
pub(crate) fn has_subgraphs(node: &crate::Node) -> bool {
    node.attributes
        .iter()
        .any(|(_, a)| matches!(a, crate::Attribute::Graph(_) | crate::Attribute::Graphs(_)))
}

/// Before IR version 4 every initializer must also be listed as a graph input (the
/// onnx checker refuses the model otherwise): lists the initializers a pass added.
pub(crate) fn list_initializers_as_inputs(model: &mut Model) {
    if model.ir_version >= 4 {
        return;
    }
    let g = &mut model.graph;
    let listed: HashSet<String> = g.inputs.iter().map(|v| v.name.clone()).collect();
    for (n, t) in &g.initializers {
        if !listed.contains(n) {
            g.inputs.push(crate::ValueInfo {
                name: n.clone(),
                dtype: Some(t.dtype()),
                shape: Some(t.shape().iter().map(|&d| crate::Dim::Known(d)).collect()),
                doc_string: String::new(),
            });
        }
    }
}

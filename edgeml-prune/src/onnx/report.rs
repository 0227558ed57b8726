//! The pruning report: per layer and model-wide, serde-serializable.

use super::Layer;
use edgeml_onnx::{Graph, SparseTensor, Tensor};
use serde::Serialize;

/// How a pruned weight is stored when the model is saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// A dense `initializer` (zeros included).
    Dense,
    /// A COO `sparse_initializer`: the non-zero values plus one `int64` index each.
    Sparse,
}

/// One pruned layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerReport {
    /// The node's name (its first output when the node has no name).
    pub node: String,
    /// The node's op type.
    pub op_type: String,
    /// The weight initializer's name.
    pub weight: String,
    /// Weight shape before pruning.
    pub shape_before: Vec<usize>,
    /// Weight shape after pruning (smaller when channels were removed, here or by the
    /// previous layer's removal).
    pub shape_after: Vec<usize>,
    /// Weights before pruning.
    pub params_before: usize,
    /// Weights after pruning, zeros included (`shape_after`'s element count).
    pub params_after: usize,
    /// Non-zero weights after pruning.
    pub nonzero_after: usize,
    /// `1 − nonzero_after / params_before`.
    pub sparsity: f64,
    /// Dense bytes of the weight before pruning.
    pub bytes_before: usize,
    /// Bytes of the weight as it will be saved (dense or COO).
    pub bytes_after: usize,
    /// How the weight will be saved.
    pub storage: Storage,
    /// Output channels removed from the graph.
    pub channels_removed: usize,
    /// Why channels were only zeroed, if they were.
    pub note: Option<String>,
}

impl LayerReport {
    pub(super) fn new(
        l: &Layer,
        shape_before: &[usize],
        t: Option<&Tensor>,
        channels_removed: usize,
        note: Option<String>,
    ) -> Self {
        let params_before: usize = shape_before.iter().product();
        let (shape_after, nonzero_after, bytes_after) = match t {
            Some(t) => {
                let nz = match t {
                    Tensor::F32(a) => a.iter().filter(|&&w| w != 0.0).count(),
                    _ => t.len(),
                };
                (t.shape().to_vec(), nz, t.size_bytes())
            }
            None => (Vec::new(), 0, 0),
        };
        LayerReport {
            node: l.name.clone(),
            op_type: l.op_type.clone(),
            weight: l.weight.clone(),
            shape_before: shape_before.to_vec(),
            params_after: shape_after.iter().product(),
            shape_after,
            params_before,
            nonzero_after,
            sparsity: 1.0 - nonzero_after as f64 / params_before.max(1) as f64,
            bytes_before: params_before * 4,
            bytes_after,
            storage: Storage::Dense,
            channels_removed,
            note,
        }
    }

    /// COO (4-byte value + 8-byte index per non-zero) is smaller than dense.
    pub(super) fn use_sparse(&self) -> bool {
        self.nonzero_after * 12 < self.bytes_after
    }

    pub(super) fn set_sparse(&mut self) {
        self.storage = Storage::Sparse;
        self.bytes_after = self.nonzero_after * 12;
    }
}

/// A node of a prunable op type that was left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedLayer {
    /// The node's name (its first output when the node has no name).
    pub node: String,
    /// The node's op type.
    pub op_type: String,
    /// Why it was not pruned.
    pub reason: String,
}

/// Parameter and byte counts over all initializers of a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub(super) struct WeightTotals {
    params: usize,
    nonzero: usize,
    bytes: usize,
}

impl WeightTotals {
    pub(super) fn of(g: &Graph) -> Self {
        let mut t = WeightTotals::default();
        for (name, x) in &g.initializers {
            let nz = match x {
                Tensor::F32(a) => a.iter().filter(|&&w| w != 0.0).count(),
                _ => x.len(),
            };
            t.params += x.len();
            t.nonzero += nz;
            t.bytes += if g.extras.sparse_initializers.contains(name) {
                SparseTensor::from_dense(x).size_bytes()
            } else {
                x.size_bytes()
            };
        }
        t
    }
}

/// What [`prune_model`](super::prune_model) did: per layer, and totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PruneReport {
    /// The pruned layers, in graph order.
    pub layers: Vec<LayerReport>,
    /// Nodes of prunable op types left alone.
    pub skipped: Vec<SkippedLayer>,
    /// Weights of the pruned layers before pruning.
    pub pruned_params_before: usize,
    /// Non-zero weights of the pruned layers after pruning.
    pub pruned_nonzero_after: usize,
    /// `1 − pruned_nonzero_after / pruned_params_before`: the sparsity over the pruned
    /// layers.
    pub sparsity: f64,
    /// All initializer elements of the model before (biases, norms, ... included).
    pub model_params_before: usize,
    /// All initializer elements of the model after (zeros included).
    pub model_params_after: usize,
    /// Non-zero initializer elements of the model after (non-`f32` counted as non-zero).
    pub model_nonzero_after: usize,
    /// Bytes of all initializers before, as stored in memory (dense).
    pub model_bytes_before: usize,
    /// Bytes of all initializers as they will be saved (dense or COO).
    pub model_bytes_after: usize,
    /// With [`PruneConfig::structured`](super::PruneConfig::structured): every coupled
    /// channel group, pruned or blocked (empty otherwise).
    pub groups: Vec<super::GroupReport>,
    /// With [`PruneConfig::recalibrate`](super::PruneConfig::recalibrate): every
    /// `Conv`/`Gemm`/`MatMul` considered, refit or not (empty otherwise).
    pub recalibrated: Vec<super::RefitReport>,
}

impl PruneReport {
    pub(super) fn new(
        layers: Vec<LayerReport>,
        skipped: Vec<SkippedLayer>,
        before: WeightTotals,
        after: WeightTotals,
    ) -> Self {
        let pb: usize = layers.iter().map(|l| l.params_before).sum();
        let nz: usize = layers.iter().map(|l| l.nonzero_after).sum();
        PruneReport {
            layers,
            skipped,
            pruned_params_before: pb,
            pruned_nonzero_after: nz,
            sparsity: 1.0 - nz as f64 / pb.max(1) as f64,
            model_params_before: before.params,
            model_params_after: after.params,
            model_nonzero_after: after.nonzero,
            model_bytes_before: before.bytes,
            model_bytes_after: after.bytes,
            groups: Vec::new(),
            recalibrated: Vec::new(),
        }
    }

    /// Replaces the model-wide totals after the pruning.
    pub(super) fn set_after(&mut self, after: WeightTotals) {
        self.model_params_after = after.params;
        self.model_nonzero_after = after.nonzero;
        self.model_bytes_after = after.bytes;
    }
}

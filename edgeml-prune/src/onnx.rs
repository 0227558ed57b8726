//! Model-level pruning of ONNX graphs (feature `onnx`).
//!
//! [`prune_model`] applies a [`Pattern`] to the weights of the `Conv`, `ConvTranspose`,
//! `Gemm` and `MatMul` nodes of a [`Model`] whose weight (second input) is an `f32`
//! initializer. Biases and normalisation parameters are never pruned. Every pattern sees
//! the weight in a canonical `[out, in, ...]` layout, so that axis 0 is always the output
//! channels:
//!
//! | op | weight | canonical view |
//! |---|---|---|
//! | `Conv` | `[C_out, C_in/g, kh, kw]` | as stored |
//! | `ConvTranspose` | `[C_in, C_out/g, kh, kw]` | axes 0 and 1 swapped |
//! | `Gemm` | `B`: `[N, K]` with `transB = 1`, else `[K, N]` | `[N, K]` |
//! | `MatMul` | second input `[K, N]` (2-D only) | `[N, K]` |
//!
//! With [`Pattern::Channels`] on axis 0 and [`PruneConfig::remove_channels`], pruned
//! output channels are removed for real where the graph allows it simply (see
//! [below](self#structured-channel-removal)); the final layer (no prunable layer
//! downstream) is skipped by the channel pattern, since its output channels are the
//! model's outputs.
//!
//! # Structured channel removal
//!
//! A producer (`Conv` with `group = 1`, `Gemm`, 2-D `MatMul`) loses its pruned output
//! channels when its output runs, one consumer at a time, through any of
//! `BatchNormalization`, an `Add`/`Mul` with a per-channel initializer, channel-wise
//! unary ops (`Relu`, `Clip`, `LeakyRelu`, `Sigmoid`, `Tanh`, ..., pooling) into the
//! next `Conv` (`group = 1`), `Gemm` or `MatMul`, or through `Flatten` into a `Gemm` or
//! `MatMul`. The producer's weight and bias, the per-channel parameters on the way and
//! the next layer's input channels are sliced; stale `value_info` entries on the way
//! are dropped. Anything else (residual `Add`, `Concat`, `Split`, `Reshape`, several
//! consumers, grouped or depthwise convs, a graph output) keeps the channels zeroed
//! in place and says why in [`LayerReport::note`]; [`PruneConfig::structured`] follows
//! channels through such couplings (see
//! [below](self#structured-pruning-of-coupled-channel-groups)).
//!
//! A pruned channel's weights are zero, so it outputs a constant (its bias carried
//! through the chain). Removing it would drop that constant, so it is folded into the
//! next layer's bias (created if missing): the smaller model computes what the zeroed
//! one did. Where that cannot be done exactly (a next `Conv` that pads its input, an op
//! on the way that is not evaluated, a `MatMul` without a bias `Add`), the channels are
//! still removed and [`LayerReport::note`] says that their constant was dropped, as
//! Torch-Pruning always does.
//!
//! # Structured pruning of coupled channel groups
//!
//! With [`PruneConfig::structured`], channels are removed in *groups*, as
//! Torch-Pruning's `DependencyGraph` does, so that residual networks, branches and
//! depthwise-separable blocks can be pruned, not only simple chains. Walking the graph
//! in topological order, each tensor's channel axis is tracked as segments of groups:
//!
//! | op | channels |
//! |---|---|
//! | `Conv` (`group = 1`), `Gemm` (`transA = 0`), `MatMul` with a 2-D initializer | a new group of its output channels (weight axis 0 / `N`, bias); its input channels join the input's groups (weight axis 1 / `K`) |
//! | depthwise `Conv` (`group = C_in = C_out`, weight `[C, 1, k, k]`) | passes its input's groups through (weight axis 0, bias); `group` is rewritten after pruning |
//! | grouped `Conv` (`1 < group = G`, not depthwise) | a new group of `C_out/G` channels repeated in `G` segments (channel `j` of every output slice goes together); the `G` input slices are coupled index by index (channel `j` of every slice is weight column `j`); `group` stays `G` |
//! | channel shuffle: `Reshape` `[N, g, C/g, H, W]`, `Transpose` `(0, 2, 1, 3, 4)`, `Reshape` `[N, C, H, W]` | the `g` blocks are coupled index by index; after it each channel takes `g` adjacent positions; both shapes are rewritten |
//! | `Split` on the channel axis | each output is its piece of the layout; sizes (attribute or input) are rewritten; an equal split without sizes couples its pieces |
//! | `Reshape` of `[N, C, ...]` to `[0 or N, -1 or C·S]` (static `N`) | as `Flatten`; an explicit `C·S` is rewritten |
//! | `BatchNormalization` | passes through; its four parameters are members |
//! | `Add`, `Sub`, `Mul`, `Div`, and variadic `Sum`, `Mean`, `Max`, `Min`, of tracked tensors | couple the operands' groups segment by segment (residual connections, squeeze-excitation gates) |
//! | the same with an initializer | a per-channel initializer is a member, a scalar broadcasts |
//! | `Concat` on the channel axis | the inputs' segments one after the other (each group keeps its offset) |
//! | `Flatten(axis = 1)` into `Gemm`/`MatMul` | each channel becomes a block of `H·W` input features |
//! | `Relu`, `Clip`, `LeakyRelu`, `PRelu` (slope is a member), `Sigmoid`, `HardSwish`, `Tanh`, ..., `Identity`, `Dropout`, `MaxPool`, `AveragePool`, `GlobalAveragePool`, `GlobalMaxPool`, `LpPool` | pass through |
//!
//! Anything else blocks every group it touches, and the group is left alone and
//! reported in [`PruneReport::groups`] with the reason: a graph output, a subgraph
//! (`If`/`Loop` body) reading the tensor, tracked channels used as another op's
//! parameter (a dynamic weight, a shape), any other `Reshape`, `Transpose`, `Slice`,
//! `Softmax`, any other op; a grouped conv's input slices (or a split or shuffle
//! boundary) that fall inside a shuffled channel's block (ShuffleNet's stage 2: 34
//! channels per group after a shuffle of 4 blocks) block its input groups; shape and
//! size constants that are not private `int64` initializers; `Concat` off the channel
//! axis or of shuffled layouts; operands that are not tracked (a graph input added to a
//! conv output); members that are shared by several nodes, graph inputs or not `f32`;
//! widths that disagree; groups holding a weight of an excluded layer
//! ([`PruneConfig::exclude`]).
//!
//! **Grouped convs and shuffles, exactly.** Output channel `k·(C_out/G) + j` of a
//! grouped conv reads input slice `k` only, through weight rows `k·(C_out/G) + j` and
//! columns `0 .. C_in/G`. Removing channel `j` of *every* output slice removes the same
//! row in every slice; removing input channel `j` of every input slice removes weight
//! column `j`, which every slice uses for its own input. So each slice keeps the same
//! count, `group` stays `G`, and the pruned conv computes the original one restricted to
//! the kept channels. (A looser rule, equal counts per slice with different indices,
//! would need a column gather per slice; it is not implemented.) Where
//! a slice boundary falls inside a group, the group is split there; where the coupled
//! slices are segmented differently, each is cut at the others' boundaries first, so
//! coupling can reach a fine grain: ShuffleNet's residual streams (a `Concat` of 112 +
//! 24 channels read in slices of 34, summed with grouped conv outputs) become one group
//! of 2 channels, each half of every stream. A channel shuffle of `g` blocks moves
//! channel `a·(C/g) + b` to `b·g + a`; with the blocks coupled, channel `b` of every
//! block is one channel, whose `g` copies sit side by side after the shuffle (a block of
//! `g` positions), and the shapes stay well-formed (`C'/g` per block).
//!
//! **Importance.** The score of channel `c` of a group is the norm of all the group's
//! weights that hold it — every `Output`, `Input` and `Depthwise` member, parameters
//! (biases, BN) excluded: `Σ |w|` (L1) or `sqrt(Σ w²)` (L2). That is Torch-Pruning's
//! `GroupMagnitudeImportance` with `group_reduction = "sum"` over `|w|^p` (its default
//! is `"mean"` of the per-layer norms; the order is the same up to the `p`-th power of
//! every layer weighing alike). [`Scope::Layer`] prunes `round(sparsity · C)` channels
//! of every group; [`Scope::Global`] divides each group's scores by their mean (TP's
//! `normalizer = "mean"`) and prunes the lowest `round(sparsity · Σ C)` over all open
//! groups. Then every group keeps at least [`StructuredConfig::min_channels`] (and at
//! least 1), and its kept count is rounded **up** to a multiple of
//! [`StructuredConfig::round_to`] (at most `C`), so rounding prunes fewer channels,
//! never more. Ties: the lower channel index is pruned first.
//!
//! **Surgery.** Every member is sliced at the same channel indices (at its offset,
//! `block` indices per channel), depthwise `group` attributes follow, the constants that
//! count channels (shuffle and flatten shapes, split sizes) are scaled to the kept
//! width, `value_info` of the tensors whose width changed is dropped. Removed channels' constant output (a
//! bias through BN) is dropped with them, as Torch-Pruning does: the pruned model
//! computes exactly what the original computes with every member slice of the removed
//! channels set to zero (tested). `pattern`, `scope`, `min_size` and `remove_channels`
//! are not used; [`LayerReport::channels_removed`] counts the output channels each layer
//! lost.
//!
//! # Least-squares recalibration
//!
//! With [`PruneConfig::recalibrate`], after the pruning every `Conv` (2-D, `group = 1`),
//! `Gemm` (`transA = 0`) and 2-D `MatMul` with a private f32 initializer weight —
//! pruned or not, excluded layers aside — is refit in graph order: on the calibration
//! batches, its input in the pruned model (with the earlier refits applied) gives
//! feature rows `f` (im2col patches for a Conv), the original model's output of the
//! same node gives targets `y` (restricted to the channels the pruning kept), and each
//! output channel's non-zero weights `w` and bias minimise
//! `‖w·f + b − y‖² + λ‖w − w₀‖²` (normal equations and a Cholesky solve in f64; `w₀`
//! the pruned weights, so a feature the data never shows keeps its weight; `λ` =
//! [`Recalibrate::dampening`] × the mean diagonal of `ΣffT`). Zeros stay zero, so the
//! sparsity and the removed channels are unchanged. A `MatMul` followed by an `Add` of
//! a per-channel initializer refits that bias too (the target is then the `Add`'s
//! output); a `Conv` or `Gemm` without a bias gains one. This is the layer-wise
//! reconstruction of SparseGPT/OBC and of He et al. (2017)'s channel pruning, solved
//! exactly instead of by their approximate updates; it needs no labels and no
//! training. A channel whose dampened solution would fit the data worse than its
//! pruned weights keeps them. Each layer costs one run of both models over the batches
//! plus `O(rows · features²)` to accumulate and `O(features³)` to factor (once for
//! all rows without zeros, once per row otherwise), so layers above
//! [`Recalibrate::max_features`] input features, or whose solves would exceed 10¹¹
//! operations, are left as they are; [`PruneReport::recalibrated`] lists every layer with its
//! relative output error before and after, or the reason it was left.

mod channels;
mod depgraph;
mod fold;
mod recalibrate;
mod report;
mod structured;

pub use depgraph::{Member, MemberKind};
pub use recalibrate::{Recalibrate, RefitReport};
pub use report::{LayerReport, PruneReport, SkippedLayer, Storage};
pub use structured::{GroupReport, StructuredConfig};

use crate::controller::Scope;
use crate::error::{Error, Result, check_sparsity};
use crate::global::global_magnitude_into;
use crate::pattern::Pattern;
use crate::select::Amount;
use edgeml_core::Pruner;
use edgeml_onnx::{Attribute, Graph, Model, Node, Tensor};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;

/// What [`prune_model`] does. `Default`: 50% unstructured magnitude, layer-wise, no
/// exclusions, channels removed where possible, dense storage.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneConfig {
    /// Fraction of units to prune in each layer (or over all layers with
    /// [`Scope::Global`]), in `[0, 1)`.
    pub sparsity: f64,
    /// The pattern, applied to each weight in its canonical `[out, in, ...]` view.
    pub pattern: Pattern,
    /// Layer-wise, or global unstructured magnitude (only with [`Pattern::Magnitude`]).
    pub scope: Scope,
    /// Node names, op types (`"Gemm"`) or weight initializer names left dense; each
    /// must name something in the model.
    pub exclude: Vec<String>,
    /// Layers with fewer weights than this stay dense (default 0: none), as
    /// [`ControllerConfig::min_size`](crate::ControllerConfig::min_size).
    pub min_size: usize,
    /// With [`Pattern::Channels`] on axis 0: remove pruned output channels for real
    /// where the graph allows it (default `true`).
    pub remove_channels: bool,
    /// Mark pruned weights for saving as COO `sparse_initializer` when that is smaller
    /// than dense (default `false`).
    pub sparse_storage: bool,
    /// Structured pruning of coupled channel groups (see the
    /// [module docs](self#structured-pruning-of-coupled-channel-groups)) instead of
    /// `pattern`, `scope`, `min_size` and `remove_channels` (default `None`).
    pub structured: Option<StructuredConfig>,
    /// Least-squares recalibration after pruning (default `None`; `edgeml prune
    /// --recalibrate DATA`): each `Conv` (2-D, `group = 1`), `Gemm` and `MatMul` keeps
    /// its zeros but refits its other weights and its bias, in graph order, so that on
    /// the calibration batches it reproduces the original model's layer output (see
    /// [below](self#least-squares-recalibration)). The report's
    /// [`PruneReport::recalibrated`] gives each layer's error before and after.
    pub recalibrate: Option<Recalibrate>,
}

impl Default for PruneConfig {
    fn default() -> Self {
        PruneConfig {
            sparsity: 0.5,
            pattern: Pattern::Magnitude,
            scope: Scope::Layer,
            exclude: Vec::new(),
            min_size: 0,
            remove_channels: true,
            sparse_storage: false,
            structured: None,
            recalibrate: None,
        }
    }
}

/// A prunable node: its index, display name and weight.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub(crate) node: usize,
    pub(crate) name: String,
    pub(crate) op_type: String,
    pub(crate) weight: String,
    /// Permutation from the stored weight to the canonical `[out, in, ...]` view.
    pub(crate) perm: Vec<usize>,
}

fn int_attr(n: &Node, name: &str, default: i64) -> i64 {
    match n.attr(name) {
        Some(Attribute::Int(i)) => *i,
        _ => default,
    }
}

fn display_name(n: &Node) -> String {
    if n.name.is_empty() {
        n.outputs.first().cloned().unwrap_or_default()
    } else {
        n.name.clone()
    }
}

/// The canonical permutation of `n`'s weight of `rank`, or why it is not prunable.
fn canonical_perm(n: &Node, rank: usize) -> std::result::Result<Vec<usize>, String> {
    let swap01 = |rank: usize| {
        let mut p: Vec<usize> = (0..rank).collect();
        p.swap(0, 1);
        p
    };
    match n.op_type.as_str() {
        "Conv" if rank >= 3 => Ok((0..rank).collect()),
        "ConvTranspose" if rank >= 3 => Ok(swap01(rank)),
        "Gemm" if rank == 2 && int_attr(n, "transB", 0) != 0 => Ok(vec![0, 1]),
        "Gemm" | "MatMul" if rank == 2 => Ok(vec![1, 0]),
        op => Err(format!("{op} weight of rank {rank} is not supported")),
    }
}

/// The prunable layers of `g` and the nodes left out (with why).
pub(crate) fn find_layers(
    g: &Graph,
    exclude: &[String],
) -> Result<(Vec<Layer>, Vec<SkippedLayer>)> {
    for e in exclude {
        let hit = g.nodes.iter().any(|n| {
            &n.name == e || &n.op_type == e || display_name(n) == *e || n.inputs.get(1) == Some(e)
        });
        if !hit {
            return Err(Error::UnknownExclusion(e.clone()));
        }
    }
    let (mut layers, mut skipped) = (Vec::new(), Vec::new());
    for (i, n) in g.nodes.iter().enumerate() {
        if !matches!(
            n.op_type.as_str(),
            "Conv" | "ConvTranspose" | "Gemm" | "MatMul"
        ) || !(n.domain.is_empty() || n.domain == "ai.onnx")
        {
            continue;
        }
        let name = display_name(n);
        let weight = n.inputs.get(1).cloned().unwrap_or_default();
        let mut skip = |reason: String| {
            skipped.push(SkippedLayer {
                node: name.clone(),
                op_type: n.op_type.clone(),
                reason,
            });
        };
        if exclude
            .iter()
            .any(|e| *e == n.name || *e == n.op_type || *e == name || *e == weight)
        {
            skip("excluded".into());
            continue;
        }
        let perm = match g.initializer(&weight) {
            None => {
                skip(format!("weight `{weight}` is not an initializer"));
                continue;
            }
            Some(Tensor::F32(a)) if a.is_empty() => {
                skip(format!("weight `{weight}` is empty"));
                continue;
            }
            Some(Tensor::F32(a)) => match canonical_perm(n, a.ndim()) {
                Ok(p) => p,
                Err(why) => {
                    skip(why);
                    continue;
                }
            },
            Some(t) => {
                skip(format!("weight `{weight}` is {}, not f32", t.dtype()));
                continue;
            }
        };
        if layers.iter().any(|l: &Layer| l.weight == weight) {
            skip(format!("weight `{weight}` is shared with an earlier layer"));
            continue;
        }
        layers.push(Layer {
            node: i,
            name,
            op_type: n.op_type.clone(),
            weight,
            perm,
        });
    }
    Ok((layers, skipped))
}

pub(crate) fn weight_mut<'g>(g: &'g mut Graph, name: &str) -> Option<&'g mut ArrayD<f32>> {
    g.initializers
        .iter_mut()
        .find(|(n, _)| n == name)
        .and_then(|(_, t)| match t {
            Tensor::F32(a) => Some(a),
            _ => None,
        })
}

/// The canonical `[out, in, ...]` copy of a layer's weight.
fn canonical(g: &Graph, l: &Layer) -> (Vec<f32>, Vec<usize>) {
    match g.initializer(&l.weight) {
        Some(Tensor::F32(a)) => {
            let v = a.view().permuted_axes(IxDyn(&l.perm));
            (v.iter().copied().collect(), v.shape().to_vec())
        }
        _ => (Vec::new(), Vec::new()),
    }
}

/// Zeroes the weights of `l` where the canonical `keep` mask is false.
fn apply_mask(g: &mut Graph, l: &Layer, keep: &[bool]) {
    if let Some(a) = weight_mut(g, &l.weight) {
        let mut v = a.view_mut().permuted_axes(IxDyn(&l.perm));
        for (w, &k) in v.iter_mut().zip(keep) {
            if !k {
                *w = 0.0;
            }
        }
    }
}

/// Prunes `model`'s weights in place as `config` says and returns the report.
///
/// Layer-wise, each layer's canonical weight gets `config.pattern` at
/// `config.sparsity`; with [`Scope::Global`], PyTorch's `global_unstructured` over all
/// layers. Masks are computed on the original weights, then applied; then, for the
/// channel pattern, channels are removed (see the [module docs](self)).
///
/// # Errors
/// [`Error::InvalidSparsity`] outside `[0, 1)`; [`Error::UnknownExclusion`] for an
/// exclusion naming nothing; [`Error::NothingPrunable`] when no layer is left;
/// [`Error::InvalidArgument`] for a global scope with another pattern than
/// [`Pattern::Magnitude`]; [`Error::InLayer`] wrapping the pattern's error when it does
/// not fit a layer (or a NaN weight). With [`PruneConfig::structured`]:
/// [`Error::NaN`] for a NaN weight in a group that would be pruned,
/// [`Error::InvalidArgument`] when the graph cannot be ordered (a cycle, a dangling
/// input). The model is unchanged on error.
pub fn prune_model(model: &mut Model, config: &PruneConfig) -> Result<PruneReport> {
    check_sparsity(config.sparsity, "prune_model")?;
    let original = config.recalibrate.as_ref().map(|_| model.clone());
    // The indices kept along each cut axis of each initializer, for the recalibration.
    let mut kept = HashMap::new();
    let mut report = match &config.structured {
        Some(s) => structured::prune(model, config, s, &mut kept)?,
        None => prune_layers(model, config, &mut kept)?,
    };
    if let (Some(rc), Some(original)) = (&config.recalibrate, original) {
        match recalibrate::run(&original, model, &kept, &config.exclude, rc) {
            Ok(r) => {
                report.recalibrated = r;
                report.set_after(report::WeightTotals::of(&model.graph));
            }
            Err(e) => {
                *model = original;
                return Err(e);
            }
        }
    }
    Ok(report)
}

/// [`prune_model`] without `structured` or `recalibrate`.
fn prune_layers(
    model: &mut Model,
    config: &PruneConfig,
    kept: &mut HashMap<(String, usize), Vec<bool>>,
) -> Result<PruneReport> {
    if config.scope == Scope::Global && config.pattern != Pattern::Magnitude {
        return Err(Error::InvalidArgument(format!(
            "global scope needs the unstructured magnitude pattern, got {:?}",
            config.pattern
        )));
    }
    let g = &mut model.graph;
    let before = report::WeightTotals::of(g);
    let (mut layers, mut skipped) = find_layers(g, &config.exclude)?;
    layers.retain(|l| {
        let n = g.initializer(&l.weight).map_or(0, Tensor::len);
        if n < config.min_size {
            skipped.push(SkippedLayer {
                node: l.name.clone(),
                op_type: l.op_type.clone(),
                reason: format!("{n} weights, fewer than the minimum {}", config.min_size),
            });
        }
        n >= config.min_size
    });
    let channel_axis0 = matches!(config.pattern, Pattern::Channels { axis: 0, .. });
    if channel_axis0 {
        let last: Vec<bool> = layers
            .iter()
            .map(|l| channels::is_last(g, &layers, l))
            .collect();
        let mut it = last.iter();
        layers.retain(|l| {
            let is_last = it.next().copied().unwrap_or(false);
            if is_last {
                skipped.push(SkippedLayer {
                    node: l.name.clone(),
                    op_type: l.op_type.clone(),
                    reason: "final layer: its output channels are the model's outputs".into(),
                });
            }
            !is_last
        });
    }
    if layers.is_empty() {
        return Err(Error::NothingPrunable(
            skipped
                .iter()
                .map(|s| format!("{} ({})", s.node, s.reason))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    let views: Vec<(Vec<f32>, Vec<usize>)> = layers.iter().map(|l| canonical(g, l)).collect();
    let mut masks: Vec<Vec<bool>> = views.iter().map(|(w, _)| vec![true; w.len()]).collect();
    let in_layer = |l: &Layer| {
        let layer = l.name.clone();
        move |e: Error| Error::InLayer {
            layer,
            error: Box::new(e),
        }
    };
    match config.scope {
        Scope::Global => {
            let ws: Vec<&[f32]> = views.iter().map(|(w, _)| w.as_slice()).collect();
            let mut ms: Vec<&mut [bool]> = masks.iter_mut().map(|m| m.as_mut_slice()).collect();
            global_magnitude_into(&ws, Amount::Fraction(config.sparsity), &mut ms)?;
        }
        Scope::Layer => {
            for ((l, (w, shape)), m) in layers.iter().zip(&views).zip(&mut masks) {
                config
                    .pattern
                    .keep_mask(w, shape, config.sparsity, m)
                    .map_err(in_layer(l))?;
            }
        }
    }
    let shapes_before: Vec<Vec<usize>> = layers
        .iter()
        .map(|l| {
            g.initializer(&l.weight)
                .map(|t| t.shape().to_vec())
                .unwrap_or_default()
        })
        .collect();
    for (l, m) in layers.iter().zip(&masks) {
        apply_mask(g, l, m);
    }
    let mut notes: Vec<Option<String>> = vec![None; layers.len()];
    let mut removed = vec![0usize; layers.len()];
    if channel_axis0 && config.remove_channels {
        for (i, (l, m)) in layers.iter().zip(&masks).enumerate() {
            let out = views[i].1[0];
            let per = m.len() / out.max(1);
            let keep: Vec<bool> = (0..out)
                .map(|c| m[c * per..(c + 1) * per].iter().any(|&k| k))
                .collect();
            match channels::remove_output_channels(g, l, &keep) {
                Ok((n, note)) => {
                    removed[i] = n;
                    notes[i] = note;
                    if n > 0 {
                        kept.insert((l.weight.clone(), l.perm[0]), keep);
                    }
                }
                Err(why) => notes[i] = Some(format!("channels zeroed, not removed: {why}")),
            }
        }
    }
    let mut out = Vec::with_capacity(layers.len());
    for (i, l) in layers.iter().enumerate() {
        let t = g.initializer(&l.weight);
        let mut r = LayerReport::new(l, &shapes_before[i], t, removed[i], notes[i].take());
        if config.sparse_storage && r.use_sparse() {
            g.extras.sparse_initializers.push(l.weight.clone());
            r.set_sparse();
        }
        out.push(r);
    }
    let after = report::WeightTotals::of(g);
    Ok(PruneReport::new(out, skipped, before, after))
}

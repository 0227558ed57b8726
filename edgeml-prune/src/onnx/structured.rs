//! Structured pruning of coupled channel groups: importance, selection, surgery.

use super::depgraph::{self, DepGraph, Member, MemberKind, Target};
use super::report::{self, LayerReport, PruneReport, SkippedLayer};
use super::{Layer, PruneConfig, find_layers, weight_mut};
use crate::controller::Scope;
use crate::error::{Error, Result};
use crate::pattern::Norm;
use crate::select::{Amount, prune_smallest_scores};
use edgeml_onnx::{Attribute, Graph, Model, Tensor};
use ndarray::Axis;
use serde::Serialize;
use std::collections::HashMap;

/// Options of structured (coupled channel group) pruning, [`PruneConfig::structured`].
/// `Default`: L2 norm, per-group ratio, at least 1 channel kept, no rounding — as
/// Torch-Pruning's `MagnitudePruner` with `GroupMagnitudeImportance(p=2)`, except for
/// the reduction (see the [module docs](crate::onnx#structured-pruning-of-coupled-channel-groups)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructuredConfig {
    /// The norm of the group importance: `L1` sums `|w|`, `L2` sums `w²` (then a
    /// square root) over every weight of the group that holds the channel.
    pub norm: Norm,
    /// [`Scope::Layer`]: each group loses `round(sparsity · C)` channels;
    /// [`Scope::Global`]: the lowest mean-normalised scores over all groups, as many as
    /// `round(sparsity · Σ C)`.
    pub scope: Scope,
    /// Channels every group keeps at least (values below 1 count as 1).
    pub min_channels: usize,
    /// The kept channel count of a pruned group is rounded up to a multiple of this
    /// (e.g. 8 for SIMD kernels; 0 or 1: no rounding). It counts the group's channels:
    /// where a group channel stands for several of a layer's channels (the slices of a
    /// grouped conv, the blocks of a channel shuffle), the layer keeps that many times
    /// the rounded count.
    pub round_to: usize,
}

impl Default for StructuredConfig {
    fn default() -> Self {
        StructuredConfig {
            norm: Norm::L2,
            scope: Scope::Layer,
            min_channels: 1,
            round_to: 1,
        }
    }
}

/// One coupled channel group in [`PruneReport::groups`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupReport {
    /// Channels of the group before pruning.
    pub channels: usize,
    /// The removed channel indices (ascending), the same on every member.
    pub removed: Vec<usize>,
    /// Every slice that holds the group's channels.
    pub members: Vec<Member>,
    /// Why the group was left alone (`None`: it was pruned, possibly by 0 channels).
    pub blocked: Option<String>,
}

/// Per-channel importance of a group: `Σ |w|^p` over the weight members (`Output`,
/// `Input`, `Depthwise`), then `^(1/p)`.
fn scores(g: &Graph, channels: usize, members: &[Member], norm: Norm) -> Result<Vec<f64>> {
    let mut s = vec![0.0f64; channels];
    for m in members.iter().filter(|m| m.kind != MemberKind::Param) {
        let Some(Tensor::F32(a)) = g.initializer(&m.tensor) else {
            continue;
        };
        if let Some(index) = a.iter().position(|w| w.is_nan()) {
            return Err(Error::NaN {
                what: m.tensor.clone(),
                index,
            });
        }
        // Only the member's slice: a group can have thousands of members on the
        // same tensors (ShuffleNet's streams).
        let block = m.block.max(1);
        let dim = a.shape().get(m.axis).copied().unwrap_or(0);
        for (c, sc) in s.iter_mut().enumerate() {
            for j in 0..block {
                let k = (m.offset + c) * block + j;
                if k < dim {
                    *sc += a
                        .index_axis(Axis(m.axis), k)
                        .iter()
                        .map(|&w| {
                            let w = f64::from(w).abs();
                            if norm == Norm::L1 { w } else { w * w }
                        })
                        .sum::<f64>();
                }
            }
        }
    }
    if norm == Norm::L2 {
        s.iter_mut().for_each(|x| *x = x.sqrt());
    }
    Ok(s)
}

/// The kept channel count after the floor and the rounding, for `prune` asked of `c`.
fn kept(c: usize, prune: usize, cfg: &StructuredConfig) -> usize {
    let floor = cfg.min_channels.max(1);
    if c <= floor {
        return c;
    }
    let keep = c.saturating_sub(prune).max(floor);
    let r = cfg.round_to.max(1);
    keep.div_ceil(r).saturating_mul(r).min(c)
}

/// Chooses the channels to remove in each prunable group (`None` entries: blocked).
fn select(
    g: &Graph,
    dg: &DepGraph,
    open: &[bool],
    sparsity: f64,
    cfg: &StructuredConfig,
) -> Result<Vec<Vec<usize>>> {
    let mut all = Vec::new();
    for (grp, &o) in dg.groups.iter().zip(open) {
        all.push(if o {
            scores(g, grp.channels, &grp.members, cfg.norm)?
        } else {
            Vec::new()
        });
    }
    let mut removed = vec![Vec::new(); dg.groups.len()];
    match cfg.scope {
        Scope::Layer => {
            for (i, s) in all.iter().enumerate().filter(|(i, _)| open[*i]) {
                let c = s.len();
                let k = Amount::Fraction(sparsity).to_count(c, "structured pruning")?;
                let keep = prune_smallest_scores(s, c - kept(c, k, cfg));
                removed[i] = (0..c).filter(|&j| !keep[j]).collect();
            }
        }
        Scope::Global => {
            let mut pool: Vec<(f64, usize, usize)> = Vec::new();
            for (i, s) in all.iter().enumerate().filter(|(i, _)| open[*i]) {
                let mean = s.iter().sum::<f64>() / s.len().max(1) as f64;
                let norm = if mean > 0.0 { mean } else { 1.0 };
                pool.extend(s.iter().enumerate().map(|(j, &x)| (x / norm, i, j)));
            }
            let total = Amount::Fraction(sparsity).to_count(pool.len(), "structured pruning")?;
            pool.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
            let floor = cfg.min_channels.max(1);
            let mut count = vec![0usize; dg.groups.len()];
            let mut order: Vec<Vec<usize>> = vec![Vec::new(); dg.groups.len()];
            let mut taken = 0;
            for &(_, i, j) in &pool {
                if taken == total {
                    break;
                }
                if dg.groups[i].channels - count[i] > floor {
                    count[i] += 1;
                    order[i].push(j);
                    taken += 1;
                }
            }
            for (i, o) in order.iter_mut().enumerate() {
                let c = dg.groups[i].channels;
                let n = c - kept(c, o.len(), cfg);
                // o is in ascending score order: the rounding keeps the highest.
                o.truncate(n);
                o.sort_unstable();
                removed[i] = std::mem::take(o);
            }
        }
    }
    Ok(removed)
}

/// Removes the `removed` channels of every group from its members, fixes depthwise
/// `group` attributes and the constants that count channels (shuffle shapes, split
/// sizes), drops stale `value_info`.
/// Returns the kept indices of every cut `(initializer, axis)`.
fn apply(
    g: &mut Graph,
    dg: &DepGraph,
    removed: &[Vec<usize>],
) -> HashMap<(String, usize), Vec<bool>> {
    let mut cuts: HashMap<(String, usize), Vec<bool>> = HashMap::new();
    let mut stale = Vec::new();
    for (grp, r) in dg.groups.iter().zip(removed).filter(|(_, r)| !r.is_empty()) {
        stale.extend(grp.values.iter().cloned());
        for m in &grp.members {
            let Some(t) = g.initializer(&m.tensor) else {
                continue;
            };
            let dim = t.shape()[m.axis];
            let keep = cuts
                .entry((m.tensor.clone(), m.axis))
                .or_insert_with(|| vec![true; dim]);
            for &c in r {
                for j in 0..m.block {
                    if let Some(k) = keep.get_mut((m.offset + c) * m.block + j) {
                        *k = false;
                    }
                }
            }
        }
    }
    let mut sorted: Vec<_> = cuts.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    for ((name, axis), keep) in sorted {
        let idx: Vec<usize> = (0..keep.len()).filter(|&i| keep[i]).collect();
        if let Some(a) = weight_mut(g, name) {
            *a = a.select(Axis(*axis), &idx);
        }
    }
    for &i in &dg.depthwise {
        let c = g.nodes[i]
            .inputs
            .get(1)
            .and_then(|w| g.initializer(w))
            .map(|t| t.shape()[0]);
        if let (Some(c), Some((_, a))) = (
            c,
            g.nodes[i].attributes.iter_mut().find(|(k, _)| k == "group"),
        ) {
            *a = Attribute::Int(c as i64);
        }
    }
    for rw in &dg.rewrites {
        let (mut old, mut new) = (0i128, 0i128);
        for &(grp, block) in &rw.segs {
            let c = dg.groups[grp].channels;
            old += (c * block) as i128;
            new += ((c - removed[grp].len()) * block) as i128;
        }
        if old == new || old == 0 {
            continue;
        }
        let v = i64::try_from(i128::from(rw.value) * new / old).unwrap_or(rw.value);
        let slot = match &rw.target {
            Target::Initializer(name) => g
                .initializers
                .iter_mut()
                .find(|(n, _)| n == name)
                .and_then(|(_, t)| match t {
                    Tensor::I64(a) => a.iter_mut().nth(rw.index),
                    _ => None,
                }),
            Target::Attribute(node, attr) => g
                .nodes
                .get_mut(*node)
                .and_then(|n| n.attributes.iter_mut().find(|(k, _)| k == attr))
                .and_then(|(_, a)| match a {
                    Attribute::Ints(xs) => xs.get_mut(rw.index),
                    _ => None,
                }),
        };
        if let Some(x) = slot {
            *x = v;
        }
    }
    g.value_info.retain(|vi| !stale.contains(&vi.name));
    cuts
}

/// [`prune_model`](super::prune_model) with [`PruneConfig::structured`].
pub(super) fn prune(
    model: &mut Model,
    config: &PruneConfig,
    cfg: &StructuredConfig,
    kept: &mut HashMap<(String, usize), Vec<bool>>,
) -> Result<PruneReport> {
    let g = &mut model.graph;
    let before = report::WeightTotals::of(g);
    let (layers, skipped) = find_layers(g, &config.exclude)?;
    if layers.is_empty() {
        return Err(Error::NothingPrunable(
            skipped
                .iter()
                .map(|s| format!("{} ({})", s.node, s.reason))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    let dg = depgraph::build(g).map_err(Error::InvalidArgument)?;
    let excluded: Vec<&SkippedLayer> = skipped.iter().filter(|s| s.reason == "excluded").collect();
    let excluded_weights: Vec<String> = excluded
        .iter()
        .filter_map(|s| {
            g.nodes
                .iter()
                .find(|n| super::display_name(n) == s.node)
                .and_then(|n| n.inputs.get(1).cloned())
        })
        .collect();
    let mut blocked: Vec<Option<String>> = dg
        .groups
        .iter()
        .map(|grp| {
            let mut why = grp.blocked.clone();
            if let Some(m) = grp
                .members
                .iter()
                .find(|m| m.kind != MemberKind::Param && excluded_weights.contains(&m.tensor))
            {
                why.push(format!("`{}` belongs to an excluded layer", m.tensor));
            }
            (!why.is_empty()).then(|| why.join("; "))
        })
        .collect();
    let open: Vec<bool> = blocked.iter().map(Option::is_none).collect();
    let removed = select(g, &dg, &open, config.sparsity, cfg)?;
    let shapes_before: Vec<Vec<usize>> = layers.iter().map(|l| shape(g, l)).collect();
    *kept = apply(g, &dg, &removed);
    let layers_out = layers
        .iter()
        .zip(&shapes_before)
        .map(|(l, sb)| {
            let t = g.initializer(&l.weight);
            let out_axis = l.perm[0];
            let after = t.map_or(0, |t| t.shape()[out_axis]);
            LayerReport::new(l, sb, t, sb[out_axis] - after, None)
        })
        .collect();
    let groups = dg
        .groups
        .into_iter()
        .zip(removed)
        .zip(blocked.iter_mut())
        .map(|((grp, removed), b)| GroupReport {
            channels: grp.channels,
            removed,
            members: grp.members,
            blocked: b.take(),
        })
        .collect();
    let after = report::WeightTotals::of(g);
    let mut r = PruneReport::new(layers_out, skipped, before, after);
    r.groups = groups;
    Ok(r)
}

fn shape(g: &Graph, l: &Layer) -> Vec<usize> {
    g.initializer(&l.weight)
        .map(|t| t.shape().to_vec())
        .unwrap_or_default()
}

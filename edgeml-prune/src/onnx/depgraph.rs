//! Channel dependency groups (Torch-Pruning's `DependencyGraph`, on ONNX graphs).
//!
//! Every tensor value whose channels are tracked gets a *layout*: its channel axis
//! split into segments, each a run of channels of one *group*, every channel taking
//! `block` consecutive positions (1; `g` after a channel shuffle; `H·W` after a
//! flatten). A group is a set of channels that must lose the same indices everywhere;
//! its *members* are the `(initializer, axis, offset, block)` slices that hold those
//! channels. A group may appear in several segments of one layout (the `G` output
//! slices of a grouped conv): each segment is one more member slice.
//!
//! Groups are created by `Conv`, `Gemm` and 2-D `MatMul` outputs, merged by
//! element-wise ops, carried by channel-wise ops and depthwise convs, concatenated by
//! `Concat`, cut by `Split` and by the slices of grouped convs and channel shuffles, and
//! expanded into feature blocks by `Flatten` (or a `Reshape` to `[N, C·S]`). A cut that
//! falls inside a group splits it in two groups with the same members at shifted
//! offsets (`cut.rs`); pieces that must stay equal are then coupled index by index.
//! Anything not understood blocks the groups it touches, with a reason.

mod conv;
mod cut;
mod reshape;

use super::channels::CHANNELWISE;
use super::int_attr;
use edgeml_onnx::{Graph, GraphIndex, Node, Tensor};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};

/// What a member slice of a group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberKind {
    /// Output channels of a layer's weight (`Conv`, `Gemm`, `MatMul`).
    Output,
    /// Input channels of a consumer's weight.
    Input,
    /// The per-channel weight of a depthwise `Conv` (its input and output channels).
    Depthwise,
    /// A per-channel parameter: bias, `BatchNormalization` parameter, per-channel
    /// operand of `Add`/`Mul`/`Sub`/`Div`, `PRelu` slope.
    Param,
}

/// One slice of an initializer that holds a group's channels: channel `c` of the group
/// is the block of indices `(offset + c)·block .. (offset + c + 1)·block` along `axis`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// The initializer's name.
    pub tensor: String,
    /// The axis of the initializer that is sliced.
    pub axis: usize,
    /// Where the group's channels start in the tensor's channel layout (non-zero after
    /// a `Concat`).
    pub offset: usize,
    /// Indices per channel along `axis`: `H·W` after a `Flatten`, else 1.
    pub block: usize,
    /// What the slice is.
    pub kind: MemberKind,
}

/// A coupled group of channels, as found by [`build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub(crate) channels: usize,
    pub(crate) members: Vec<Member>,
    /// Why the group may not be pruned (empty: prunable).
    pub(crate) blocked: Vec<String>,
    /// The values whose channel axis holds this group (their `value_info` goes stale).
    pub(crate) values: Vec<String>,
}

/// The groups of a graph, the depthwise convs whose `group` follows their weight, and
/// the constants that hold channel counts.
#[derive(Debug, Clone, Default)]
pub(crate) struct DepGraph {
    pub(crate) groups: Vec<Group>,
    pub(crate) depthwise: Vec<usize>,
    pub(crate) rewrites: Vec<Rewrite>,
}

/// Where a channel count is written: entry `index` of an `int64` initializer (a
/// `Reshape` shape, `Split` sizes) or of a node's `INTS` attribute (`split`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Initializer(String),
    Attribute(usize, &'static str),
}

/// A constant that counts the positions of a tracked layout (or a fixed multiple or
/// fraction of them): after pruning it becomes `value · kept / positions`, where
/// `positions = Σ channels · block` over `segs` and `kept` the same sum over the kept
/// channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rewrite {
    pub(crate) target: Target,
    pub(crate) index: usize,
    pub(crate) value: i64,
    /// `(group, block)` per segment (indices into [`DepGraph::groups`]).
    pub(crate) segs: Vec<(usize, usize)>,
}

#[derive(Debug, Clone, Copy)]
struct Seg {
    group: usize,
    len: usize,
}

/// The channel axis of one value: segments, the axis' place, and the block size.
#[derive(Debug, Clone)]
struct Layout {
    segs: Vec<Seg>,
    /// The tensor's rank, when known.
    rank: Option<usize>,
    /// The channel axis counted from the end (0: last).
    from_end: usize,
    /// Indices per channel along the axis (after `Flatten`: `H·W`, 0 while unknown).
    block: usize,
}

impl Layout {
    fn total(&self) -> usize {
        self.segs.iter().map(|s| s.len).sum()
    }
    /// The width of the channel axis: channels times block.
    fn positions(&self) -> usize {
        self.total() * self.block
    }
    /// Whether the channel axis is axis 1 (NCHW), as `BatchNormalization` and
    /// `Flatten(axis = 1)` need.
    fn axis1(&self) -> bool {
        self.rank
            .is_some_and(|r| r.checked_sub(1 + self.from_end) == Some(1))
    }
}

struct Builder<'g> {
    g: &'g Graph,
    ix: GraphIndex,
    parent: Vec<usize>,
    len: Vec<usize>,
    members: Vec<Vec<Member>>,
    blocked: Vec<Vec<String>>,
    values: Vec<Vec<String>>,
    layouts: HashMap<String, Layout>,
    depthwise: Vec<usize>,
    /// For a group split in two (see `cut`): its parts.
    split: Vec<Option<[usize; 2]>>,
    /// Nodes already handled with an earlier one (the rest of a channel shuffle).
    handled: HashSet<usize>,
    rewrites: Vec<(Target, usize, i64, Layout)>,
}

fn f32_init<'a>(g: &'a Graph, name: &str) -> Option<&'a ndarray::ArrayD<f32>> {
    match g.initializer(name) {
        Some(Tensor::F32(a)) => Some(a),
        _ => None,
    }
}

fn node_name(n: &Node) -> String {
    super::display_name(n)
}

impl Builder<'_> {
    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn new_group(&mut self, len: usize) -> usize {
        let id = self.parent.len();
        self.parent.push(id);
        self.len.push(len);
        self.members.push(Vec::new());
        self.blocked.push(Vec::new());
        self.values.push(Vec::new());
        self.split.push(None);
        id
    }

    /// Couples two groups channel by channel. Groups of different widths cannot be:
    /// both are blocked instead (every segment of a group then keeps its width).
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        debug_assert!(self.split[a].is_none() && self.split[b].is_none());
        if a == b {
            return;
        }
        if self.len[a] != self.len[b] {
            let why = format!("coupled widths differ ({} vs {})", self.len[a], self.len[b]);
            self.block_group(a, &why);
            self.block_group(b, &why);
            return;
        }
        self.parent[b] = a;
        let m = std::mem::take(&mut self.members[b]);
        self.members[a].extend(m);
        let r = std::mem::take(&mut self.blocked[b]);
        self.blocked[a].extend(r);
        let v = std::mem::take(&mut self.values[b]);
        self.values[a].extend(v);
    }

    fn block_group(&mut self, group: usize, why: &str) {
        let r = self.find(group);
        if !self.blocked[r].iter().any(|w| w == why) {
            self.blocked[r].push(why.to_owned());
        }
    }

    fn block(&mut self, l: &Layout, why: &str) {
        let l = self.norm(l);
        for s in &l.segs {
            self.block_group(s.group, why);
        }
    }

    /// Adds a member on `tensor` for every segment of `l` (channel offsets follow the
    /// segments); blocks unless the tensor is a private f32 initializer with one
    /// `block` per channel on `axis`.
    fn add_members(
        &mut self,
        l: &Layout,
        tensor: &str,
        axis: usize,
        block: usize,
        kind: MemberKind,
    ) {
        let l = &self.norm(l);
        let private = self.ix.uses(tensor) == 1 && !self.g.inputs.iter().any(|i| i.name == tensor);
        let mut offset = 0;
        for s in l.segs.clone() {
            let r = self.find(s.group);
            self.members[r].push(Member {
                tensor: tensor.to_owned(),
                axis,
                offset,
                block,
                kind,
            });
            offset += s.len;
        }
        if !private {
            self.block(l, &format!("`{tensor}` is shared or a graph input"));
        }
        match f32_init(self.g, tensor).map(|a| a.shape().get(axis).copied()) {
            None => self.block(l, &format!("`{tensor}` is not an f32 initializer")),
            Some(d) if d != Some(offset * block) => self.block(
                l,
                &format!("`{tensor}` has {d:?} entries on axis {axis}, not {offset}·{block}"),
            ),
            Some(_) => {}
        }
    }

    fn set(&mut self, value: &str, l: Layout) {
        let l = self.norm(&l);
        for s in &l.segs {
            let r = self.find(s.group);
            self.values[r].push(value.to_owned());
        }
        self.layouts.insert(value.to_owned(), l);
    }

    fn fresh(&mut self, value: &str, len: usize, rank: Option<usize>, from_end: usize) -> Layout {
        let group = self.new_group(len);
        let l = Layout {
            segs: vec![Seg { group, len }],
            rank,
            from_end,
            block: 1,
        };
        self.set(value, l.clone());
        l
    }

    /// A per-channel initializer operand (`[C]` aligned on the channel axis, other dims
    /// 1): a `Param` member; a broadcast scalar: nothing; anything else blocks.
    fn operand(&mut self, l: &Layout, name: &str, op: &str) {
        let Some(t) = self.g.initializer(name) else {
            self.block(
                l,
                &format!("{op} joins the channels with untracked `{name}`"),
            );
            return;
        };
        let s = t.shape();
        if s.iter().product::<usize>() == 1 {
            return;
        }
        let c = l.positions();
        let ok = l.block >= 1
            && s.len() > l.from_end
            && s[s.len() - 1 - l.from_end] == c
            && s.iter()
                .enumerate()
                .all(|(i, &d)| i == s.len() - 1 - l.from_end || d == 1);
        if ok {
            let block = l.block;
            self.add_members(l, name, s.len() - 1 - l.from_end, block, MemberKind::Param);
        } else {
            self.block(
                l,
                &format!("{op} operand `{name}` (shape {s:?}) is not per-channel"),
            );
        }
    }

    fn input_channels(&mut self, l: &Layout, w: &str, axis: usize, width: usize, what: &str) {
        let mut l = l.clone();
        let total = l.total();
        if l.block == 0 && total > 0 && width.is_multiple_of(total) {
            l.block = width / total;
        }
        if l.block == 0 || total * l.block != width {
            self.block(
                &l,
                &format!("{what} reads {width} features from {total} channels"),
            );
            return;
        }
        let block = l.block;
        self.add_members(&l, w, axis, block, MemberKind::Input);
    }

    fn node(&mut self, i: usize) {
        let g = self.g;
        let n = &g.nodes[i];
        let op = n.op_type.as_str();
        let name = node_name(n);
        if self.handled.contains(&i) {
            return;
        }
        let inl: Vec<Option<Layout>> = n
            .inputs
            .iter()
            .map(|v| self.layouts.get(v).cloned().map(|l| self.norm(&l)))
            .collect();
        let out = n.outputs.first().cloned().unwrap_or_default();
        let extra_used = n
            .outputs
            .iter()
            .skip(1)
            .any(|o| !o.is_empty() && self.ix.uses(o) > 0);
        let block_all = |b: &mut Self, why: String| {
            for l in inl.iter().flatten() {
                b.block(l, &why);
            }
        };
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            return block_all(self, format!("{} `{name}` ({})", op, n.domain));
        }
        let nary = matches!(
            op,
            "Add" | "Sub" | "Mul" | "Div" | "Sum" | "Mean" | "Max" | "Min" | "Concat"
        );
        if !nary && inl.iter().skip(1).any(Option::is_some) {
            // Tracked channels used as a weight, a bias, a shape, ...: not followed.
            return block_all(self, format!("{op} `{name}` reads channels as a parameter"));
        }
        let first = inl.first().cloned().flatten();
        match op {
            "Conv" => self.conv(i, first),
            "Gemm" | "MatMul" => self.linear(n, &name, first),
            "BatchNormalization" if !extra_used => {
                let Some(l) = first else { return };
                if !l.axis1() || l.block == 0 {
                    return self.block(&l, &format!("BatchNormalization `{name}` on another axis"));
                }
                for p in n.inputs.iter().skip(1) {
                    self.add_members(&l, p, 0, l.block, MemberKind::Param);
                }
                self.set(&out, l);
            }
            "Add" | "Sub" | "Mul" | "Div" | "Sum" | "Mean" | "Max" | "Min"
                if n.inputs.len() == 2 || matches!(op, "Sum" | "Mean" | "Max" | "Min") =>
            {
                let Some(a) = inl.iter().flatten().next().cloned() else {
                    return;
                };
                for (v, l) in n.inputs.iter().zip(&inl) {
                    match l {
                        // Layouts of equal width whose segments differ are cut at each
                        // other's boundaries first.
                        Some(b) if a.from_end == b.from_end => {
                            if !self.couple(&mut [a.clone(), b.clone()]) {
                                let why = format!("{op} `{name}` joins unlike channel layouts");
                                self.block(&a, &why);
                                self.block(b, &why);
                            }
                        }
                        Some(b) => {
                            let why = format!("{op} `{name}` joins unlike channel layouts");
                            self.block(&a, &why);
                            self.block(b, &why);
                        }
                        None => self.operand(&a, v, op),
                    }
                }
                self.set(&out, a);
            }
            "Concat" => {
                let axis = int_attr(n, "axis", 1);
                let all: Option<Vec<Layout>> = inl.iter().cloned().collect();
                let fits = all.as_ref().and_then(|ls| {
                    let l0 = ls.first()?;
                    let on_channels = ls.iter().all(|l| {
                        l.from_end == l0.from_end && l.block == 1 && Self::on_channel_axis(l, axis)
                    });
                    on_channels.then(|| Layout {
                        segs: ls.iter().flat_map(|l| l.segs.clone()).collect(),
                        rank: l0.rank,
                        from_end: l0.from_end,
                        block: 1,
                    })
                });
                match fits {
                    Some(l) => self.set(&out, l),
                    None => block_all(
                        self,
                        format!("Concat `{name}`: not on the channel axis or an untracked input"),
                    ),
                }
            }
            "Flatten" => {
                let Some(l) = first else { return };
                if int_attr(n, "axis", 1) != 1 || !l.axis1() || l.block != 1 {
                    return self.block(&l, &format!("Flatten `{name}` not at axis 1"));
                }
                let block = if l.rank == Some(2) { 1 } else { 0 };
                let fl = Layout {
                    segs: l.segs.clone(),
                    rank: Some(2),
                    from_end: 0,
                    block,
                };
                self.set(&out, fl);
            }
            "Reshape" => self.reshape(i, first),
            "Split" => self.split_op(i, first),
            _ if CHANNELWISE.contains(&op) && !extra_used => {
                let Some(l) = first else { return };
                if op == "PRelu"
                    && let Some(s) = n.inputs.get(1)
                {
                    self.operand(&l, s, op);
                }
                self.set(&out, l);
            }
            _ => block_all(self, format!("{op} `{name}` is not followed")),
        }
    }

    fn linear(&mut self, n: &Node, name: &str, input: Option<Layout>) {
        let g = self.g;
        let op = n.op_type.as_str();
        let out = n.outputs.first().cloned().unwrap_or_default();
        let w = n.inputs.get(1).cloned().unwrap_or_default();
        let shape = f32_init(g, &w).map(|a| a.shape().to_vec());
        let trans_b = op == "Gemm" && int_attr(n, "transB", 0) != 0;
        let ok = shape.as_ref().is_some_and(|s| s.len() == 2)
            && (op == "MatMul" || int_attr(n, "transA", 0) == 0);
        let Some(shape) = shape.filter(|_| ok) else {
            if let Some(l) = input {
                self.block(&l, &format!("{op} `{name}` is not followed"));
            }
            return;
        };
        let (k_axis, n_axis) = if trans_b { (1, 0) } else { (0, 1) };
        let rank = match (&input, op) {
            (Some(l), _) => l.rank,
            (None, "Gemm") => Some(2),
            _ => None,
        };
        if let Some(inl) = &input {
            if inl.from_end != 0 {
                self.block(inl, &format!("{op} `{name}` contracts another axis"));
            } else {
                self.input_channels(inl, &w, k_axis, shape[k_axis], &format!("{op} `{name}`"));
            }
        }
        let l = self.fresh(&out, shape[n_axis], rank, 0);
        self.add_members(&l, &w, n_axis, 1, MemberKind::Output);
        if let Some(c) = n.inputs.get(2).filter(|c| !c.is_empty()) {
            self.operand(&l, c, op);
        }
    }
}

/// Builds the channel groups of `g` (nodes visited in topological order).
pub(crate) fn build(g: &Graph) -> Result<DepGraph, String> {
    let order = g.topo_order().map_err(|e| e.to_string())?;
    let mut b = Builder {
        g,
        ix: g.index(),
        parent: Vec::new(),
        len: Vec::new(),
        members: Vec::new(),
        blocked: Vec::new(),
        values: Vec::new(),
        layouts: HashMap::new(),
        depthwise: Vec::new(),
        split: Vec::new(),
        handled: HashSet::new(),
        rewrites: Vec::new(),
    };
    for i in order {
        b.node(i);
    }
    // A value read by a subgraph (`If`/`Loop` body) is not in its node's inputs.
    let captured: Vec<(String, Layout)> = b
        .layouts
        .iter()
        .filter(|(v, _)| {
            b.ix.consumers(v)
                .iter()
                .any(|&c| !g.nodes[c].inputs.contains(v))
        })
        .map(|(v, l)| (v.clone(), l.clone()))
        .collect();
    for (v, l) in captured {
        b.block(&l, &format!("`{v}` is read by a subgraph"));
    }
    for o in &g.outputs {
        if let Some(l) = b.layouts.get(&o.name).cloned() {
            b.block(&l, &format!("`{}` is a graph output", o.name));
        }
    }
    let mut roots = BTreeSet::new();
    for x in 0..b.parent.len() {
        let r = b.find(x);
        if b.split[r].is_none() {
            roots.insert(r);
        }
    }
    let index: HashMap<usize, usize> = roots.iter().enumerate().map(|(i, &r)| (r, i)).collect();
    let pending = std::mem::take(&mut b.rewrites);
    let mut rewrites = Vec::with_capacity(pending.len());
    for (target, at, value, l) in pending {
        let l = b.norm(&l);
        rewrites.push(Rewrite {
            target,
            index: at,
            value,
            segs: l.segs.iter().map(|s| (index[&s.group], l.block)).collect(),
        });
    }
    let groups = roots
        .into_iter()
        .map(|r| Group {
            channels: b.len[r],
            members: std::mem::take(&mut b.members[r]),
            blocked: std::mem::take(&mut b.blocked[r]),
            values: std::mem::take(&mut b.values[r]),
        })
        .collect();
    Ok(DepGraph {
        groups,
        depthwise: b.depthwise,
        rewrites,
    })
}

//! Plan-time graph rewrites ([`GraphOptLevel`]): `Identity`/`Dropout` removal,
//! BatchNormalization folding into `Conv`, Conv + Add + activation fusion, conv
//! chains written straight into the channel `Concat` that is their only consumer, and
//! a `MatMul` with constant weights followed by a constant bias `Add`.
//!
//! The rewrites happen while the main graph is planned, node by node in dependency
//! order, so they see every constant the planner knows (initializers and values folded
//! at plan time, e.g. weights made by `ConstantOfShape`). A `Conv` whose only consumer
//! could join it is *deferred*: it is not planned at its own position but carried as a
//! pending chain until its consumer is reached; the consumer then either extends the
//! chain (BatchNormalization → activation / Add) or the chain is emitted as it stands
//! and the consumer is planned normally. A chain is emitted at the position of its last
//! node, where all of its inputs (including the residual operand `Z`) are available.

use super::GraphOptLevel;
use super::build::{Builder, Scope, node_reads};
use super::fused::{Act, CONV_ARITY, ConvAdd, ConvConcat, MatMulBias};
use crate::ops::attr::describe;
use crate::{Attribute, Error, Graph, Node, Result, Tensor};
use ndarray::{ArrayD, IxDyn};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// onnxruntime's contrib domain, where `FusedConv` lives.
pub(crate) const MS_DOMAIN: &str = "com.microsoft";

/// The residual operand of a chain: the `Add`/`Sum` node and its other input.
#[derive(Debug, Clone)]
struct Residual {
    node: Node,
    z: String,
    /// Whether the convolution's value is the node's first operand.
    conv_first: bool,
}

/// A deferred `Conv` chain.
#[derive(Debug, Clone)]
struct Pending {
    /// The value the chain produces so far.
    out: String,
    /// The convolution (inputs rewritten when a BatchNormalization was folded).
    conv: Node,
    folded: bool,
    residual: Option<Residual>,
    act: Option<Act>,
}

/// Per-graph state of the rewrites.
pub(crate) struct Fuser {
    level: GraphOptLevel,
    /// How often each value is read (node inputs, subgraph captures, graph outputs).
    uses: HashMap<String, usize>,
    /// The last node reading each value (the only one when `uses` is 1).
    consumer: HashMap<String, usize>,
    outputs: HashSet<String>,
    nodes: Vec<Node>,
    pending: Vec<Pending>,
    fresh: usize,
    /// Every node reading each value (node inputs and subgraph captures).
    readers: HashMap<String, Vec<usize>>,
    /// `Mul` nodes already folded into a chain as the second half of a SiLU.
    absorbed: HashSet<usize>,
}

fn is_default_domain(n: &Node) -> bool {
    n.domain.is_empty() || n.domain == "ai.onnx"
}

fn act_name(op: &str) -> bool {
    matches!(
        op,
        "Relu" | "LeakyRelu" | "Clip" | "Sigmoid" | "Tanh" | "HardSigmoid" | "HardSwish"
    )
}

impl Fuser {
    pub(crate) fn new(graph: &Graph, level: GraphOptLevel) -> Self {
        let mut uses: HashMap<String, usize> = HashMap::new();
        let mut consumer = HashMap::new();
        let mut readers: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, n) in graph.nodes.iter().enumerate() {
            for r in node_reads(n) {
                if !r.is_empty() {
                    *uses.entry(r.clone()).or_default() += 1;
                    readers.entry(r.clone()).or_default().push(i);
                    consumer.insert(r, i);
                }
            }
        }
        let outputs: HashSet<String> = graph.outputs.iter().map(|o| o.name.clone()).collect();
        for o in &outputs {
            *uses.entry(o.clone()).or_default() += 1;
        }
        Self {
            level,
            uses,
            consumer,
            outputs,
            nodes: graph.nodes.clone(),
            pending: Vec::new(),
            fresh: 0,
            readers,
            absorbed: HashSet::new(),
        }
    }

    fn single_use(&self, v: &str) -> bool {
        self.uses.get(v) == Some(&1) && !self.outputs.contains(v)
    }

    fn pending_of(&self, v: &str) -> Option<usize> {
        self.pending.iter().position(|p| p.out == v)
    }

    /// A gated activation of `x`, if `x`'s only readers are a gate and a `Mul` of `x` by
    /// that gate (which nothing else reads): the gate's and the Mul's node indices and
    /// the activation they make. `Sigmoid` makes SiLU; `HardSigmoid` with `alpha = 1/6`
    /// and `beta = 1/2` (PyTorch's export of `hardswish` before opset 14) makes
    /// HardSwish. Both are bit-identical to the two operators: the fused kernels do the
    /// same operations in the same order.
    fn gate_of(&self, x: &str) -> Option<(usize, usize, Act)> {
        if self.uses.get(x) != Some(&2) || self.outputs.contains(x) {
            return None;
        }
        let r = self.readers.get(x)?;
        let [a, b] = r.as_slice() else {
            return None;
        };
        let gate = |n: &Node| match n.op_type.as_str() {
            "Sigmoid" => Some(Act::Silu),
            "HardSigmoid"
                if n.float_attr("alpha", 0.2) == 1.0 / 6.0 && n.float_attr("beta", 0.5) == 0.5 =>
            {
                Some(Act::HardSwish)
            }
            _ => None,
        };
        let (si, mi) = if gate(&self.nodes[*a]).is_some() {
            (*a, *b)
        } else {
            (*b, *a)
        };
        let (sig, mul) = (&self.nodes[si], &self.nodes[mi]);
        let act = gate(sig)?;
        let ok = si != mi
            && is_default_domain(sig)
            && is_default_domain(mul)
            && mul.op_type == "Mul"
            && sig.inputs.len() == 1
            && sig.inputs[0] == x
            && sig.outputs.len() == 1
            && mul.outputs.len() == 1
            && !mul.outputs[0].is_empty()
            && self.single_use(&sig.outputs[0])
            && mul.inputs.len() == 2
            && ((mul.inputs[0] == x && mul.inputs[1] == sig.outputs[0])
                || (mul.inputs[1] == x && mul.inputs[0] == sig.outputs[0]));
        ok.then_some((si, mi, act))
    }

    /// Whether the only consumer of `p.out` could extend chain `p` (a cheap structural
    /// test; constants are checked when the consumer is reached).
    fn may_extend(&self, p: &Pending) -> bool {
        if self.level == GraphOptLevel::Extended
            && p.act.is_none()
            && self.gate_of(&p.out).is_some()
        {
            return true;
        }
        if !self.single_use(&p.out) {
            return false;
        }
        let Some(&c) = self.consumer.get(&p.out) else {
            return false;
        };
        let n = &self.nodes[c];
        if !is_default_domain(n) {
            return false;
        }
        let extended = self.level == GraphOptLevel::Extended;
        match n.op_type.as_str() {
            "BatchNormalization" => !p.folded && p.residual.is_none() && p.act.is_none(),
            "Add" | "Sum" => {
                extended && n.inputs.len() == 2 && p.residual.is_none() && p.act.is_none()
            }
            "Concat" => {
                extended
                    && n.inputs.len() >= 2
                    && n.outputs.len() == 1
                    && p.residual.is_none()
                    && n.int_attr("axis", 0) == 1
            }
            op => extended && act_name(op) && p.act.is_none() && n.inputs.first() == Some(&p.out),
        }
    }

    /// Handles `graph.nodes[i]` if a rewrite applies; `Ok(false)` means "plan it
    /// normally" (any pending chain it reads has been emitted by then).
    pub(crate) fn visit(
        &mut self,
        b: &mut Builder<'_>,
        i: usize,
        scope: &mut Scope,
    ) -> Result<bool> {
        if self.absorbed.remove(&i) {
            // The `Mul` of a SiLU whose chain already produces its output.
            return Ok(true);
        }
        let node = self.nodes[i].clone();
        let reads = node_reads(&node);
        let read_pending: Vec<String> = reads
            .iter()
            .filter(|r| self.pending_of(r).is_some())
            .cloned()
            .collect();
        if !read_pending.is_empty() {
            if self.try_extend(b, &node, &read_pending, scope)? {
                return Ok(true);
            }
            for v in read_pending {
                if let Some(k) = self.pending_of(&v) {
                    let p = self.pending.remove(k);
                    self.emit(b, p, scope)?;
                }
            }
        }
        if self.try_remove(b, &node, scope) {
            return Ok(true);
        }
        if let Some(add) = self.bias_add_of(b, &node, scope) {
            self.emit_matmul_bias(b, &node, add, scope)?;
            return Ok(true);
        }
        if is_default_domain(&node) && node.op_type == "Conv" && node.outputs.len() == 1 {
            let p = Pending {
                out: node.outputs[0].clone(),
                conv: node.clone(),
                folded: false,
                residual: None,
                act: None,
            };
            let all_const = node
                .inputs
                .iter()
                .all(|n| n.is_empty() || scope.get(n).is_some_and(|&s| b.const_of(s).is_some()));
            if !all_const && self.may_extend(&p) {
                self.pending.push(p);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// For a `MatMul` with a constant 2-D `B` whose product only an `Add` reads, the
    /// other operand of that `Add` a constant `f32` bias along the last axis (`[N]`,
    /// `[1, N]`, …, every other dimension 1): the `Add`'s node index. onnxruntime's
    /// `MatMulAddFusion` makes the same pair one `Gemm` (reshaping an N-D `A` to 2-D).
    fn bias_add_of(&self, b: &Builder<'_>, node: &Node, scope: &Scope) -> Option<usize> {
        if self.level != GraphOptLevel::Extended
            || !is_default_domain(node)
            || node.op_type != "MatMul"
            || node.inputs.len() != 2
            || node.outputs.len() != 1
            || !self.single_use(&node.outputs[0])
        {
            return None;
        }
        let konst = |n: &str| scope.get(n).and_then(|&s| b.const_of(s));
        let Tensor::F32(w) = &**konst(&node.inputs[1])? else {
            return None;
        };
        let out = &node.outputs[0];
        let &ai = self.consumer.get(out)?;
        let add = &self.nodes[ai];
        if !is_default_domain(add)
            || add.op_type != "Add"
            || add.inputs.len() != 2
            || add.outputs.len() != 1
            || add.outputs[0].is_empty()
            || (add.inputs[0] == *out) == (add.inputs[1] == *out)
        {
            return None;
        }
        let other = if add.inputs[0] == *out {
            &add.inputs[1]
        } else {
            &add.inputs[0]
        };
        let Tensor::F32(bias) = &**konst(other)? else {
            return None;
        };
        let sh = bias.shape();
        let last_only = sh.split_last().is_some_and(|(&n, rest)| {
            w.ndim() == 2 && n == w.shape()[1] && n > 0 && rest.iter().all(|&d| d == 1)
        });
        last_only.then_some(ai)
    }

    /// Plans `MatMul` `node` and the bias `Add` `ai` as one [`MatMulBias`] step writing
    /// the `Add`'s output.
    fn emit_matmul_bias(
        &mut self,
        b: &mut Builder<'_>,
        node: &Node,
        ai: usize,
        scope: &mut Scope,
    ) -> Result<()> {
        let add = self.nodes[ai].clone();
        let matmul_first = add.inputs[0] == node.outputs[0];
        let bias = if matmul_first {
            &add.inputs[1]
        } else {
            &add.inputs[0]
        };
        let mut fused = node.clone();
        fused.outputs = add.outputs.clone();
        fused.inputs.push(bias.clone());
        let in_slots = b.resolve(&fused, scope)?;
        let matmul = b.build_op(node, scope)?;
        let add_slots: Vec<Option<usize>> = add
            .inputs
            .iter()
            .map(|n| {
                if n == bias {
                    scope.get(n).copied()
                } else {
                    None
                }
            })
            .collect();
        let add_op = b.build_op_on(&add, &add_slots)?;
        let op = MatMulBias {
            matmul,
            add: add_op,
            matmul_first,
        };
        let outs = b.output_slots(&fused, scope, None)?;
        b.push_step(&fused, Box::new(op), in_slots, outs);
        self.absorbed.insert(ai);
        Ok(())
    }

    /// Drops `Identity` and inference `Dropout`: its output names the input's slot.
    fn try_remove(&mut self, b: &Builder<'_>, node: &Node, scope: &mut Scope) -> bool {
        if self.level == GraphOptLevel::Disabled || !is_default_domain(node) {
            return false;
        }
        let ok = match node.op_type.as_str() {
            "Identity" => node.inputs.len() == 1 && node.outputs.len() == 1,
            // edgeml's Dropout is the identity in inference; the mask must be unused.
            "Dropout" => {
                !node.inputs.is_empty()
                    && !node.outputs.is_empty()
                    && node
                        .outputs
                        .iter()
                        .skip(1)
                        .all(|m| m.is_empty() || !self.uses.contains_key(m))
            }
            _ => false,
        };
        let (Some(src), Some(dst)) = (node.inputs.first(), node.outputs.first()) else {
            return false;
        };
        if !ok || src.is_empty() || dst.is_empty() {
            return false;
        }
        let Some(&slot) = scope.get(src) else {
            return false;
        };
        let _ = b;
        scope.insert(dst.clone(), slot);
        true
    }

    /// Extends a pending chain with `node` if it can join; emits the chain when nothing
    /// further can join it.
    fn try_extend(
        &mut self,
        b: &mut Builder<'_>,
        node: &Node,
        read_pending: &[String],
        scope: &mut Scope,
    ) -> Result<bool> {
        if !is_default_domain(node)
            || node.outputs.len() != 1 && node.op_type != "BatchNormalization"
            || node.outputs.first().is_none_or(String::is_empty)
        {
            return Ok(false);
        }
        let out = node.outputs[0].clone();
        let op = node.op_type.as_str();
        if matches!(op, "Sigmoid" | "HardSigmoid")
            && read_pending.len() == 1
            && let Some(k) = self.pending_of(&read_pending[0])
            && self.pending[k].act.is_none()
            && let Some((si, mi, act)) = self.gate_of(&read_pending[0])
            && self.nodes[si].outputs == node.outputs
        {
            // `Mul(x, gate(x))`: the chain ends in SiLU or HardSwish and produces the
            // Mul's value.
            self.pending[k].act = Some(act);
            self.pending[k].out = self.nodes[mi].outputs[0].clone();
            self.absorbed.insert(mi);
            if !self.may_extend(&self.pending[k]) {
                let p = self.pending.remove(k);
                self.emit(b, p, scope)?;
            }
            return Ok(true);
        }
        let k = match op {
            "BatchNormalization" | "Relu" | "LeakyRelu" | "Clip" | "Sigmoid" | "Tanh"
            | "HardSigmoid" | "HardSwish" => {
                if read_pending.len() != 1 || node.inputs.first() != Some(&read_pending[0]) {
                    return Ok(false);
                }
                let Some(k) = self.pending_of(&read_pending[0]) else {
                    return Ok(false);
                };
                if !self.may_extend(&self.pending[k]) {
                    return Ok(false);
                }
                if op == "BatchNormalization" {
                    let conv = self.pending[k].conv.clone();
                    let Some(conv) = self.fold_bn(b, &conv, node, scope)? else {
                        return Ok(false);
                    };
                    let p = &mut self.pending[k];
                    p.conv = conv;
                    p.folded = true;
                } else {
                    let Some(act) = const_act(b, node, scope) else {
                        return Ok(false);
                    };
                    self.pending[k].act = Some(act);
                }
                k
            }
            "Add" | "Sum" => {
                if node.inputs.len() != 2 || node.inputs[0] == node.inputs[1] {
                    return Ok(false);
                }
                // The chain is the last operand that is pending; another pending
                // operand is emitted first so that it is available as Z.
                let Some(conv_first) = [1usize, 0]
                    .into_iter()
                    .find(|&j| {
                        self.pending_of(&node.inputs[j])
                            .is_some_and(|k| self.may_extend(&self.pending[k]))
                    })
                    .map(|j| j == 0)
                else {
                    return Ok(false);
                };
                let (mine, z) = if conv_first {
                    (&node.inputs[0], &node.inputs[1])
                } else {
                    (&node.inputs[1], &node.inputs[0])
                };
                if let Some(kz) = self.pending_of(z) {
                    let p = self.pending.remove(kz);
                    self.emit(b, p, scope)?;
                }
                if !scope.contains_key(z) {
                    return Ok(false);
                }
                let Some(k) = self.pending_of(mine) else {
                    return Ok(false);
                };
                self.pending[k].residual = Some(Residual {
                    node: node.clone(),
                    z: z.clone(),
                    conv_first,
                });
                k
            }
            "Concat" => return self.try_concat(b, node, scope),
            _ => return Ok(false),
        };
        self.pending[k].out = out;
        if !self.may_extend(&self.pending[k]) {
            let p = self.pending.remove(k);
            self.emit(b, p, scope)?;
        }
        Ok(true)
    }

    /// A `Concat` on the channel axis whose every operand is a distinct pending chain
    /// (no residual) becomes one [`ConvConcat`] step; otherwise `Ok(false)` and the
    /// chains are emitted before the `Concat` is planned normally.
    fn try_concat(&mut self, b: &mut Builder<'_>, node: &Node, scope: &mut Scope) -> Result<bool> {
        let mut ks = Vec::with_capacity(node.inputs.len());
        for v in &node.inputs {
            match self.pending_of(v) {
                Some(k) if self.may_extend(&self.pending[k]) && !ks.contains(&k) => ks.push(k),
                _ => return Ok(false),
            }
        }
        let chains: Vec<Pending> = ks.iter().map(|&k| self.pending[k].clone()).collect();
        let mut parts = Vec::with_capacity(chains.len());
        let mut in_slots = Vec::with_capacity(chains.len() * CONV_ARITY);
        for p in &chains {
            let mut conv = p.conv.clone();
            conv.outputs = vec![p.out.clone()];
            let n = match p.act {
                None => conv,
                Some(act) => fused_node(&conv, Some(act), None),
            };
            let op = b.build_op(&n, scope)?;
            let ours = op
                .as_any()
                .is_some_and(|a| a.downcast_ref::<crate::ops::nn::conv::Conv>().is_some());
            let mut slots = b.resolve(&n, scope)?;
            if !ours || slots.len() > CONV_ARITY {
                // A registry with its own Conv: leave the graph as it is.
                return Ok(false);
            }
            slots.resize(CONV_ARITY, None);
            in_slots.extend(slots);
            parts.push(op);
        }
        let concat = b.build_op_on(node, &vec![None; node.inputs.len()])?;
        ks.sort_unstable_by(|a, b| b.cmp(a));
        for k in ks {
            self.pending.remove(k);
        }
        let outs = b.output_slots(node, scope, None)?;
        b.push_step(node, Box::new(ConvConcat { parts, concat }), in_slots, outs);
        Ok(true)
    }

    /// Folds BatchNormalization `bn` into `conv` with the public pass's own folding
    /// ([`crate::passes::FoldBatchNorm`]), reading the constants the planner knows
    /// (initializers and values folded at plan time); `None` when it does not apply.
    fn fold_bn(
        &mut self,
        b: &mut Builder<'_>,
        conv: &Node,
        bn: &Node,
        scope: &mut Scope,
    ) -> Result<Option<Node>> {
        if bn.outputs.iter().skip(1).any(|o| !o.is_empty()) {
            return Ok(None);
        }
        let opset = b.ctx.opsets.get("").copied().unwrap_or(0);
        let held: Vec<(&str, Arc<Tensor>)> = conv
            .inputs
            .iter()
            .skip(1)
            .chain(bn.inputs.iter().skip(1))
            .filter_map(|n| {
                let t = scope.get(n).and_then(|&s| b.const_of(s).cloned())?;
                Some((n.as_str(), t))
            })
            .collect();
        let konst = |n: &str| held.iter().find(|(k, _)| *k == n).map(|(_, t)| &**t);
        let Some((mut conv, w, bias)) =
            crate::passes::fold_into_layer(conv, bn, opset, &konst, &mut |_| false)
        else {
            return Ok(None);
        };
        let m = bias.len();
        let b_t = ArrayD::from_shape_vec(IxDyn(&[m]), bias).map_err(|e| {
            Error::InvalidModel(format!("{}: folding BatchNormalization: {e}", describe(bn)))
        })?;
        self.fresh += 1;
        let tag = format!("{}::bn_folded{}", bn.outputs[0], self.fresh);
        let (wn, bnn) = (format!("{tag}_W"), format!("{tag}_B"));
        let ws = b.new_slot(&wn, Some(Arc::new(Tensor::F32(w))));
        let bs = b.new_slot(&bnn, Some(Arc::new(Tensor::F32(b_t))));
        scope.insert(wn.clone(), ws);
        scope.insert(bnn.clone(), bs);
        conv.inputs[1] = wn;
        conv.inputs[2] = bnn;
        Ok(Some(conv))
    }

    /// Plans a chain at the current position.
    fn emit(&mut self, b: &mut Builder<'_>, p: Pending, scope: &mut Scope) -> Result<()> {
        let mut conv = p.conv;
        conv.outputs = vec![p.out.clone()];
        match (p.residual, p.act) {
            (None, None) => b.plan_node(&conv, scope),
            (None, Some(act)) => b.plan_node(&fused_node(&conv, Some(act), None), scope),
            (Some(r), act) => {
                let fused = fused_node(&conv, act, Some(&r.z));
                let in_slots = b.resolve(&fused, scope)?;
                let conv_op = b.build_op(&conv, scope)?;
                // The chain's own value has no slot; only Z's constness/type is known.
                let add_slots: Vec<Option<usize>> = r
                    .node
                    .inputs
                    .iter()
                    .map(|n| {
                        if *n == r.z {
                            scope.get(n).copied()
                        } else {
                            None
                        }
                    })
                    .collect();
                let add_op = b.build_op_on(&r.node, &add_slots)?;
                let op = ConvAdd {
                    conv: conv_op,
                    add: add_op,
                    conv_first: r.conv_first,
                    act,
                };
                let outs = b.output_slots(&fused, scope, None)?;
                b.push_step(&fused, Box::new(op), in_slots, outs);
                Ok(())
            }
        }
    }

    /// Emits every chain still pending (at the end of the graph).
    pub(crate) fn finish(mut self, b: &mut Builder<'_>, scope: &mut Scope) -> Result<()> {
        for p in std::mem::take(&mut self.pending) {
            self.emit(b, p, scope)?;
        }
        Ok(())
    }
}

/// The activation `node` applies, when its parameters are known at plan time.
fn const_act(b: &Builder<'_>, node: &Node, scope: &Scope) -> Option<Act> {
    let opset = b.ctx.opsets.get("").copied().unwrap_or(0);
    let konst = |n: &str| scope.get(n).and_then(|&s| b.const_of(s)).map(|t| &**t);
    Act::of_node(node, opset, &konst)
}

/// A `FusedConv` node from `conv` (outputs already set), with activation and `Z`.
pub(crate) fn fused_node(conv: &Node, act: Option<Act>, z: Option<&str>) -> Node {
    let mut n = conv.clone();
    n.op_type = "FusedConv".to_owned();
    n.domain = MS_DOMAIN.to_owned();
    while n.inputs.len() < 3 {
        n.inputs.push(String::new());
    }
    if let Some(z) = z {
        n.inputs.push(z.to_owned());
    }
    if let Some(act) = act {
        let (name, params) = act.attributes();
        n.attributes.push((
            "activation".to_owned(),
            Attribute::String(name.as_bytes().to_vec()),
        ));
        if !params.is_empty() {
            n.attributes
                .push(("activation_params".to_owned(), Attribute::Floats(params)));
        }
    }
    n
}

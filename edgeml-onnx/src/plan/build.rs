//! Turning a graph into a [`Program`]: ordering, folding, kernel choice.

use super::control;
use super::program::{Program, Step};
use crate::op::InputType;
use crate::ops::attr::describe;
use crate::{
    Attribute, BuildContext, Dim, Error, Graph, Node, Registry, Result, Tensor, ValueInfo,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The registry's spelling of a domain (`ai.onnx` is the default domain `""`).
fn norm(domain: &str) -> &str {
    if domain == "ai.onnx" { "" } else { domain }
}

/// What every builder of one model shares.
pub(crate) struct Ctx<'a> {
    pub(crate) registry: &'a Registry,
    pub(crate) opsets: &'a HashMap<String, i64>,
    pub(crate) fold: bool,
    pub(crate) optimization: super::GraphOptLevel,
    /// Bounds on folding (elements of a folded output, total folding time).
    pub(crate) limits: crate::RunLimits,
    /// Dense or sparse products by constant weights.
    pub(crate) sparse: super::SparseMode,
    /// Time spent folding so far in this plan.
    pub(crate) fold_spent: std::cell::Cell<std::time::Duration>,
}

/// Name → slot visible at a point of the graph.
pub(crate) type Scope = HashMap<String, usize>;

/// Accumulates a [`Program`].
pub(crate) struct Builder<'c> {
    pub(crate) ctx: &'c Ctx<'c>,
    pub(crate) prog: Program,
    /// Declared type of each slot, where the graph declares one.
    declared: HashMap<usize, InputType>,
}

impl<'c> Builder<'c> {
    pub(crate) fn new(ctx: &'c Ctx<'c>) -> Self {
        Self {
            ctx,
            prog: Program::default(),
            declared: HashMap::new(),
        }
    }

    pub(crate) fn new_slot(&mut self, name: &str, value: Option<Arc<Tensor>>) -> usize {
        self.prog.names.push(name.to_owned());
        self.prog.consts.push(value);
        self.prog.names.len() - 1
    }

    pub(crate) fn const_of(&self, slot: usize) -> Option<&Arc<Tensor>> {
        self.prog.consts[slot].as_ref()
    }

    /// Adds the graph's initializers to `scope`, then plans its nodes in dependency order.
    pub(crate) fn plan_graph(&mut self, graph: &Graph, scope: &mut Scope) -> Result<()> {
        for (name, t) in &graph.initializers {
            let s = self.new_slot(name, Some(Arc::new(t.clone())));
            scope.insert(name.clone(), s);
        }
        self.plan_nodes(graph, scope)
    }

    /// Plans the graph's nodes in dependency order (initializers must be in `scope`).
    pub(crate) fn plan_nodes(&mut self, graph: &Graph, scope: &mut Scope) -> Result<()> {
        self.plan_nodes_with(graph, scope, false)
    }

    /// [`Builder::plan_nodes`], applying the graph rewrites of `ctx.optimization` when
    /// `optimize` is set.
    fn plan_nodes_with(&mut self, graph: &Graph, scope: &mut Scope, optimize: bool) -> Result<()> {
        let mut fuser = (optimize && self.ctx.optimization != super::GraphOptLevel::Disabled)
            .then(|| super::optimize::Fuser::new(graph, self.ctx.optimization));
        let infos: HashMap<&str, &ValueInfo> = graph
            .inputs
            .iter()
            .chain(&graph.value_info)
            .chain(&graph.outputs)
            .map(|v| (v.name.as_str(), v))
            .collect();
        for i in &graph.inputs {
            if let Some(&s) = scope.get(&i.name) {
                self.declare(s, i);
            }
        }
        for i in topo_order(graph)? {
            let node = &graph.nodes[i];
            let done = match &mut fuser {
                Some(f) => f.visit(self, i, scope)?,
                None => false,
            };
            if !done {
                self.plan_node(node, scope)?;
            }
            for o in &node.outputs {
                if let (Some(&s), Some(v)) = (scope.get(o), infos.get(o.as_str())) {
                    self.declare(s, v);
                }
            }
        }
        if let Some(f) = fuser {
            f.finish(self, scope)?;
        }
        Ok(())
    }

    fn declare(&mut self, slot: usize, v: &ValueInfo) {
        if v.dtype.is_some() || v.shape.is_some() {
            self.declared.insert(
                slot,
                InputType {
                    dtype: v.dtype,
                    shape: v.shape.clone(),
                },
            );
        }
    }

    /// What is known about a slot before running: exact for constants, else declared.
    pub(super) fn type_of(&self, slot: usize) -> Option<InputType> {
        match &self.prog.consts[slot] {
            Some(t) => Some(InputType {
                dtype: Some(t.dtype()),
                shape: Some(t.shape().iter().map(|&d| Dim::Known(d)).collect()),
            }),
            None => self.declared.get(&slot).cloned(),
        }
    }

    pub(crate) fn resolve(&self, node: &Node, scope: &Scope) -> Result<Vec<Option<usize>>> {
        node.inputs
            .iter()
            .map(|n| {
                if n.is_empty() {
                    Ok(None)
                } else {
                    scope.get(n).copied().map(Some).ok_or_else(|| {
                        Error::InvalidModel(format!(
                            "{}: input {n:?} is not defined by any node, initializer or graph input",
                            describe(node)
                        ))
                    })
                }
            })
            .collect()
    }

    /// Creates slots for the node's outputs and records them in `scope`.
    pub(crate) fn output_slots(
        &mut self,
        node: &Node,
        scope: &mut Scope,
        values: Option<Vec<Tensor>>,
    ) -> Result<Vec<Option<usize>>> {
        let mut values = values.map(|v| v.into_iter().map(Some).collect::<Vec<_>>());
        let mut slots = Vec::with_capacity(node.outputs.len());
        for (k, name) in node.outputs.iter().enumerate() {
            if name.is_empty() {
                slots.push(None);
                continue;
            }
            let value = match &mut values {
                None => None,
                Some(v) => Some(Arc::new(v.get_mut(k).and_then(Option::take).ok_or_else(
                    || {
                        Error::InvalidModel(format!(
                            "{}: constant folding produced no value for output {name:?}",
                            describe(node)
                        ))
                    },
                )?)),
            };
            let s = self.new_slot(name, value);
            scope.insert(name.clone(), s);
            slots.push(Some(s));
        }
        Ok(slots)
    }

    pub(crate) fn push_step(
        &mut self,
        node: &Node,
        op: Box<dyn crate::Operator>,
        inputs: Vec<Option<usize>>,
        outputs: Vec<Option<usize>>,
    ) {
        self.prog.steps.push(Step {
            op,
            inputs,
            outputs,
            free: Vec::new(),
            desc: describe(node),
            out_bytes: 0,
        });
    }

    /// Builds `node`'s operator with the constants and types known in `scope` (no
    /// folding, no slots).
    pub(crate) fn build_op(&self, node: &Node, scope: &Scope) -> Result<Box<dyn crate::Operator>> {
        let in_slots = self.resolve(node, scope)?;
        self.build_op_on(node, &in_slots)
    }

    /// [`Builder::build_op`] with the input slots given (`None`: nothing known).
    pub(crate) fn build_op_on(
        &self,
        node: &Node,
        in_slots: &[Option<usize>],
    ) -> Result<Box<dyn crate::Operator>> {
        let domain = if node.domain == "ai.onnx" {
            ""
        } else {
            node.domain.as_str()
        };
        let opset = *self.ctx.opsets.get(domain).ok_or_else(|| {
            Error::InvalidModel(format!(
                "{}: the model imports no opset for domain {domain:?}",
                describe(node)
            ))
        })?;
        let factory = self
            .ctx
            .registry
            .lookup(domain, &node.op_type, opset)
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "{}: operator {:?} of domain {:?} at opset {opset} is not implemented",
                    describe(node),
                    node.op_type,
                    if domain.is_empty() { "ai.onnx" } else { domain }
                ))
            })?;
        let consts: Vec<Option<Arc<Tensor>>> = in_slots
            .iter()
            .map(|s| s.and_then(|s| self.prog.consts[s].clone()))
            .collect();
        let const_refs: Vec<Option<&Tensor>> = consts.iter().map(|c| c.as_deref()).collect();
        let types = in_slots
            .iter()
            .map(|s| s.and_then(|s| self.type_of(s)))
            .collect();
        factory.build(
            &BuildContext::new(node, opset, const_refs)
                .with_input_types(types)
                .with_sparse(self.ctx.sparse),
        )
    }

    pub(crate) fn plan_node(&mut self, node: &Node, scope: &mut Scope) -> Result<()> {
        let in_slots = self.resolve(node, scope)?;
        let domain = if node.domain == "ai.onnx" {
            ""
        } else {
            node.domain.as_str()
        };
        if domain.is_empty() && matches!(node.op_type.as_str(), "If" | "Loop") {
            let opset = *self.ctx.opsets.get(domain).ok_or_else(|| {
                Error::InvalidModel(format!(
                    "{}: the model imports no opset for domain {domain:?}",
                    describe(node)
                ))
            })?;
            return control::plan_control(self, node, scope, in_slots, opset);
        }
        let op = self.build_op(node, scope)?;
        let consts: Vec<Option<Arc<Tensor>>> = in_slots
            .iter()
            .map(|s| s.and_then(|s| self.prog.consts[s].clone()))
            .collect();
        let const_refs: Vec<Option<&Tensor>> = consts.iter().map(|c| c.as_deref()).collect();
        let types: Vec<Option<InputType>> = in_slots
            .iter()
            .map(|s| s.and_then(|s| self.type_of(s)))
            .collect();
        let opset = self
            .ctx
            .opsets
            .get(norm(&node.domain))
            .copied()
            .unwrap_or(0);
        let inferred = crate::shapes::infer(node, opset, &types, &const_refs);
        let limits = &self.ctx.limits;
        let foldable = self.ctx.fold
            && !crate::passes::NONDETERMINISTIC.contains(&node.op_type.as_str())
            && in_slots
                .iter()
                .zip(&consts)
                .all(|(s, c)| s.is_none() || c.is_some())
            && self.ctx.fold_spent.get() < limits.fold_time()
            && inferred
                .iter()
                .flatten()
                .all(|t| known_elems(t).is_none_or(|n| n <= limits.fold_elements()));
        if foldable {
            let what = format!("{} node {:?} (constant folding)", node.op_type, node.name);
            let t0 = std::time::Instant::now();
            let outs = crate::op::run_guarded(&*op, &const_refs, &what)?;
            let spent = self.ctx.fold_spent.get().saturating_add(t0.elapsed());
            self.ctx.fold_spent.set(spent);
            if spent >= limits.fold_time() {
                log::warn!(
                    "constant folding took {:.1} s, the plan's budget (RunLimits::max_fold_time): \
                     the nodes after {} run at run time",
                    spent.as_secs_f64(),
                    describe(node)
                );
            }
            let total: u64 = outs
                .iter()
                .map(|t| u64::try_from(t.len()).unwrap_or(u64::MAX))
                .fold(0, u64::saturating_add);
            if total <= limits.fold_elements() {
                self.output_slots(node, scope, Some(outs))?;
                return Ok(());
            }
            // Too big to keep in the plan: computed again by every run, under the run's
            // limits (the shapes were not known before folding).
        }
        let outs = self.output_slots(node, scope, None)?;
        let mut out_bytes = Some(0u64);
        for (slot, t) in outs.iter().zip(inferred) {
            if let Some(slot) = slot {
                out_bytes = match (out_bytes, t.as_ref().and_then(known_bytes)) {
                    (Some(a), Some(b)) => Some(a.saturating_add(b)),
                    _ => None,
                };
                if let Some(t) = t {
                    self.declared.entry(*slot).or_insert(t);
                }
            }
        }
        self.push_step(node, op, in_slots, outs);
        if let Some(step) = self.prog.steps.last_mut() {
            step.out_bytes = out_bytes.unwrap_or(0);
        }
        Ok(())
    }

    /// Removes steps whose outputs nobody needs, drops unused constants, computes
    /// liveness.
    pub(crate) fn finish(mut self) -> Program {
        let mut needed: HashSet<usize> = self.prog.outputs.iter().map(|(_, s)| *s).collect();
        let mut keep = vec![false; self.prog.steps.len()];
        for (i, s) in self.prog.steps.iter().enumerate().rev() {
            if s.outputs.iter().flatten().any(|o| needed.contains(o)) {
                keep[i] = true;
                needed.extend(s.inputs.iter().flatten().copied());
            }
        }
        let mut k = keep.into_iter();
        self.prog.steps.retain(|_| k.next().unwrap_or(false));
        let types: HashMap<String, InputType> = (0..self.prog.names.len())
            .filter_map(|slot| Some((self.prog.names[slot].clone(), self.type_of(slot)?)))
            .collect();
        self.prog.types = types;
        for (slot, c) in self.prog.consts.iter_mut().enumerate() {
            if !needed.contains(&slot) {
                *c = None;
            }
        }
        self.prog.compute_liveness();
        self.prog
    }
}

/// Elements of a value whose shape is fully known.
fn known_elems(t: &InputType) -> Option<u64> {
    t.shape.as_ref()?.iter().try_fold(1u64, |n, d| match d {
        Dim::Known(k) => Some(n.saturating_mul(u64::try_from(*k).unwrap_or(u64::MAX))),
        _ => None,
    })
}

/// Bytes of a value whose element type and shape are fully known.
fn known_bytes(t: &InputType) -> Option<u64> {
    let size = u64::try_from(t.dtype?.size_bytes()).ok()?;
    known_elems(t).map(|n| n.saturating_mul(size))
}

/// Plans the main graph; `inputs` are its runtime inputs, `inits` its initializers
/// (`graph.initializers` is ignored).
pub(crate) fn build_main(
    ctx: &Ctx<'_>,
    graph: &Graph,
    inputs: &[ValueInfo],
    inits: Vec<(String, Arc<Tensor>)>,
) -> Result<Program> {
    let mut b = Builder::new(ctx);
    let mut scope = Scope::new();
    for i in inputs {
        let s = b.new_slot(&i.name, None);
        b.prog.inputs.push(s);
        scope.insert(i.name.clone(), s);
    }
    for (name, t) in inits {
        let s = b.new_slot(&name, Some(t));
        scope.insert(name, s);
    }
    b.plan_nodes_with(graph, &mut scope, true)?;
    set_outputs(&mut b, graph, &scope)?;
    Ok(b.finish())
}

/// Plans a subgraph whose runtime inputs are its declared inputs followed by the
/// outer-scope values `captures`; `const_captures` are outer constants it may read.
pub(crate) fn build_sub(
    ctx: &Ctx<'_>,
    graph: &Graph,
    captures: &[String],
    const_captures: &[(String, Arc<Tensor>)],
) -> Result<Program> {
    let mut b = Builder::new(ctx);
    let mut scope = Scope::new();
    for (n, t) in const_captures {
        let s = b.new_slot(n, Some(t.clone()));
        scope.insert(n.clone(), s);
    }
    for name in graph.inputs.iter().map(|i| &i.name).chain(captures) {
        let s = b.new_slot(name, None);
        b.prog.inputs.push(s);
        scope.insert(name.clone(), s);
    }
    b.plan_graph(graph, &mut scope)?;
    set_outputs(&mut b, graph, &scope)?;
    Ok(b.finish())
}

fn set_outputs(b: &mut Builder<'_>, graph: &Graph, scope: &Scope) -> Result<()> {
    for o in &graph.outputs {
        let s = scope.get(&o.name).copied().ok_or_else(|| {
            Error::InvalidModel(format!(
                "graph output {:?} is not produced by any node, initializer or input",
                o.name
            ))
        })?;
        b.prog.outputs.push((o.name.clone(), s));
    }
    Ok(())
}

/// Names a graph reads from its enclosing scope (including through nested subgraphs),
/// in first-use order.
pub(crate) fn free_vars(graph: &Graph) -> Vec<String> {
    let mut defined: HashSet<&str> = graph.inputs.iter().map(|i| i.name.as_str()).collect();
    defined.extend(graph.initializers.iter().map(|(n, _)| n.as_str()));
    for n in &graph.nodes {
        defined.extend(n.outputs.iter().map(String::as_str));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for n in &graph.nodes {
        for name in node_reads(n) {
            if !name.is_empty() && !defined.contains(name.as_str()) && seen.insert(name.clone()) {
                out.push(name);
            }
        }
    }
    out
}

/// Every name a node reads: its inputs and its subgraphs' free variables.
pub(crate) fn node_reads(node: &Node) -> Vec<String> {
    let mut v: Vec<String> = node.inputs.clone();
    for (_, a) in &node.attributes {
        match a {
            Attribute::Graph(g) => v.extend(free_vars(g)),
            Attribute::Graphs(gs) => gs.iter().for_each(|g| v.extend(free_vars(g))),
            _ => {}
        }
    }
    v
}

/// Node indices in dependency order (file order among independent nodes): the one
/// topological sort of the crate, [`Graph::topo_order_in_scope`], with the names the
/// graph does not define (an enclosing graph's values, or initializers the plan holds
/// apart) treated as given; [`Builder::resolve`] reports the ones that are missing.
///
/// # Errors
/// A value produced twice, or a cycle.
pub(crate) fn topo_order(graph: &Graph) -> Result<Vec<usize>> {
    let free = graph.captured_names();
    let outer: HashSet<&str> = free.iter().map(String::as_str).collect();
    graph.topo_order_in_scope(&outer)
}

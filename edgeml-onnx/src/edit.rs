//! The graph editing API: who produces and who reads each value, fresh names, node and
//! initializer edits, rewiring, dead-code removal and topological reordering.
//!
//! Every pass of [`crate::passes`] is written over these methods; quantization and
//! pruning use them too. None of them panics: an index out of range is
//! [`Error::InvalidInput`], and an edit that leaves the graph invalid (a dangling
//! input, a cycle) is reported by [`Graph::sort_topologically`] / [`Graph::topo_order`].

use crate::ir::{Attribute, Graph, Node, Tensor};
use crate::{Error, Result};
use std::collections::{HashMap, HashSet};

/// Producer and consumers of every value of one graph, built on demand by
/// [`Graph::index`]. It is a snapshot: rebuild it after editing the graph.
#[derive(Debug, Clone, Default)]
pub struct GraphIndex {
    producer: HashMap<String, usize>,
    consumers: HashMap<String, Vec<usize>>,
    outputs: HashSet<String>,
}

impl GraphIndex {
    /// The index of the node that produces `value`, if a node does (graph inputs and
    /// initializers have no producer).
    pub fn producer(&self, value: &str) -> Option<usize> {
        self.producer.get(value).copied()
    }

    /// The indices of the nodes that read `value` (as an input, or captured by one of
    /// their subgraphs), in node order, each once.
    pub fn consumers(&self, value: &str) -> &[usize] {
        self.consumers.get(value).map_or(&[], Vec::as_slice)
    }

    /// Whether `value` is a graph output.
    pub fn is_output(&self, value: &str) -> bool {
        self.outputs.contains(value)
    }

    /// How often `value` is read: its consumers, plus one if it is a graph output.
    pub fn uses(&self, value: &str) -> usize {
        self.consumers(value).len() + usize::from(self.is_output(value))
    }
}

/// What [`Graph::remove_dead`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeadCode {
    /// Nodes none of whose outputs is needed.
    pub nodes: usize,
    /// Initializers nobody reads.
    pub initializers: usize,
    /// Graph inputs that only listed a removed initializer.
    pub inputs: usize,
    /// `value_info` entries of values that no longer exist (or listed twice).
    pub value_info: usize,
}

impl DeadCode {
    /// The total number of removed items.
    pub fn total(&self) -> usize {
        self.nodes + self.initializers + self.inputs + self.value_info
    }
}

/// The names a node reads: its non-empty inputs and what its subgraphs capture.
pub(crate) fn node_reads(node: &Node) -> Vec<String> {
    let mut v: Vec<String> = node
        .inputs
        .iter()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect();
    for (_, a) in &node.attributes {
        for g in subgraphs(a) {
            let mut c: Vec<String> = g.captured_names().into_iter().collect();
            c.sort_unstable();
            v.extend(c);
        }
    }
    v
}

fn subgraphs(a: &Attribute) -> &[Graph] {
    match a {
        Attribute::Graph(g) => std::slice::from_ref(&**g),
        Attribute::Graphs(v) => v,
        _ => &[],
    }
}

fn subgraphs_mut(a: &mut Attribute) -> &mut [Graph] {
    match a {
        Attribute::Graph(g) => std::slice::from_mut(&mut **g),
        Attribute::Graphs(v) => v,
        _ => &mut [],
    }
}

/// Whether `g` defines `name` itself (so that reads of `name` inside it do not refer
/// to the enclosing graph's value).
fn defines(g: &Graph, name: &str) -> bool {
    g.inputs.iter().any(|v| v.name == name)
        || g.initializers.iter().any(|(n, _)| n == name)
        || g.nodes.iter().any(|n| n.outputs.iter().any(|o| o == name))
}

/// Renames reads of `old` to `new` in `node` and in the subgraphs that capture `old`.
fn rename_reads(node: &mut Node, old: &str, new: &str) -> usize {
    let mut n = 0;
    for i in node.inputs.iter_mut().filter(|i| *i == old) {
        new.clone_into(i);
        n += 1;
    }
    for (_, a) in &mut node.attributes {
        for g in subgraphs_mut(a) {
            if !defines(g, old) {
                for sub in &mut g.nodes {
                    n += rename_reads(sub, old, new);
                }
                for o in g.outputs.iter_mut().filter(|o| o.name == old) {
                    new.clone_into(&mut o.name);
                    n += 1;
                }
            }
        }
    }
    n
}

impl Graph {
    /// Builds the producer/consumer index of the current graph.
    pub fn index(&self) -> GraphIndex {
        let mut ix = GraphIndex::default();
        for (i, n) in self.nodes.iter().enumerate() {
            for o in n.outputs.iter().filter(|o| !o.is_empty()) {
                ix.producer.entry(o.clone()).or_insert(i);
            }
            for r in node_reads(n) {
                let c = ix.consumers.entry(r).or_default();
                if c.last() != Some(&i) && !c.contains(&i) {
                    c.push(i);
                }
            }
        }
        ix.outputs = self.outputs.iter().map(|o| o.name.clone()).collect();
        ix
    }

    /// Every name the graph uses: values (inputs, outputs, initializers, node outputs,
    /// `value_info`), node names, and the same inside subgraphs.
    pub fn used_names(&self) -> HashSet<String> {
        let mut s = HashSet::new();
        self.collect_names(&mut s);
        s
    }

    fn collect_names(&self, s: &mut HashSet<String>) {
        for v in self
            .inputs
            .iter()
            .chain(&self.outputs)
            .chain(&self.value_info)
        {
            s.insert(v.name.clone());
        }
        for (n, _) in &self.initializers {
            s.insert(n.clone());
        }
        for n in &self.nodes {
            s.insert(n.name.clone());
            s.extend(n.inputs.iter().cloned());
            s.extend(n.outputs.iter().cloned());
            for (_, a) in &n.attributes {
                for g in subgraphs(a) {
                    g.collect_names(s);
                }
            }
        }
    }

    /// A name based on `base` that the graph does not use yet (see
    /// [`Graph::used_names`]): `base` itself if free, else `base_1`, `base_2`, ….
    pub fn fresh_name(&self, base: &str) -> String {
        fresh_in(&self.used_names(), base)
    }

    /// Inserts `node` before position `at` (`at == nodes.len()` appends).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `at` is beyond the end.
    pub fn insert_node(&mut self, at: usize, node: Node) -> Result<()> {
        if at > self.nodes.len() {
            return Err(Error::InvalidInput(format!(
                "cannot insert a node at {at}: the graph has {} nodes",
                self.nodes.len()
            )));
        }
        self.nodes.insert(at, node);
        Ok(())
    }

    /// Removes and returns node `i`. Its outputs are then undefined: rewire their
    /// consumers first ([`Graph::replace_uses`]) or remove them too.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `i` is out of range.
    pub fn remove_node(&mut self, i: usize) -> Result<Node> {
        if i >= self.nodes.len() {
            return Err(out_of_range(i, self.nodes.len()));
        }
        Ok(self.nodes.remove(i))
    }

    /// Replaces node `i` by `node` and returns the old one.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `i` is out of range.
    pub fn replace_node(&mut self, i: usize, node: Node) -> Result<Node> {
        let len = self.nodes.len();
        let slot = self.nodes.get_mut(i).ok_or_else(|| out_of_range(i, len))?;
        Ok(std::mem::replace(slot, node))
    }

    /// Sets the initializer `name` to `value`, replacing (in place) and returning an
    /// existing one, or appending a new one.
    pub fn set_initializer(&mut self, name: &str, value: Tensor) -> Option<Tensor> {
        match self.initializers.iter_mut().find(|(n, _)| n == name) {
            Some((_, t)) => Some(std::mem::replace(t, value)),
            None => {
                self.initializers.push((name.to_owned(), value));
                None
            }
        }
    }

    /// Removes the initializer `name` (and the graph input of the same name, which
    /// only listed it, and its entry in `extras.sparse_initializers`) and returns its
    /// value.
    pub fn remove_initializer(&mut self, name: &str) -> Option<Tensor> {
        let k = self.initializers.iter().position(|(n, _)| n == name)?;
        self.inputs.retain(|v| v.name != name);
        self.extras.sparse_initializers.retain(|n| n != name);
        Some(self.initializers.remove(k).1)
    }

    /// Makes every consumer of `old` read `new` instead: node inputs, and reads inside
    /// subgraphs that do not define a value `old` of their own. Graph outputs are not
    /// renamed (their names are the model's interface). Returns the number of rewired
    /// reads.
    pub fn replace_uses(&mut self, old: &str, new: &str) -> usize {
        if old == new || old.is_empty() {
            return 0;
        }
        self.nodes
            .iter_mut()
            .map(|n| rename_reads(n, old, new))
            .sum()
    }

    /// Renames the value `old` to `new` everywhere in this graph: its definition (node
    /// output, initializer or graph input), every read, graph outputs and `value_info`.
    /// `new` must not be in use yet.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `new` is already used by the graph.
    pub fn rename_value(&mut self, old: &str, new: &str) -> Result<()> {
        if old == new {
            return Ok(());
        }
        if self.used_names().contains(new) {
            return Err(Error::InvalidInput(format!(
                "cannot rename {old:?} to {new:?}: the name is in use"
            )));
        }
        self.replace_uses(old, new);
        for n in &mut self.nodes {
            for o in n.outputs.iter_mut().filter(|o| *o == old) {
                new.clone_into(o);
            }
        }
        for (n, _) in self.initializers.iter_mut().filter(|(n, _)| n == old) {
            new.clone_into(n);
        }
        for n in self
            .extras
            .sparse_initializers
            .iter_mut()
            .filter(|n| *n == old)
        {
            new.clone_into(n);
        }
        for v in self
            .inputs
            .iter_mut()
            .chain(&mut self.outputs)
            .chain(&mut self.value_info)
            .filter(|v| v.name == old)
        {
            new.clone_into(&mut v.name);
        }
        Ok(())
    }

    /// Removes what no graph output depends on: nodes none of whose outputs is needed,
    /// initializers nobody reads (with the graph inputs that only listed them), and
    /// `value_info` entries of values that no longer exist or are listed twice.
    /// Graph inputs without an initializer are the model's interface and are kept.
    pub fn remove_dead(&mut self) -> DeadCode {
        let ix = self.index();
        let mut needed: HashSet<String> = self.outputs.iter().map(|o| o.name.clone()).collect();
        let mut live = vec![false; self.nodes.len()];
        let mut work: Vec<String> = needed.iter().cloned().collect();
        while let Some(v) = work.pop() {
            if let Some(p) = ix.producer(&v)
                && !live[p]
            {
                live[p] = true;
                for r in node_reads(&self.nodes[p]) {
                    if needed.insert(r.clone()) {
                        work.push(r);
                    }
                }
            }
        }
        let mut dead = DeadCode::default();
        let mut k = live.iter();
        let before = self.nodes.len();
        self.nodes.retain(|_| k.next().copied().unwrap_or(true));
        dead.nodes = before - self.nodes.len();
        let removed: Vec<String> = self
            .initializers
            .iter()
            .filter(|(n, _)| !needed.contains(n))
            .map(|(n, _)| n.clone())
            .collect();
        dead.initializers = removed.len();
        self.initializers.retain(|(n, _)| needed.contains(n));
        let removed: HashSet<String> = removed.into_iter().collect();
        self.extras
            .sparse_initializers
            .retain(|n| !removed.contains(n));
        let before = self.inputs.len();
        self.inputs.retain(|v| !removed.contains(&v.name));
        dead.inputs = before - self.inputs.len();
        let mut defined: HashSet<&str> = self.inputs.iter().map(|v| v.name.as_str()).collect();
        defined.extend(self.initializers.iter().map(|(n, _)| n.as_str()));
        for n in &self.nodes {
            defined.extend(n.outputs.iter().map(String::as_str));
        }
        let mut seen = HashSet::new();
        let before = self.value_info.len();
        let keep: Vec<bool> = self
            .value_info
            .iter()
            .map(|v| defined.contains(v.name.as_str()) && seen.insert(v.name.clone()))
            .collect();
        let mut k = keep.into_iter();
        self.value_info.retain(|_| k.next().unwrap_or(true));
        dead.value_info = before - self.value_info.len();
        dead
    }

    /// Reorders [`Graph::nodes`] topologically (the order of [`Graph::topo_order`]:
    /// file order among nodes that are ready together, so a sorted graph is unchanged).
    ///
    /// # Errors
    /// As [`Graph::topo_order`]: cycles, dangling inputs, values defined twice. The
    /// graph is left unchanged then.
    pub fn sort_topologically(&mut self) -> Result<()> {
        let order = self.topo_order()?;
        if order.iter().enumerate().all(|(k, &i)| k == i) {
            return Ok(());
        }
        let mut old: Vec<Option<Node>> = std::mem::take(&mut self.nodes)
            .into_iter()
            .map(Some)
            .collect();
        self.nodes = order
            .into_iter()
            .filter_map(|i| old.get_mut(i).and_then(Option::take))
            .collect();
        Ok(())
    }
}

fn out_of_range(i: usize, len: usize) -> Error {
    Error::InvalidInput(format!(
        "node index {i} is out of range: the graph has {len} nodes"
    ))
}

/// `base`, or `base_1`, `base_2`, … — the first that is not in `used`.
pub(crate) fn fresh_in(used: &HashSet<String>, base: &str) -> String {
    if !base.is_empty() && !used.contains(base) {
        return base.to_owned();
    }
    (1u64..)
        .map(|k| format!("{base}_{k}"))
        .find(|n| !used.contains(n))
        .unwrap_or_default()
}

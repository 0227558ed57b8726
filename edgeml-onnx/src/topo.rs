//! Graph validation and topological order.

use crate::ir::{Attribute, Graph, Model};
use crate::{Error, Result};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

#[derive(Clone, Copy)]
enum Def {
    Input,
    Initializer,
    Node(usize),
}

fn subgraphs(a: &Attribute) -> &[Graph] {
    match a {
        Attribute::Graph(g) => std::slice::from_ref(&**g),
        Attribute::Graphs(v) => v,
        _ => &[],
    }
}

impl Graph {
    /// Names this graph (and its subgraphs) use but do not define: values it captures
    /// from an enclosing scope.
    pub fn captured_names(&self) -> HashSet<String> {
        let mut defined: HashSet<&str> = self.inputs.iter().map(|v| v.name.as_str()).collect();
        defined.extend(self.initializers.iter().map(|(n, _)| n.as_str()));
        for n in &self.nodes {
            defined.extend(n.outputs.iter().map(String::as_str));
        }
        let mut free = HashSet::new();
        for n in &self.nodes {
            for i in &n.inputs {
                if !i.is_empty() && !defined.contains(i.as_str()) {
                    free.insert(i.clone());
                }
            }
            for (_, a) in &n.attributes {
                for g in subgraphs(a) {
                    for c in g.captured_names() {
                        if !defined.contains(c.as_str()) {
                            free.insert(c);
                        }
                    }
                }
            }
        }
        for o in &self.outputs {
            if !o.name.is_empty() && !defined.contains(o.name.as_str()) {
                free.insert(o.name.clone());
            }
        }
        free
    }

    /// A topological order of the nodes (indices into [`Graph::nodes`]); among nodes
    /// that are ready together, file order is kept, so an already sorted graph yields
    /// `0..n`. Subgraphs are validated too.
    ///
    /// # Errors
    /// [`Error::InvalidModel`] naming the node and value when a node input (or a value
    /// a subgraph captures) is not a graph input, an initializer or the output of some
    /// node; when a value is defined twice; when the graph has a cycle; when a graph
    /// output is never produced.
    pub fn topo_order(&self) -> Result<Vec<usize>> {
        self.topo_order_in_scope(&HashSet::new())
    }

    /// As [`Graph::topo_order`] for a subgraph that may also read the names in `outer`
    /// (values of enclosing graphs).
    ///
    /// # Errors
    /// As [`Graph::topo_order`].
    pub fn topo_order_in_scope(&self, outer: &HashSet<&str>) -> Result<Vec<usize>> {
        let gname = &self.name;
        let bad = |m: String| Error::InvalidModel(format!("graph {gname:?}: {m}"));
        let mut defs: HashMap<&str, Def> = HashMap::new();
        for (n, _) in &self.initializers {
            if defs.insert(n.as_str(), Def::Initializer).is_some() {
                return Err(bad(format!("duplicate initializer {n:?}")));
            }
        }
        let mut seen_inputs = HashSet::new();
        for v in &self.inputs {
            if !seen_inputs.insert(v.name.as_str()) {
                return Err(bad(format!("duplicate graph input {:?}", v.name)));
            }
            defs.entry(v.name.as_str()).or_insert(Def::Input);
        }
        for (i, n) in self.nodes.iter().enumerate() {
            for o in n.outputs.iter().filter(|o| !o.is_empty()) {
                if let Some(prev) = defs.insert(o.as_str(), Def::Node(i)) {
                    let by = match prev {
                        Def::Input => "a graph input".to_owned(),
                        Def::Initializer => "an initializer".to_owned(),
                        Def::Node(j) => format!("node {:?}", self.nodes[j].name_or_output()),
                    };
                    return Err(bad(format!(
                        "value {o:?} of node {:?} is already defined by {by}",
                        n.name_or_output()
                    )));
                }
            }
        }
        let n = self.nodes.len();
        let mut indeg = vec![0usize; n];
        let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
        // Names visible to subgraphs: outer scope plus everything defined here.
        let mut inner_scope: Option<HashSet<&str>> = None;
        for (i, node) in self.nodes.iter().enumerate() {
            let mut deps: Vec<(String, bool)> = node
                .inputs
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| (s.clone(), false))
                .collect();
            for (_, a) in &node.attributes {
                for g in subgraphs(a) {
                    let scope = inner_scope.get_or_insert_with(|| {
                        let mut s: HashSet<&str> = outer.clone();
                        s.extend(defs.keys().copied());
                        s
                    });
                    g.topo_order_in_scope(scope)?;
                    deps.extend(g.captured_names().into_iter().map(|c| (c, true)));
                }
            }
            for (name, captured) in deps {
                match defs.get(name.as_str()) {
                    Some(Def::Node(j)) => {
                        if *j == i {
                            return Err(bad(format!(
                                "node {:?} reads its own output {name:?} (cycle)",
                                node.name_or_output()
                            )));
                        }
                        succ[*j].push(i);
                        indeg[i] += 1;
                    }
                    Some(_) => {}
                    None if outer.contains(name.as_str()) => {}
                    None => {
                        let how = if captured { "captures" } else { "has input" };
                        return Err(bad(format!(
                            "node {:?} ({}) {how} {name:?}, which is not a graph input, an initializer or any node's output",
                            node.name_or_output(),
                            node.op_type
                        )));
                    }
                }
            }
        }
        for o in &self.outputs {
            if !o.name.is_empty()
                && !defs.contains_key(o.name.as_str())
                && !outer.contains(o.name.as_str())
            {
                return Err(bad(format!("graph output {:?} is never produced", o.name)));
            }
        }
        let mut ready: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|&i| indeg[i] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i);
            for &s in &succ[i] {
                indeg[s] -= 1;
                if indeg[s] == 0 {
                    ready.push(Reverse(s));
                }
            }
        }
        if order.len() < n {
            let stuck = (0..n).find(|&i| indeg[i] > 0).unwrap_or(0);
            return Err(bad(format!(
                "the nodes form a cycle through node {:?} ({})",
                self.nodes[stuck].name_or_output(),
                self.nodes[stuck].op_type
            )));
        }
        Ok(order)
    }
}

impl Model {
    /// Validates the graph: see [`Graph::topo_order`]; and the types of well-known
    /// attributes of default-domain operators (e.g. `Conv`'s `kernel_shape` must be
    /// `INTS`, as onnxruntime requires; a `FLOAT` attribute may be given as `INT`).
    /// Loading does this unless [`LoadOptions::validate`](crate::LoadOptions::validate)
    /// turns it off.
    ///
    /// # Errors
    /// As [`Graph::topo_order`]; [`Error::InvalidModel`] naming the node and attribute
    /// for an attribute of the wrong type.
    pub fn validate(&self) -> Result<()> {
        self.graph.topo_order()?;
        crate::attr_check::check(&self.graph)
    }
}

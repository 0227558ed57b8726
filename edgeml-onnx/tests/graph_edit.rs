//! The graph editing API: unit cases, and property tests that random sequences of
//! edits keep a graph valid (topologically sorted, unique names, every input produced)
//! and computing the same outputs, and that the pass pipelines never change outputs.

use edgeml_core::DType;
use edgeml_onnx::passes::{OptimizeLevel, Pipeline};
use edgeml_onnx::{
    Attribute, Dim, Error, Graph, Model, ModelBuilder, Node, Plan, PlanOptions, Tensor, ValueInfo,
};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use std::collections::HashSet;

fn f32s(shape: &[usize], seed: u32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n as u32)
        .map(|i| ((i.wrapping_mul(2654435761).wrapping_add(seed * 97)) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape"))
}

fn xinfo(name: &str) -> ValueInfo {
    ValueInfo::tensor(name, DType::F32, vec![Dim::from(2), Dim::from(3)])
}

/// Checks the invariants every edit must keep.
fn assert_valid(g: &Graph) {
    let order = g.topo_order().expect("valid graph");
    assert!(
        order.iter().enumerate().all(|(k, &i)| k == i),
        "nodes are not in topological order: {order:?}"
    );
    let mut defined: HashSet<&str> = g.inputs.iter().map(|v| v.name.as_str()).collect();
    defined.extend(g.initializers.iter().map(|(n, _)| n.as_str()));
    let mut names = HashSet::new();
    for n in &g.nodes {
        for i in n.inputs.iter().filter(|i| !i.is_empty()) {
            assert!(
                defined.contains(i.as_str()),
                "{i:?} is read before it is defined"
            );
        }
        for o in &n.outputs {
            assert!(defined.insert(o.as_str()), "{o:?} is defined twice");
        }
        if !n.name.is_empty() {
            assert!(
                names.insert(n.name.as_str()),
                "node name {:?} twice",
                n.name
            );
        }
    }
    for o in &g.outputs {
        assert!(
            defined.contains(o.name.as_str()),
            "output {:?} not produced",
            o.name
        );
    }
}

fn run(m: &Model, x: &Tensor) -> Vec<(String, Tensor)> {
    Plan::new(m, PlanOptions::with_threads(1))
        .expect("plan")
        .run(&[("x", x.clone())])
        .expect("run")
}

/// A random DAG of element-wise operators over `x` ([2, 3]) and two initializers.
fn random_model(ops: &[(u8, usize, usize)]) -> Model {
    let mut b = ModelBuilder::new(17)
        .input(xinfo("x"))
        .initializer("w", f32s(&[2, 3], 1))
        .initializer("c", f32s(&[3], 2));
    let mut values = vec!["x".to_owned(), "w".to_owned(), "c".to_owned()];
    for (k, &(op, a, bb)) in ops.iter().enumerate() {
        let a = values[a % values.len()].clone();
        let bb = values[bb % values.len()].clone();
        let out = format!("v{k}");
        let node = match op % 5 {
            0 => Node::new("Add", &[&a, &bb], &[&out]),
            1 => Node::new("Mul", &[&a, &bb], &[&out]),
            2 => Node::new("Relu", &[&a], &[&out]),
            3 => Node::new("Identity", &[&a], &[&out]),
            _ => Node::new("Sub", &[&bb, &a], &[&out]),
        };
        b = b.node(node.with_name(&format!("n{k}")));
        values.push(out);
    }
    // Add "x" so that every output has shape [2, 3] whatever the chain read.
    let last = values.last().cloned().unwrap_or_default();
    b.node(Node::new("Add", &["x", &last], &["y"]).with_name("final"))
        .output(xinfo("y"))
        .build()
        .expect("valid model")
}

#[derive(Debug, Clone)]
enum Edit {
    /// Route the consumers of a value through a new `Identity`.
    InsertIdentity(usize),
    /// Remove an `Identity` (its consumers read its input).
    RemoveIdentity(usize),
    /// Append a node nobody reads.
    AddDeadNode(usize),
    /// Add an initializer nobody reads (listed as a graph input too).
    AddDeadInitializer,
    /// Swap two nodes, then sort topologically.
    SwapAndSort(usize, usize),
    RemoveDead,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::InsertIdentity),
        any::<usize>().prop_map(Edit::RemoveIdentity),
        any::<usize>().prop_map(Edit::AddDeadNode),
        Just(Edit::AddDeadInitializer),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapAndSort(a, b)),
        Just(Edit::RemoveDead),
    ]
}

fn apply(g: &mut Graph, e: &Edit) {
    let values: Vec<String> = g
        .nodes
        .iter()
        .flat_map(|n| n.outputs.clone())
        .chain(["x".to_owned()])
        .collect();
    match *e {
        Edit::InsertIdentity(k) => {
            let v = values[k % values.len()].clone();
            let fresh = g.fresh_name(&format!("{v}_id"));
            let at = g.index().producer(&v).map_or(0, |p| p + 1);
            g.replace_uses(&v, &fresh);
            let name = g.fresh_name("identity");
            g.insert_node(at, Node::new("Identity", &[&v], &[&fresh]).with_name(&name))
                .expect("in range");
        }
        Edit::RemoveIdentity(k) => {
            let ix = g.index();
            let ids: Vec<usize> = (0..g.nodes.len())
                .filter(|&i| {
                    g.nodes[i].op_type == "Identity" && !ix.is_output(&g.nodes[i].outputs[0])
                })
                .collect();
            if ids.is_empty() {
                return;
            }
            let i = ids[k % ids.len()];
            let node = g.remove_node(i).expect("in range");
            g.replace_uses(&node.outputs[0], &node.inputs[0]);
        }
        Edit::AddDeadNode(k) => {
            let v = values[k % values.len()].clone();
            let out = g.fresh_name("dead");
            let name = g.fresh_name("dead_node");
            g.nodes
                .push(Node::new("Neg", &[&v], &[&out]).with_name(&name));
            g.value_info.push(xinfo(&out));
        }
        Edit::AddDeadInitializer => {
            let name = g.fresh_name("unused");
            g.set_initializer(&name, f32s(&[4], 3));
            g.inputs.push(ValueInfo::named(&name));
        }
        Edit::SwapAndSort(a, b) => {
            if !g.nodes.is_empty() {
                let n = g.nodes.len();
                g.nodes.swap(a % n, b % n);
                g.sort_topologically().expect("still acyclic");
            }
        }
        Edit::RemoveDead => {
            g.remove_dead();
            assert_eq!(
                g.remove_dead().total(),
                0,
                "remove_dead left something dead"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_edits_keep_the_graph_valid_and_its_outputs(
        ops in prop::collection::vec((0u8..5, 0usize..64, 0usize..64), 1..12),
        edits in prop::collection::vec(edit(), 1..16),
    ) {
        let mut m = random_model(&ops);
        let x = f32s(&[2, 3], 9);
        let want = run(&m, &x);
        for e in &edits {
            apply(&mut m.graph, e);
            assert_valid(&m.graph);
        }
        m.graph.remove_dead();
        assert_valid(&m.graph);
        prop_assert!(!m.graph.inputs.iter().any(|v| v.name.starts_with("unused")));
        prop_assert!(!m.graph.nodes.iter().any(|n| n.op_type == "Neg"));
        prop_assert!(m.graph.value_info.iter().all(|v| !v.name.starts_with("dead")));
        prop_assert_eq!(run(&m, &x), want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Folding never changes outputs: random graphs mixing constant-only chains (over
    /// the initializers) with runtime ones give bit-identical outputs after the basic
    /// and extended pipelines, which leave valid graphs and are idempotent.
    #[test]
    fn pipelines_keep_outputs_of_random_graphs(
        ops in prop::collection::vec((0u8..5, 0usize..64, 0usize..64), 1..12),
    ) {
        let m = random_model(&ops);
        let x = f32s(&[2, 3], 9);
        let want = run(&m, &x);
        for level in [OptimizeLevel::Basic, OptimizeLevel::Extended] {
            let mut opt = m.clone();
            Pipeline::for_level(level).run(&mut opt).expect("optimize");
            assert_valid(&opt.graph);
            prop_assert!(opt.graph.nodes.len() <= m.graph.nodes.len());
            prop_assert!(!opt.graph.nodes.iter().any(|n| n.op_type == "Identity"));
            prop_assert_eq!(run(&opt, &x), want.clone());
            let again = opt.clone();
            prop_assert_eq!(Pipeline::for_level(level).run(&mut opt).expect("again").total(), 0);
            prop_assert_eq!(opt, again);
        }
    }
}

#[test]
fn index_knows_producers_consumers_and_outputs() {
    let m = random_model(&[(0, 0, 1), (2, 3, 0), (1, 3, 4)]);
    let ix = m.graph.index();
    assert_eq!(ix.producer("v0"), Some(0));
    assert_eq!(ix.producer("x"), None);
    assert_eq!(ix.consumers("v0"), &[1, 2]);
    assert!(ix.is_output("y"));
    assert_eq!(ix.uses("y"), 1);
    assert_eq!(ix.uses("nothing"), 0);
}

#[test]
fn fresh_names_avoid_every_name_in_use() {
    let m = random_model(&[(0, 0, 1)]);
    assert_eq!(m.graph.fresh_name("z"), "z");
    assert_eq!(m.graph.fresh_name("v0"), "v0_1");
    assert_eq!(m.graph.fresh_name("n0"), "n0_1", "node names count too");
    assert_eq!(m.graph.fresh_name(""), "_1");
}

#[test]
fn out_of_range_edits_are_errors() {
    let mut m = random_model(&[(0, 0, 1)]);
    let n = m.graph.nodes.len();
    assert!(matches!(
        m.graph.remove_node(n),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        m.graph.replace_node(n, Node::default()),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        m.graph.insert_node(n + 1, Node::default()),
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(m.graph.nodes.len(), n);
}

#[test]
fn sorting_reports_cycles_and_dangling_inputs() {
    let mut cyc = ModelBuilder::new(17)
        .input(xinfo("x"))
        .node(Node::new("Add", &["x", "b"], &["a"]))
        .node(Node::new("Relu", &["a"], &["b"]))
        .output(xinfo("b"))
        .build_unchecked();
    let before = cyc.clone();
    let e = cyc.graph.sort_topologically().expect_err("cycle");
    assert!(
        matches!(e, Error::InvalidModel(ref m) if m.contains("cycle")),
        "{e}"
    );
    assert_eq!(cyc, before, "a failed sort leaves the graph alone");
    let dangling = ModelBuilder::new(17)
        .input(xinfo("x"))
        .node(Node::new("Add", &["x", "nowhere"], &["y"]))
        .output(xinfo("y"))
        .build();
    assert!(matches!(dangling, Err(Error::InvalidModel(ref m)) if m.contains("nowhere")));
}

#[test]
fn renaming_and_removing_initializers() {
    let mut m = random_model(&[(0, 0, 1)]);
    m.graph.inputs.push(ValueInfo::named("w"));
    assert!(m.graph.rename_value("v0", "x").is_err(), "name in use");
    m.graph.rename_value("v0", "sum").expect("rename");
    assert_eq!(m.graph.nodes[1].inputs, ["x", "sum"]);
    assert!(m.graph.remove_initializer("w").is_some());
    assert!(!m.graph.inputs.iter().any(|v| v.name == "w"));
    assert!(m.graph.remove_initializer("w").is_none());
    assert!(m.graph.set_initializer("c", f32s(&[3], 5)).is_some());
    assert_eq!(
        m.graph
            .initializers
            .iter()
            .filter(|(n, _)| n == "c")
            .count(),
        1
    );
}

#[test]
fn replace_uses_reaches_subgraphs_that_capture_the_value() {
    let branch = |out: &str| Graph {
        name: "b".into(),
        nodes: vec![Node::new("Neg", &["v"], &[out])],
        outputs: vec![ValueInfo::named(out)],
        ..Graph::default()
    };
    let mut g = Graph {
        nodes: vec![
            Node::new("Identity", &["x"], &["v"]),
            Node::new("If", &["cond"], &["y"])
                .with_attr("then_branch", Attribute::Graph(Box::new(branch("t"))))
                .with_attr("else_branch", Attribute::Graph(Box::new(branch("e")))),
        ],
        ..Graph::default()
    };
    assert_eq!(g.index().consumers("v"), &[1]);
    assert_eq!(g.replace_uses("v", "x"), 2);
    let Some(Attribute::Graph(t)) = g.nodes[1].attr("then_branch") else {
        panic!("then_branch")
    };
    assert_eq!(t.nodes[0].inputs, ["x"]);
}

#[test]
fn removed_initializers_leave_no_sparse_storage_entry() {
    let mut m = random_model(&[(0, 0, 0)]); // v0 = x + x: w and c unused
    m.graph.extras.sparse_initializers = vec!["w".into(), "c".into()];
    let d = m.graph.remove_dead();
    assert_eq!(d.initializers, 2);
    assert!(m.graph.extras.sparse_initializers.is_empty());
    let mut m = random_model(&[(0, 0, 1)]);
    m.graph.extras.sparse_initializers = vec!["w".into()];
    m.graph.remove_initializer("w");
    assert!(m.graph.extras.sparse_initializers.is_empty());
}

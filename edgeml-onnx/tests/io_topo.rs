//! `Graph::topo_order` on hand-built graphs: ordering, optional inputs, outer scope,
//! subgraph captures, and the errors for cycles, dangling inputs and duplicates.

use edgeml_core::ErrorKind;
use edgeml_onnx::{Attribute, Graph, Node, Tensor, ValueInfo};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashSet;

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> Node {
    Node {
        name: name.into(),
        op_type: op.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        ..Node::default()
    }
}

fn vi(name: &str) -> ValueInfo {
    ValueInfo {
        name: name.into(),
        ..ValueInfo::default()
    }
}

fn graph(nodes: Vec<Node>, inputs: &[&str], outputs: &[&str]) -> Graph {
    Graph {
        name: "g".into(),
        nodes,
        inputs: inputs.iter().map(|n| vi(n)).collect(),
        outputs: outputs.iter().map(|n| vi(n)).collect(),
        ..Graph::default()
    }
}

fn is_topological(g: &Graph, order: &[usize]) -> bool {
    let mut seen: HashSet<&str> = g.inputs.iter().map(|v| v.name.as_str()).collect();
    seen.extend(g.initializers.iter().map(|(n, _)| n.as_str()));
    for &i in order {
        let n = &g.nodes[i];
        if !n
            .inputs
            .iter()
            .all(|x| x.is_empty() || seen.contains(x.as_str()))
        {
            return false;
        }
        seen.extend(n.outputs.iter().map(String::as_str));
    }
    order.len() == g.nodes.len()
}

#[test]
fn sorted_graph_keeps_file_order_and_unsorted_graph_is_ordered() {
    let g = graph(
        vec![
            node("a", "Relu", &["x"], &["h"]),
            node("b", "Neg", &["h"], &["y"]),
        ],
        &["x"],
        &["y"],
    );
    assert_eq!(g.topo_order().expect("valid"), vec![0, 1]);
    let g = graph(
        vec![
            node("c", "Add", &["h", "k"], &["y"]),
            node("b", "Neg", &["h"], &["k"]),
            node("a", "Relu", &["x"], &["h"]),
        ],
        &["x"],
        &["y"],
    );
    let order = g.topo_order().expect("valid");
    assert_eq!(order, vec![2, 1, 0]);
    assert!(is_topological(&g, &order));
}

#[test]
fn optional_inputs_and_initializers_are_available() {
    let mut g = graph(
        vec![node("clip", "Clip", &["x", "", "hi"], &["y"])],
        &["x"],
        &["y"],
    );
    g.initializers
        .push(("hi".into(), Tensor::F32(ArrayD::from_elem(IxDyn(&[]), 6.0))));
    assert_eq!(g.topo_order().expect("valid"), vec![0]);
}

#[test]
fn subgraphs_see_outer_scope_and_create_dependencies() {
    // The If node's branch reads `h`, produced by a node that comes later in the file.
    let branch = graph(vec![node("inner", "Neg", &["h"], &["o"])], &[], &["o"]);
    let mut iff = node("if", "If", &["c"], &["y"]);
    iff.attributes.push((
        "then_branch".into(),
        Attribute::Graph(Box::new(branch.clone())),
    ));
    iff.attributes.push((
        "else_branch".into(),
        Attribute::Graph(Box::new(branch.clone())),
    ));
    let g = graph(
        vec![iff, node("p", "Relu", &["x"], &["h"])],
        &["x", "c"],
        &["y"],
    );
    assert_eq!(g.topo_order().expect("valid"), vec![1, 0]);
    assert!(
        g.nodes[0]
            .attributes
            .iter()
            .all(|(_, a)| matches!(a, Attribute::Graph(_)))
    );
    // On its own the branch is incomplete; with the outer name in scope it is valid.
    assert_eq!(
        branch.topo_order().expect_err("dangling").kind(),
        ErrorKind::InvalidModel
    );
    let outer: HashSet<&str> = ["h"].into_iter().collect();
    assert_eq!(
        branch.topo_order_in_scope(&outer).expect("in scope"),
        vec![0]
    );
    assert_eq!(
        branch.captured_names(),
        ["h".to_string()].into_iter().collect()
    );
}

#[test]
fn errors_name_the_node_and_value() {
    let cyc = graph(
        vec![
            node("first", "Add", &["x", "b"], &["a"]),
            node("second", "Relu", &["a"], &["b"]),
        ],
        &["x"],
        &["b"],
    );
    let e = cyc.topo_order().expect_err("cycle");
    assert_eq!(e.kind(), ErrorKind::InvalidModel);
    assert!(e.to_string().contains("cycle"), "{e}");
    let dangling = graph(
        vec![node("n", "Add", &["x", "ghost"], &["y"])],
        &["x"],
        &["y"],
    );
    let e = dangling.topo_order().expect_err("dangling");
    assert!(
        e.to_string().contains("\"ghost\"") && e.to_string().contains("\"n\""),
        "{e}"
    );
    let dup = graph(
        vec![
            node("one", "Relu", &["x"], &["y"]),
            node("two", "Neg", &["x"], &["y"]),
        ],
        &["x"],
        &["y"],
    );
    let e = dup.topo_order().expect_err("duplicate");
    assert!(
        e.to_string().contains("\"two\"") && e.to_string().contains("\"one\""),
        "{e}"
    );
    let shadow = graph(vec![node("s", "Relu", &["x"], &["x"])], &["x"], &["x"]);
    assert_eq!(
        shadow.topo_order().expect_err("redefines input").kind(),
        ErrorKind::InvalidModel
    );
}

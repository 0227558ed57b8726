//! The corpus of hostile-but-valid graphs of issue 19: each is a well-formed model that
//! an unbounded interpreter would hang on or run out of memory with. Shared by
//! `edgeml-onnx/tests/run_bounded.rs` (library) and `edgeml-cli/tests/run_bounded.rs`
//! (through `edgeml run`, which includes this file by path).
#![allow(dead_code)]

use edgeml_core::DType;
use edgeml_onnx::{Attribute, Dim, Graph, Model, Node, OpsetImport, Tensor, ValueInfo};
use ndarray::ArrayD;

/// One hostile model, the runtime inputs that trigger it, and what must stop it.
pub(crate) struct Hostile {
    /// Short name (also the file stem when saved for the CLI).
    pub(crate) name: &'static str,
    /// The model.
    pub(crate) model: Model,
    /// Runtime inputs.
    pub(crate) inputs: Vec<(&'static str, Tensor)>,
    /// Text the error message must contain (the node that was running or refused).
    pub(crate) names: &'static str,
}

/// A model of `graph` importing the default domain at opset 17.
pub(crate) fn model(graph: Graph) -> Model {
    Model {
        ir_version: 8,
        opset_imports: vec![OpsetImport {
            domain: String::new(),
            version: 17,
        }],
        graph,
        ..Default::default()
    }
}

pub(crate) fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> Node {
    Node {
        name: name.into(),
        op_type: op.into(),
        inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
        outputs: outputs.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

pub(crate) fn vi(name: &str, dtype: DType, shape: &[usize]) -> ValueInfo {
    ValueInfo {
        name: name.into(),
        dtype: Some(dtype),
        shape: Some(shape.iter().map(|&d| Dim::Known(d)).collect()),
        ..Default::default()
    }
}

pub(crate) fn scalar_i64(v: i64) -> Tensor {
    Tensor::I64(ArrayD::from_elem(vec![], v))
}

pub(crate) fn scalar_f32(v: f32) -> Tensor {
    Tensor::F32(ArrayD::from_elem(vec![], v))
}

pub(crate) fn scalar_bool(v: bool) -> Tensor {
    Tensor::Bool(ArrayD::from_elem(vec![], v))
}

pub(crate) fn ints(v: &[i64]) -> Tensor {
    Tensor::I64(ArrayD::from_shape_vec(vec![v.len()], v.to_vec()).expect("1-d"))
}

/// A Loop body carrying one f32 scalar `x` and adding `one` to it; the condition output
/// is the condition input unchanged when `keep_cond`, else `true` from a constant.
fn counting_body(prefix: &str) -> Graph {
    let one = format!("{prefix}_one");
    Graph {
        name: format!("{prefix}_body"),
        nodes: vec![
            node(
                &format!("{prefix}_cond_keep"),
                "Identity",
                &[&format!("{prefix}_c")],
                &[&format!("{prefix}_c_out")],
            ),
            node(
                &format!("{prefix}_add"),
                "Add",
                &[&format!("{prefix}_x"), &one],
                &[&format!("{prefix}_x_out")],
            ),
        ],
        inputs: vec![
            vi(&format!("{prefix}_i"), DType::I64, &[]),
            vi(&format!("{prefix}_c"), DType::Bool, &[]),
            vi(&format!("{prefix}_x"), DType::F32, &[]),
        ],
        outputs: vec![
            vi(&format!("{prefix}_c_out"), DType::Bool, &[]),
            vi(&format!("{prefix}_x_out"), DType::F32, &[]),
        ],
        initializers: vec![(one, scalar_f32(1.0))],
        ..Default::default()
    }
}

fn loop_node(name: &str, m: &str, cond: &str, x: &str, out: &str, body: Graph) -> Node {
    let mut n = node(name, "Loop", &[m, cond, x], &[out]);
    n.attributes = vec![("body".into(), Attribute::Graph(Box::new(body)))];
    n
}

/// `Loop` over constants: `M = 10^15`, `cond = true`.
pub(crate) fn loop_constant_trip() -> Hostile {
    let g = Graph {
        nodes: vec![loop_node(
            "huge_loop",
            "M",
            "cond",
            "x0",
            "y",
            counting_body("b"),
        )],
        outputs: vec![vi("y", DType::F32, &[])],
        initializers: vec![
            ("M".into(), scalar_i64(1_000_000_000_000_000)),
            ("cond".into(), scalar_bool(true)),
            ("x0".into(), scalar_f32(0.0)),
        ],
        ..Default::default()
    };
    Hostile {
        name: "loop_constant_trip",
        model: model(g),
        inputs: vec![],
        names: "huge_loop",
    }
}

/// The same loop with `M` a runtime input (given as 10^15).
pub(crate) fn loop_runtime_trip() -> Hostile {
    let g = Graph {
        nodes: vec![loop_node(
            "input_loop",
            "M",
            "",
            "x0",
            "y",
            counting_body("b"),
        )],
        inputs: vec![vi("M", DType::I64, &[])],
        outputs: vec![vi("y", DType::F32, &[])],
        initializers: vec![("x0".into(), scalar_f32(0.0))],
        ..Default::default()
    };
    Hostile {
        name: "loop_runtime_trip",
        model: model(g),
        inputs: vec![("M", scalar_i64(1_000_000_000_000_000))],
        names: "input_loop",
    }
}

/// A loop without `M` whose condition stays true.
pub(crate) fn loop_condition_stays_true() -> Hostile {
    let g = Graph {
        nodes: vec![loop_node(
            "while_true",
            "",
            "cond",
            "x0",
            "y",
            counting_body("b"),
        )],
        outputs: vec![vi("y", DType::F32, &[])],
        initializers: vec![
            ("cond".into(), scalar_bool(true)),
            ("x0".into(), scalar_f32(0.0)),
        ],
        ..Default::default()
    };
    Hostile {
        name: "loop_condition_stays_true",
        model: model(g),
        inputs: vec![],
        names: "while_true",
    }
}

/// Two nested loops of 10^5 iterations each (10^10 in all, each under the trip count).
pub(crate) fn nested_loops() -> Hostile {
    let mut outer_body = counting_body("o");
    // The inner loop reads the outer-scope trip count `N` and runs on the outer `x`.
    outer_body.nodes[1] = loop_node("inner_loop", "N", "", "o_x", "o_x_out", counting_body("i"));
    let g = Graph {
        nodes: vec![loop_node("outer_loop", "N", "", "x0", "y", outer_body)],
        outputs: vec![vi("y", DType::F32, &[])],
        initializers: vec![
            ("N".into(), scalar_i64(100_000)),
            ("x0".into(), scalar_f32(0.0)),
        ],
        ..Default::default()
    };
    Hostile {
        name: "nested_loops",
        model: model(g),
        inputs: vec![],
        names: "inner_loop",
    }
}

/// A folding bomb: `ConstantOfShape` of `elems` f32 over a constant shape, reduced to
/// one number. Folding it would allocate `4 * elems` bytes while planning.
pub(crate) fn folding_bomb(elems: i64) -> Hostile {
    let mut fill = node("bomb_fill", "ConstantOfShape", &["shape"], &["big"]);
    fill.attributes = vec![("value".into(), Attribute::Tensor(ints_f32(&[1.0])))];
    let mut reduce = node("bomb_sum", "ReduceSum", &["big"], &["y"]);
    reduce.attributes = vec![("keepdims".into(), Attribute::Int(0))];
    let g = Graph {
        nodes: vec![fill, reduce],
        outputs: vec![vi("y", DType::F32, &[])],
        initializers: vec![("shape".into(), ints(&[elems]))],
        ..Default::default()
    };
    Hostile {
        name: "folding_bomb",
        model: model(g),
        inputs: vec![],
        names: "bomb_fill",
    }
}

/// A `Range` folding bomb: `Range(0, elems, 1)` in int64 over constants, then summed.
pub(crate) fn range_bomb(elems: i64) -> Hostile {
    let mut reduce = node("range_sum", "ReduceSum", &["r"], &["y"]);
    reduce.attributes = vec![("keepdims".into(), Attribute::Int(0))];
    let g = Graph {
        nodes: vec![
            node("range_bomb", "Range", &["start", "limit", "delta"], &["r"]),
            reduce,
        ],
        outputs: vec![vi("y", DType::I64, &[])],
        initializers: vec![
            ("start".into(), scalar_i64(0)),
            ("limit".into(), scalar_i64(elems)),
            ("delta".into(), scalar_i64(1)),
        ],
        ..Default::default()
    };
    Hostile {
        name: "range_bomb",
        model: model(g),
        inputs: vec![],
        names: "range_bomb",
    }
}

fn ints_f32(v: &[f32]) -> Tensor {
    Tensor::F32(ArrayD::from_shape_vec(vec![v.len()], v.to_vec()).expect("1-d"))
}

/// `count` `ConstantOfShape` tensors of `elems` f32 each, all summed by one `Sum`: each
/// is under the per-tensor limit, together they are not. With `runtime_shape`, the
/// shape is a runtime input `shape` (so the plan cannot know the sizes in advance).
pub(crate) fn live_sum(count: usize, elems: i64, runtime_shape: bool) -> Hostile {
    let mut nodes = Vec::new();
    let names: Vec<String> = (0..count).map(|k| format!("t{k}")).collect();
    for (k, n) in names.iter().enumerate() {
        let mut fill = node(&format!("fill{k}"), "ConstantOfShape", &["shape"], &[n]);
        fill.attributes = vec![("value".into(), Attribute::Tensor(ints_f32(&[k as f32])))];
        nodes.push(fill);
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    nodes.push(node("sum_all", "Sum", &refs, &["y"]));
    let mut g = Graph {
        nodes,
        outputs: vec![ValueInfo {
            name: "y".into(),
            dtype: Some(DType::F32),
            shape: Some(vec![Dim::Unknown]),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut inputs = Vec::new();
    if runtime_shape {
        g.inputs = vec![vi("shape", DType::I64, &[1])];
        inputs.push(("shape", ints(&[elems])));
    } else {
        g.initializers = vec![("shape".into(), ints(&[elems]))];
    }
    Hostile {
        name: if runtime_shape {
            "live_sum_runtime"
        } else {
            "live_sum"
        },
        model: model(g),
        inputs,
        names: "fill",
    }
}

/// A pooling window as large as the padded image: `op` (`MaxPool` or `AveragePool`)
/// over a runtime input `x` of `[1, planes, n, n]` with an `n × n` kernel, stride 1 and
/// `n − 1` padding on every side, so `(2n − 1)²` outputs per plane each reduce up to
/// `n²` taps. With `indices`, MaxPool's second output is asked for too (the tap-by-tap
/// path). The work grows as n³ (n⁴ with indices): for n = 1024 the row path is about
/// 10¹⁰ compares per plane, the tap-by-tap path 4·10¹² — one step that takes seconds to
/// hours with every tensor small (the input 4 MiB a plane).
pub(crate) fn huge_pool_window(op: &str, planes: usize, n: usize, indices: bool) -> Hostile {
    let outputs: &[&str] = if indices { &["y", "i"] } else { &["y"] };
    let mut pool = node("huge_pool", op, &["x"], outputs);
    let (k, p) = (n as i64, n as i64 - 1);
    pool.attributes = vec![
        ("kernel_shape".into(), Attribute::Ints(vec![k, k])),
        ("pads".into(), Attribute::Ints(vec![p, p, p, p])),
    ];
    let out = [1, planes, 2 * n - 1, 2 * n - 1];
    let mut g_outputs = vec![vi("y", DType::F32, &out)];
    if indices {
        g_outputs.push(vi("i", DType::I64, &out));
    }
    Hostile {
        name: if indices {
            "huge_pool_window_indices"
        } else {
            "huge_pool_window"
        },
        model: model(Graph {
            nodes: vec![pool],
            inputs: vec![vi("x", DType::F32, &[1, planes, n, n])],
            outputs: g_outputs,
            ..Default::default()
        }),
        inputs: vec![(
            "x",
            Tensor::F32(ArrayD::from_shape_fn(vec![1, planes, n, n], |i| {
                ((i[2] * 7 + i[3] * 13) % 29) as f32
            })),
        )],
        names: "huge_pool",
    }
}

/// `LRN` whose `size` spans every channel: a runtime input `x` of `[1, c, h, h]`, each
/// output the sum of squares of all `c` channels at its pixel, so the work is
/// elements × channels (c = 4096, h = 32: 1.7·10¹⁰ multiply-adds on a 16 MiB tensor).
pub(crate) fn huge_lrn(c: usize, h: usize) -> Hostile {
    let mut lrn = node("huge_lrn", "LRN", &["x"], &["y"]);
    lrn.attributes = vec![("size".into(), Attribute::Int(2 * c as i64 + 1))];
    let shape = [1, c, h, h];
    Hostile {
        name: "huge_lrn",
        model: model(Graph {
            nodes: vec![lrn],
            inputs: vec![vi("x", DType::F32, &shape)],
            outputs: vec![vi("y", DType::F32, &shape)],
            ..Default::default()
        }),
        inputs: vec![("x", Tensor::F32(ArrayD::from_elem(shape.to_vec(), 0.5)))],
        names: "huge_lrn",
    }
}

/// A loop whose body is cheap (three tiny steps) and whose trip count is the runtime
/// input `M`: long runs made of short steps, for cancellation.
pub(crate) fn short_steps_loop() -> Model {
    let mut body = counting_body("s");
    body.nodes
        .push(node("s_twice", "Add", &["s_x_out", "s_one"], &["s_x2"]));
    body.nodes
        .push(node("s_back", "Sub", &["s_x2", "s_one"], &["s_x3"]));
    body.outputs[1].name = "s_x3".into();
    model(Graph {
        nodes: vec![loop_node("long_loop", "M", "", "x0", "y", body)],
        inputs: vec![vi("M", DType::I64, &[])],
        outputs: vec![vi("y", DType::F32, &[])],
        initializers: vec![("x0".into(), scalar_f32(0.0))],
        ..Default::default()
    })
}

/// Control-flow nodes whose bodies do not match them (refused when planning), each with
/// the text the error must contain.
pub(crate) fn mismatched_bodies() -> Vec<(&'static str, Model, &'static str)> {
    let branch = |op: &str, out: &str, dtype: DType| Graph {
        nodes: vec![node(&format!("{out}_node"), op, &["x"], &[out])],
        outputs: vec![vi(out, dtype, &[])],
        ..Default::default()
    };
    let if_model = |then_g: Graph, else_g: Graph| {
        let mut n = node("bad_if", "If", &["c"], &["y"]);
        n.attributes = vec![
            ("then_branch".into(), Attribute::Graph(Box::new(then_g))),
            ("else_branch".into(), Attribute::Graph(Box::new(else_g))),
        ];
        model(Graph {
            nodes: vec![n],
            inputs: vec![vi("c", DType::Bool, &[]), vi("x", DType::F32, &[])],
            outputs: vec![vi("y", DType::F32, &[])],
            ..Default::default()
        })
    };
    let mut two_outputs = branch("Relu", "t", DType::F32);
    two_outputs
        .nodes
        .push(node("t2_node", "Neg", &["x"], &["t2"]));
    two_outputs.outputs.push(vi("t2", DType::F32, &[]));
    let loop_model = |body: Graph| {
        let mut n = node("bad_loop", "Loop", &["M", "", "x0"], &["y"]);
        n.attributes = vec![("body".into(), Attribute::Graph(Box::new(body)))];
        model(Graph {
            nodes: vec![n],
            inputs: vec![vi("M", DType::I64, &[])],
            outputs: vec![vi("y", DType::F32, &[])],
            initializers: vec![("x0".into(), scalar_f32(0.0))],
            ..Default::default()
        })
    };
    let mut cond_f32 = counting_body("b");
    cond_f32.outputs[0].dtype = Some(DType::F32);
    let mut carried_i64 = counting_body("b");
    carried_i64.outputs[1].dtype = Some(DType::I64);
    let mut missing_output = counting_body("b");
    missing_output.outputs.truncate(1);
    vec![
        (
            "if_output_counts",
            if_model(two_outputs, branch("Neg", "e", DType::F32)),
            "then_branch has 2 outputs, the node has 1",
        ),
        (
            "if_output_types",
            if_model(
                branch("Relu", "t", DType::F32),
                branch("Identity", "e", DType::I64),
            ),
            "output 0 is F32 in then_branch",
        ),
        (
            "loop_condition_type",
            loop_model(cond_f32),
            "condition output",
        ),
        (
            "loop_carried_type",
            loop_model(carried_i64),
            "loop-carried value 0",
        ),
        (
            "loop_missing_output",
            loop_model(missing_output),
            "needs 3 inputs and at least 2 outputs",
        ),
    ]
}

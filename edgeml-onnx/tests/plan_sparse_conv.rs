//! Plans with pruned convolutions: what `Plan::sparse_steps` counts (fused steps
//! once, depthwise never), `Auto` against `prefer_sparse`, fused `Concat` steps, and a
//! deadline that stops a long sparse convolution inside the kernel.

use edgeml_core::DType;
use edgeml_onnx::kernels;
use edgeml_onnx::{Attribute, ModelBuilder, Node, Plan, PlanOptions, SparseMode, ValueInfo};

mod sparse_util;

use sparse_util::{assert_close, ints, pruned, tensor, values};

/// A small CNN: `Conv+Relu` (fused), `Conv+Add` (a residual, fused), a depthwise `Conv`.
fn cnn(zeros: [f64; 3]) -> edgeml_onnx::Model {
    let f = |shape: &[usize], zeros: f64, seed: u32| {
        tensor(shape, pruned(shape.iter().product(), zeros, seed))
    };
    let conv = |ins: &[&str], out: &str| {
        Node::new("Conv", ins, &[out]).with_attr("pads", ints(&[1, 1, 1, 1]))
    };
    ModelBuilder::new(17)
        .input(ValueInfo::tensor(
            "x",
            DType::F32,
            vec![1.into(), 8.into(), 10.into(), 10.into()],
        ))
        .output(ValueInfo::named("y"))
        .initializer("w1", f(&[16, 8, 3, 3], zeros[0], 1))
        .initializer("b1", tensor(&[16], values(16, 2)))
        .initializer("w2", f(&[8, 16, 3, 3], zeros[1], 3))
        .initializer("wd", f(&[8, 1, 3, 3], zeros[2], 4))
        .node(conv(&["x", "w1", "b1"], "c1"))
        .node(Node::new("Relu", &["c1"], &["r1"]))
        .node(conv(&["r1", "w2"], "c2"))
        .node(Node::new("Add", &["c2", "x"], &["s"]))
        .node(conv(&["s", "wd"], "y").with_attr("group", Attribute::Int(8)))
        .build()
        .expect("model")
}

/// `Plan::sparse_steps` counts fused convolutions that run sparse, never a depthwise
/// one; `Auto` follows `prefer_sparse` over the whole weight; the outputs agree.
#[test]
fn plan_counts_sparse_convolutions() {
    let x = tensor(&[1, 8, 10, 10], values(800, 9));
    let run = |m: &edgeml_onnx::Model, mode, threads| {
        let p = Plan::new(m, PlanOptions::with_threads(threads).with_sparse(mode)).expect("plan");
        let y = p.run(&[("x", x.clone())]).expect("run").remove(0).1;
        (p.sparse_steps(), y)
    };
    let m = cnn([0.9, 0.9, 0.9]);
    let (n_dense, dense) = run(&m, SparseMode::Dense, 1);
    let (n_sparse, sparse) = run(&m, SparseMode::Sparse, 1);
    let (n_auto, auto) = run(&m, SparseMode::Auto, 2);
    assert_eq!((n_dense, n_sparse, n_auto), (0, 2, 2));
    assert_close(&dense, &sparse, "sparse");
    assert_eq!(sparse, auto, "2 threads, Auto");
    // Below 80 % zeros the second convolution stays dense under Auto.
    let m = cnn([0.9, 0.5, 0.9]);
    assert!(!kernels::prefer_sparse(16 * 9, 8, 16 * 9 * 8 / 2));
    assert_eq!(run(&m, SparseMode::Auto, 1).0, 1);
}

/// A pruned 3×3 convolution of 768 channels (384 under an emulator) on 96×96, 83 %
/// zeros (8.2 G multiply-adds sparse), stops inside the sparse kernel at a 50 ms
/// deadline with the run's typed error, well before it would end (estimated from a
/// 12×12 input, 1/64 of the work, which then runs and matches the dense plan exactly:
/// sums of multiples of 1/1024).
#[test]
fn a_huge_sparse_conv_stops_at_the_deadline_inside_the_kernel() {
    use edgeml_onnx::RunOptions;
    use std::time::{Duration, Instant};
    let c = if std::env::var_os("EDGEML_TEST_RUNNER").is_some() {
        384
    } else {
        768
    };
    let w = (0..c * c * 9).map(|i| if i % 6 == 0 { 1.0 / 1024.0 } else { 0.0 });
    let dims = vec!["one".into(), c.into(), "h".into(), "w".into()];
    let model = ModelBuilder::new(14)
        .input(ValueInfo::tensor("x", DType::F32, dims))
        .initializer("w", tensor(&[c, c, 3, 3], w.collect()))
        .node(
            Node::new("Conv", &["x", "w"], &["y"])
                .with_name("huge_sparse_conv")
                .with_attr("pads", ints(&[1, 1, 1, 1])),
        )
        .output(ValueInfo::named("y"))
        .build()
        .expect("model");
    let plan = |mode| Plan::new(&model, PlanOptions::with_threads(2).with_sparse(mode));
    let sparse = plan(SparseMode::Auto).expect("plan");
    assert_eq!(sparse.sparse_steps(), 1);
    let (x, small) = (
        tensor(&[1, c, 96, 96], vec![1.0; c * 96 * 96]),
        tensor(&[1, c, 12, 12], vec![1.0; c * 144]),
    );
    let t0 = Instant::now();
    let deadline = RunOptions::new().timeout(Duration::from_millis(50));
    let e = sparse
        .run_with(&[("x", &x)], &deadline)
        .expect_err("stopped");
    let stopped = t0.elapsed();
    assert_eq!(e.kind(), edgeml_core::ErrorKind::DeadlineExceeded, "{e}");
    let msg = e.to_string();
    // Named by the node, and by the sparse kernel's own message.
    let what = format!("a sparse {c}x{} by", c * 9);
    assert!(
        msg.contains("huge_sparse_conv") && msg.contains(&what),
        "{msg}"
    );
    let t0 = Instant::now();
    let got = sparse.run(&[("x", small.clone())]).expect("small runs");
    let full = t0.elapsed() * 64;
    assert!(
        stopped < full / 4,
        "stopped after {stopped:?}; all of it: about {full:?}"
    );
    let dense = plan(SparseMode::Dense).expect("plan");
    assert_eq!(got, dense.run(&[("x", small)]).expect("dense runs"));
}

/// Two pruned convolutions concatenated on channels (one fused step, each writing its
/// channels straight into the output at batch 1): counted once, same outputs.
#[test]
fn conv_concat_runs_sparse() {
    let w = |m: usize, seed| tensor(&[m, 8, 3, 3], pruned(m * 72, 0.9, seed));
    let model = ModelBuilder::new(17)
        .input(ValueInfo::tensor(
            "x",
            DType::F32,
            vec![1.into(), 8.into(), 9.into(), 9.into()],
        ))
        .output(ValueInfo::named("y"))
        .initializer("wa", w(5, 1))
        .initializer("wb", w(11, 2))
        .node(Node::new("Conv", &["x", "wa"], &["a"]).with_attr("pads", ints(&[1, 1, 1, 1])))
        .node(Node::new("Relu", &["a"], &["ra"]))
        .node(Node::new("Conv", &["x", "wb"], &["b"]).with_attr("strides", ints(&[1, 1])))
        .node(Node::new("Conv", &["b", "wa2"], &["c"]).with_attr("pads", ints(&[1, 1, 1, 1])))
        .initializer("wa2", tensor(&[3, 11, 1, 1], pruned(33, 0.9, 3)))
        .node(Node::new("Concat", &["ra", "c"], &["y"]).with_attr("axis", Attribute::Int(1)))
        .build()
        .expect("model");
    let x = tensor(&[1, 8, 9, 9], values(648, 5));
    let run = |mode| {
        let p = Plan::new(&model, PlanOptions::with_threads(1).with_sparse(mode)).expect("plan");
        let steps = (p.sparse_steps(), p.num_steps());
        (steps, p.run(&[("x", x.clone())]).expect("run").remove(0).1)
    };
    // Two steps: the convolution feeding the chain, then the fused Concat step.
    let ((ns, s), (nd, d)) = (run(SparseMode::Sparse), run(SparseMode::Dense));
    assert_eq!((ns, nd), ((2, 2), (0, 2)));
    assert_eq!(s.shape(), [1, 8, 9, 9]);
    assert_close(&s, &d, "concat");
}

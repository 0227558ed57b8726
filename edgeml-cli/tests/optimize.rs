//! `edgeml optimize`: the written model computes what the original did, the report
//! shows what changed, a second run changes nothing, bad input fails cleanly.

use edgeml_core::DType;
use edgeml_onnx::{
    Attribute, Dim, GraphOptLevel, Model, ModelBuilder, Node, Plan, PlanOptions, Tensor, ValueInfo,
};
use ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn edgeml() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edgeml"));
    c.env_remove("RUST_LOG");
    c
}

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(rel)
}

fn f32s(shape: &[usize], seed: u32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n as u32)
        .map(|i| ((i.wrapping_add(seed * 131)).wrapping_mul(2654435761) >> 8) % 1000)
        .map(|h| h as f32 / 500.0 - 1.0)
        .collect();
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape"))
}

fn vi(name: &str, shape: &[usize]) -> ValueInfo {
    ValueInfo::tensor(
        name,
        DType::F32,
        shape.iter().map(|&d| Dim::from(d)).collect(),
    )
}

/// Conv → BatchNormalization → Relu → Mul by a `Constant` → Identity (the scale after
/// the Relu, where it cannot join the Conv).
fn conv_bn_model() -> Model {
    let abs = |t: Tensor| match t {
        Tensor::F32(a) => Tensor::F32(a.mapv(|x| x.abs() + 0.1)),
        t => t,
    };
    ModelBuilder::new(13)
        .input(vi("x", &[1, 2, 6, 6]))
        .initializer("w", f32s(&[3, 2, 3, 3], 1))
        .initializer("s", f32s(&[3], 2))
        .initializer("b", f32s(&[3], 3))
        .initializer("m", f32s(&[3], 4))
        .initializer("v", abs(f32s(&[3], 5)))
        .node(Node::new("Conv", &["x", "w"], &["c"]))
        .node(Node::new(
            "BatchNormalization",
            &["c", "s", "b", "m", "v"],
            &["n"],
        ))
        .node(Node::new("Relu", &["n"], &["r"]))
        .node(Node::new("Constant", &[], &["two"]).with_attr("value_float", Attribute::Float(2.0)))
        .node(Node::new("Mul", &["r", "two"], &["n2"]))
        .node(Node::new("Identity", &["n2"], &["y"]))
        .output(vi("y", &[1, 3, 4, 4]))
        .build()
        .expect("model")
}

fn run(m: &Model) -> Vec<(String, Tensor)> {
    let mut o = PlanOptions::with_threads(1);
    o.optimization = GraphOptLevel::Disabled;
    Plan::new(m, o)
        .expect("plan")
        .run(&[("x", f32s(&[1, 2, 6, 6], 9))])
        .expect("run")
}

fn optimize(input: &Path, output: &Path, extra: &[&str]) -> Output {
    edgeml()
        .arg("optimize")
        .arg(input)
        .arg("-o")
        .arg(output)
        .args(extra)
        .output()
        .expect("run edgeml")
}

fn assert_close(got: &[(String, Tensor)], want: &[(String, Tensor)]) {
    assert_eq!(got.len(), want.len());
    for ((gn, g), (wn, w)) in got.iter().zip(want) {
        assert_eq!(gn, wn);
        let (g, w) = (g.as_f32().expect("f32"), w.as_f32().expect("f32"));
        assert_eq!(g.shape(), w.shape());
        for (a, b) in g.iter().zip(w) {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
        }
    }
}

#[test]
fn optimize_folds_and_reports_and_is_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, out, again) = (
        dir.path().join("m.onnx"),
        dir.path().join("o.onnx"),
        dir.path().join("o2.onnx"),
    );
    let m = conv_bn_model();
    m.save(&src).expect("save");
    let o = optimize(&src, &out, &[]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line = |op: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(op))
            .map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
    };
    assert_eq!(
        line("BatchNormalization").as_deref(),
        Some("1 0"),
        "{stdout}"
    );
    assert_eq!(line("Identity").as_deref(), Some("1 0"), "{stdout}");
    assert_eq!(line("Conv").as_deref(), Some("1 1"), "{stdout}");
    assert!(stdout.contains("nodes: 6 -> 3;"), "{stdout}");
    assert!(stdout.contains("file: "), "{stdout}");
    let opt = Model::load(&out).expect("load optimized");
    let ops: Vec<&str> = opt.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["Conv", "Relu", "Mul"]);
    assert_eq!(opt.graph.outputs[0].name, "y");
    assert_close(&run(&opt), &run(&m));

    let o = optimize(&out, &again, &[]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("rewrites: none"));
    assert_eq!(
        std::fs::read(&out).expect("o"),
        std::fs::read(&again).expect("o2"),
        "a second optimize changed the model"
    );
}

#[test]
fn extended_level_writes_fused_conv_and_basic_never_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, basic, ext) = (
        dir.path().join("m.onnx"),
        dir.path().join("b.onnx"),
        dir.path().join("e.onnx"),
    );
    let mut m = conv_bn_model();
    // Conv → BN → Relu directly, so that the Relu can join the Conv.
    m.graph
        .nodes
        .retain(|n| n.op_type != "Mul" && n.op_type != "Constant");
    m.graph.nodes[3].inputs = vec!["r".into()];
    m.save(&src).expect("save");
    assert!(optimize(&src, &basic, &[]).status.success());
    let o = optimize(&src, &ext, &["--level", "extended"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("com.microsoft:FusedConv"));
    let b = Model::load(&basic).expect("basic");
    assert!(b.graph.nodes.iter().all(|n| n.domain.is_empty()));
    let e = Model::load(&ext).expect("extended");
    let ops: Vec<&str> = e.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["FusedConv"]);
    assert_close(&run(&e), &run(&m));
}

#[test]
fn fold_limit_and_shape_inference_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, out) = (dir.path().join("m.onnx"), dir.path().join("o.onnx"));
    let mut m = conv_bn_model();
    // A constant chain: Exp(w) feeds the Conv instead of w.
    m.graph.nodes.insert(0, Node::new("Exp", &["w"], &["ew"]));
    m.graph.nodes[1].inputs[1] = "ew".into();
    m.save(&src).expect("save");
    let o = optimize(&src, &out, &["--max-fold-elements", "10", "--infer-shapes"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let opt = Model::load(&out).expect("load");
    // Exp's output (54 elements) is above the limit: Exp stays, and so does the BN
    // (its Conv's weights are not constant).
    let ops: Vec<&str> = opt.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["Exp", "Conv", "BatchNormalization", "Relu", "Mul"]);
    let c = opt
        .graph
        .value_info
        .iter()
        .find(|v| v.name == "c")
        .expect("inferred value_info for c");
    assert_eq!(
        c.shape,
        Some(vec![
            Dim::Known(1),
            Dim::Known(3),
            Dim::Known(4),
            Dim::Known(4)
        ])
    );
    assert_close(&run(&opt), &run(&m));
}

/// The input's `value_info` entries of surviving values stay, those of removed values
/// go, and only `--infer-shapes` adds entries.
#[test]
fn value_info_of_surviving_values_is_kept_and_inference_is_opt_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, out) = (dir.path().join("m.onnx"), dir.path().join("o.onnx"));
    let mut m = conv_bn_model();
    // c disappears (the BatchNormalization folds into the Conv, which writes n); r
    // survives; n2 disappears (the Mul writes the graph output y).
    m.graph.value_info = vec![
        vi("c", &[1, 3, 4, 4]),
        vi("r", &[1, 3, 4, 4]),
        vi("n2", &[1, 3, 4, 4]),
    ];
    m.save(&src).expect("save");
    let names = |extra: &[&str]| -> Vec<String> {
        let o = optimize(&src, &out, extra);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let opt = Model::load(&out).expect("load");
        assert_close(&run(&opt), &run(&m));
        let mut v: Vec<String> = opt
            .graph
            .value_info
            .iter()
            .map(|v| v.name.clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&[]), ["r"]);
    assert_eq!(names(&["--infer-shapes"]), ["n", "r"]);
}

#[test]
fn bad_models_fail_with_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    for bad in [
        "bad/cycle.onnx",
        "bad/missing_input.onnx",
        "bad/garbage.onnx",
    ] {
        let out = dir.path().join("o.onnx");
        let o = optimize(&fixture(bad), &out, &[]);
        assert_eq!(o.status.code(), Some(1), "{bad}");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(stderr.lines().count(), 1, "{bad}: {stderr}");
        assert!(stderr.starts_with("edgeml: error: "), "{stderr}");
        assert!(!out.exists(), "{bad}: output written");
    }
    let o = optimize(
        &fixture("digits/cnn.onnx"),
        Path::new("/nonexistent/dir/o.onnx"),
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
}

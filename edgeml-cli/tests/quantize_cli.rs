//! `edgeml quantize`: a single `.npy` and a directory of batches both calibrate; the
//! output loads and is smaller; the JSON report lists what happened; a calibration
//! tensor of the wrong shape fails with status 1 and writes nothing; the calibration
//! methods, `-v` SQNR, `--mode dynamic`, `--mode fp16` (with `--fp16-io` and
//! `--exclude`), `--mode fp16-weights` and `--mode bf16` run; static mode prints the
//! output SQNR, `--target-sqnr` keeps layers in float, `--bias-correction`,
//! `--equalize`, `--symmetric-activations` and `--reduce-range` reach the library;
//! `.npz` calibration files (stored or compressed, one or a directory) calibrate and a
//! wrong key is refused; `--format qoperator` and `--contrib-ops` write quantized
//! operators, and misplaced format flags are refused.

use edgeml_onnx::Model;
use ndarray::{ArrayD, Axis, s};
use ndarray_npy::{read_npy, write_npy};
use std::path::PathBuf;
use std::process::Command;

fn digits() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/digits")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgeml_quantize_cli_{}_{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

fn edgeml() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edgeml"));
    c.env_remove("RUST_LOG").env_remove("EDGEML_KERNELS");
    c
}

#[test]
fn quantizes_from_a_file_and_from_a_directory() {
    let d = tmp("ok");
    let x: ArrayD<f32> = read_npy(digits().join("x_test.npy")).expect("x");
    let calib = d.join("calib.npy");
    write_npy(&calib, &x.slice(s![0..40, .., .., ..]).to_owned()).expect("write");
    let batches = d.join("batches");
    std::fs::create_dir_all(&batches).expect("dir");
    for i in 0..3 {
        let b = x
            .slice_axis(Axis(0), (i * 10..i * 10 + 10).into())
            .to_owned();
        write_npy(batches.join(format!("b{i}.npy")), &b).expect("write");
    }
    let model = digits().join("cnn.onnx");
    for (cal, extra) in [(&calib, vec!["--per-channel"]), (&batches, vec![])] {
        let out = d.join("q.onnx");
        let report = d.join("r.json");
        let o = edgeml()
            .arg("quantize")
            .arg(&model)
            .arg("-o")
            .arg(&out)
            .arg("--calibration")
            .arg(cal)
            .args(&extra)
            .arg("--report")
            .arg(&report)
            .output()
            .expect("run");
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(stdout.contains("quantized 1 Conv, 1 Gemm"), "{stdout}");
        Model::load(&out).expect("the output loads");
        assert!(
            std::fs::metadata(&out).expect("out").len()
                < std::fs::metadata(&model).expect("in").len() / 2
        );
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
        assert_eq!(r["quantized"].as_array().map(Vec::len), Some(2), "{r}");
        assert!(r["activations"].as_array().is_some_and(|a| !a.is_empty()));
    }
    // Weight-only needs no calibration; static without it is an error.
    let out = d.join("w.onnx");
    let o = edgeml()
        .args(["quantize", "--mode", "weight-only", "-o"])
        .arg(&out)
        .arg(&model)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Model::load(&out).expect("the output loads");
    let o = edgeml()
        .arg("quantize")
        .arg(&model)
        .arg("-o")
        .arg(&out)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn wrong_shape_calibration_fails_and_writes_nothing() {
    let d = tmp("bad");
    let calib = d.join("calib.npy");
    write_npy(&calib, &ndarray::Array2::<f32>::zeros((10, 64))).expect("write");
    let out = d.join("q.onnx");
    let o = edgeml()
        .arg("quantize")
        .arg(digits().join("cnn.onnx"))
        .arg("-o")
        .arg(&out)
        .arg("--calibration")
        .arg(&calib)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("shape"), "{err}");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn new_modes_and_methods_run_from_the_shell() {
    let d = tmp("modes");
    let x: ArrayD<f32> = read_npy(digits().join("x_test.npy")).expect("x");
    let calib = d.join("calib.npy");
    write_npy(&calib, &x.slice(s![0..40, .., .., ..]).to_owned()).expect("write");
    let model = digits().join("cnn.onnx");
    let out = d.join("q.onnx");
    let ops = |p: &PathBuf| -> Vec<String> {
        Model::load(p)
            .expect("the output loads")
            .graph
            .nodes
            .iter()
            .map(|n| n.op_type.clone())
            .collect()
    };
    for method in ["entropy", "mse", "moving-average", "percentile"] {
        let report = d.join("r.json");
        let o = edgeml()
            .arg("-v")
            .arg("quantize")
            .arg(&model)
            .arg("-o")
            .arg(&out)
            .arg("--calibration")
            .arg(&calib)
            .args(["--method", method, "--report"])
            .arg(&report)
            .output()
            .expect("run");
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{method}: {stdout}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        // -v prints the per-layer SQNR, --report holds it.
        assert!(stdout.contains("SQNR on the calibration data"), "{stdout}");
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
        let layers = r["layers"].as_array().expect("layers");
        assert_eq!(layers.len(), 2, "{r}");
        assert!(
            layers
                .iter()
                .all(|l| l["sqnr_db"].as_f64().is_some_and(|v| v > 10.0)),
            "{r}"
        );
        assert!(ops(&out).iter().any(|o| o == "QuantizeLinear"));
        // The range check ran (or the method kept every full range) and says so.
        let check = &r["range_check"];
        if check.is_null() {
            assert!(!stdout.contains("ranges    "), "{stdout}");
        } else {
            assert!(
                ["method", "full_range"].contains(&check["kept"].as_str().unwrap_or("")),
                "{check}"
            );
            assert!(check["method_sqnr_db"].as_f64().is_some(), "{check}");
            assert!(stdout.contains("ranges    "), "{stdout}");
        }
    }
    // `edgeml quantize` of the CNN with `extra` flags: its stdout and JSON report.
    let with_report = |extra: &[&str]| {
        let report = d.join("r.json");
        let o = edgeml()
            .arg("quantize")
            .arg(&model)
            .arg("-o")
            .arg(&out)
            .arg("--calibration")
            .arg(&calib)
            .args(extra)
            .arg("--report")
            .arg(&report)
            .output()
            .expect("run");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
        (String::from_utf8_lossy(&o.stdout).into_owned(), r)
    };
    // Entropy clips the CNN's inner tensors; --no-range-check keeps its ranges unchecked.
    for (extra, checked) in [
        (&["--method", "entropy"][..], true),
        (&["--method", "entropy", "--no-range-check"][..], false),
    ] {
        let (_, r) = with_report(extra);
        assert_eq!(!r["range_check"].is_null(), checked, "{extra:?}: {r}");
    }
    // --bias-check measures with and without bias correction and reports both.
    let (stdout, r) = with_report(&["--bias-check"]);
    assert!(stdout.contains("bias      correction"), "{stdout}");
    let kept = r["bias_check"]["kept_correction"]
        .as_bool()
        .expect("bias_check reported");
    assert_eq!(
        kept,
        !r["bias_corrections"].as_array().expect("array").is_empty(),
        "{r}"
    );
    let o = edgeml()
        .args(["quantize", "--bias-check", "--bias-correction", "-o"])
        .arg(&out)
        .arg(&model)
        .output()
        .expect("run");
    assert!(!o.status.success());
    let o = edgeml()
        .args(["quantize", "--mode", "dynamic", "--no-range-check", "-o"])
        .arg(&out)
        .arg(&model)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--no-range-check"));
    let o = edgeml()
        .args(["quantize", "--mode", "dynamic", "--per-channel", "-o"])
        .arg(&out)
        .arg(&model)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = ops(&out);
    for op in ["DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"] {
        assert!(got.iter().any(|o| o == op), "{op} missing: {got:?}");
    }
    // Float16 weights only: one Cast per weight. Float16 compute: one Cast at the
    // input and one at the output, or none with --fp16-io; --exclude keeps the Gemm
    // float32 between two more.
    for (extra, casts) in [
        (vec!["--mode", "fp16-weights"], 4),
        (vec!["--mode", "fp16"], 2),
        (vec!["--mode", "fp16", "--fp16-io"], 0),
        (vec!["--mode", "fp16", "--exclude", "Gemm"], 4),
    ] {
        let o = edgeml()
            .arg("quantize")
            .args(&extra)
            .arg("-o")
            .arg(&out)
            .arg(&model)
            .output()
            .expect("run");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let stdout = String::from_utf8_lossy(&o.stdout);
        let converted = if extra.contains(&"Gemm") { 2 } else { 4 };
        assert!(
            stdout.contains(&format!("float16   {converted} initializers")),
            "{extra:?}: {stdout}"
        );
        let n = ops(&out).iter().filter(|o| *o == "Cast").count();
        assert_eq!(n, casts, "{extra:?}");
    }
    for bad in [
        vec!["--mode", "fp16-weights", "--exclude", "Gemm"],
        vec!["--mode", "bf16", "--fp16-io"],
    ] {
        let o = edgeml()
            .arg("quantize")
            .args(&bad)
            .arg("-o")
            .arg(&out)
            .arg(&model)
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(1), "{bad:?}");
    }
    let o = edgeml()
        .args(["quantize", "--mode", "bf16", "-o"])
        .arg(&out)
        .arg(&model)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("bfloat16  4 initializers"), "{stdout}");
    let m = Model::load(&out).expect("bf16 model");
    let bf16 = m
        .graph
        .initializers
        .iter()
        .filter(|(_, t)| t.dtype() == edgeml_core::DType::BF16)
        .count();
    assert_eq!(bf16, 4);
    let _ = std::fs::remove_dir_all(&d);
}

fn report_of(path: &PathBuf) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report")).expect("json")
}

#[test]
fn target_sqnr_bias_correction_and_range_flags() {
    let d = tmp("sqnr");
    let x: ArrayD<f32> = read_npy(digits().join("x_test.npy")).expect("x");
    let calib = d.join("calib.npy");
    write_npy(&calib, &x.slice(s![0..100, .., .., ..]).to_owned()).expect("write");
    let model = digits().join("cnn.onnx");
    let out = d.join("q.onnx");
    let report = d.join("r.json");
    let run = |extra: &[&str]| {
        let o = edgeml()
            .arg("quantize")
            .arg(&model)
            .arg("-o")
            .arg(&out)
            .arg("--calibration")
            .arg(&calib)
            .arg("--report")
            .arg(&report)
            .args(extra)
            .output()
            .expect("run");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // The summary always has the output SQNR and the worst layers.
    let (code, stdout, stderr) = run(&[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("dB at the outputs"), "{stdout}");
    assert!(stdout.contains("worst layers first"), "{stdout}");
    let r = report_of(&report);
    let base = r["output_sqnr_db"].as_f64().expect("output SQNR");
    assert!(r["kept_float"].as_array().is_some_and(Vec::is_empty), "{r}");

    // A target above the all-INT8 SQNR keeps at least one layer in float.
    let target = format!("{}", base + 3.0);
    let (code, stdout, stderr) = run(&["--target-sqnr", &target]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("kept float for the target"), "{stdout}");
    assert!(stdout.contains("met)"), "{stdout}");
    let r = report_of(&report);
    let kept = r["kept_float"].as_array().expect("kept_float");
    assert!(!kept.is_empty(), "{r}");
    let quantized = r["quantized"].as_array().map_or(0, Vec::len);
    // null: every layer float, the outputs exact.
    let got = r["output_sqnr_db"].as_f64().unwrap_or(f64::INFINITY);
    assert!(got >= base + 3.0 || quantized == 0, "{r}");
    assert_eq!(quantized + kept.len(), 2, "{r}");

    let (code, stdout, stderr) = run(&["--bias-correction", "--equalize"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    // The digits CNN has a single Conv: no pair to equalize.
    assert!(!stdout.contains("equalized"), "{stdout}");
    assert!(stdout.contains("bias      2 corrected"), "{stdout}");
    let r = report_of(&report);
    assert_eq!(
        r["bias_corrections"].as_array().map(Vec::len),
        Some(2),
        "{r}"
    );

    // Symmetric activations keep the Relu; reduce-range halves the codes: u8
    // activations in [0, 127] (symmetric: zero point 64), i8 weights in [-64, 64] (onnxruntime's ranges).
    let (code, stdout, stderr) = run(&["--symmetric-activations", "--reduce-range"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stdout.contains("folded"), "{stdout}");
    let q = Model::load(&out).expect("loads");
    assert!(q.graph.nodes.iter().any(|n| n.op_type == "Relu"));
    let r = report_of(&report);
    assert!(
        r["activations"]
            .as_array()
            .expect("activations")
            .iter()
            .all(|a| a["zero_point"].as_i64() == Some(64)),
        "{r}"
    );
    for (_, t) in &q.graph.initializers {
        if let edgeml_onnx::Tensor::I8(w) = t {
            assert!(w.iter().all(|v| (-64..=64).contains(v)), "{w:?}");
        }
    }

    // Bad targets and static-only flags elsewhere fail with status 1.
    for bad in ["NaN", "-1", "inf"] {
        let (code, stdout, stderr) = run(&["--target-sqnr", bad]);
        assert_eq!(code, Some(1), "{bad}: {stdout}{stderr}");
        assert!(stderr.contains("target SQNR"), "{bad}: {stderr}");
    }
    for (mode, flag) in [
        ("dynamic", "--bias-correction"),
        ("fp16", "--equalize"),
        ("weight-only", "--symmetric-activations"),
        ("fp16", "--reduce-range"),
    ] {
        let o = edgeml()
            .args(["quantize", "--mode", mode, flag, "-o"])
            .arg(&out)
            .arg(&model)
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(1), "{mode} {flag}");
    }

    // A Conv -> Relu -> Conv model: --equalize reports the pair.
    let pair = d.join("pair.onnx");
    conv_pair().save(&pair).expect("save");
    let pair_cal = d.join("pair_cal.npy");
    let xs = ArrayD::from_shape_fn(ndarray::IxDyn(&[20, 2, 6, 6]), |i| {
        ((i[0] * 7 + i[1] * 5 + i[2] * 3 + i[3]) % 13) as f32 * 0.25 - 1.0
    });
    write_npy(&pair_cal, &xs).expect("write");
    let o = edgeml()
        .arg("quantize")
        .arg(&pair)
        .arg("-o")
        .arg(&out)
        .arg("--calibration")
        .arg(&pair_cal)
        .arg("--equalize")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("equalized 1 Conv pairs"), "{stdout}");
    let _ = std::fs::remove_dir_all(&d);
}

/// `x → Conv(2→4, 3×3) → Relu → Conv(4→3, 1×1) → y`, channel ranges far apart.
fn conv_pair() -> Model {
    use edgeml_onnx::{Graph, Node, OpsetImport, Tensor, ValueInfo};
    let gain = [0.01f32, 1.0, 20.0, 0.2];
    let w1 = ArrayD::from_shape_fn(ndarray::IxDyn(&[4, 2, 3, 3]), |i| {
        ((i[1] * 9 + i[2] * 3 + i[3]) as f32 * 0.7).sin() * gain[i[0]]
    });
    let w2 = ArrayD::from_shape_fn(ndarray::IxDyn(&[3, 4, 1, 1]), |i| {
        ((i[0] * 4 + i[1]) as f32).cos()
    });
    let node = |op: &str, inputs: &[&str], out: &str| Node {
        op_type: op.into(),
        inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
        outputs: vec![out.into()],
        ..Node::default()
    };
    let vi = |n: &str| ValueInfo {
        name: n.into(),
        ..ValueInfo::default()
    };
    Model {
        ir_version: 8,
        opset_imports: vec![OpsetImport {
            domain: String::new(),
            version: 13,
        }],
        graph: Graph {
            nodes: vec![
                node("Conv", &["x", "w1"], "c"),
                node("Relu", &["c"], "r"),
                node("Conv", &["r", "w2"], "y"),
            ],
            inputs: vec![vi("x")],
            outputs: vec![vi("y")],
            initializers: vec![
                ("w1".into(), Tensor::F32(w1)),
                ("w2".into(), Tensor::F32(w2)),
            ],
            ..Graph::default()
        },
        ..Model::default()
    }
}

#[test]
fn npz_calibration_and_qoperator_formats() {
    use ndarray_npy::NpzWriter;
    let d = tmp("npz");
    let x: ArrayD<f32> = read_npy(digits().join("x_test.npy")).expect("x");
    let first = |n: usize| x.slice(s![0..n, .., .., ..]).to_owned();
    // One file of samples, stored and compressed, and a directory of batch files.
    let stored = d.join("calib.npz");
    let mut w = NpzWriter::new(std::fs::File::create(&stored).expect("create"));
    w.add_array("x", &first(40)).expect("add");
    w.finish().expect("finish");
    let packed = d.join("calib_compressed.npz");
    let mut w = NpzWriter::new_compressed(std::fs::File::create(&packed).expect("create"));
    w.add_array("x.npy", &first(40)).expect("add");
    w.finish().expect("finish");
    let batches = d.join("batches");
    std::fs::create_dir_all(&batches).expect("dir");
    for i in 0..2 {
        let mut w =
            NpzWriter::new(std::fs::File::create(batches.join(format!("b{i}.npz"))).expect("f"));
        w.add_array(
            "x",
            &x.slice(s![i * 10..i * 10 + 10, .., .., ..]).to_owned(),
        )
        .expect("add");
        w.finish().expect("finish");
    }
    let model = digits().join("cnn.onnx");
    let out = d.join("q.onnx");
    let quantize = |cal: &PathBuf, extra: &[&str]| {
        let _ = std::fs::remove_file(&out);
        edgeml()
            .arg("quantize")
            .arg(&model)
            .arg("-o")
            .arg(&out)
            .arg("--calibration")
            .arg(cal)
            .args(extra)
            .output()
            .expect("run")
    };
    for (cal, batches_seen) in [(&stored, 4), (&packed, 4), (&batches, 2)] {
        let o = quantize(cal, &[]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            stdout.contains(&format!("calibrated on {batches_seen} batches")),
            "{stdout}"
        );
    }
    // A key that is not the input's name: status 1, the keys listed, nothing written.
    let wrong = d.join("wrong.npz");
    let mut w = NpzWriter::new(std::fs::File::create(&wrong).expect("create"));
    w.add_array("images", &first(10)).expect("add");
    w.finish().expect("finish");
    let o = quantize(&wrong, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no array named \"x\"") && stderr.contains("images"),
        "{stderr}"
    );
    assert!(!out.exists());
    // QOperator, standard and with contrib operators.
    for (extra, want, unwanted) in [
        (
            vec!["--format", "qoperator"],
            "fused 1 QLinearConv",
            "QGemm",
        ),
        (
            vec!["--format", "qoperator", "--contrib-ops"],
            "1 QGemm, 1 QLinearConv",
            "com.edgeml",
        ),
    ] {
        let o = quantize(&stored, &extra);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(stdout.contains(want), "{extra:?}: {stdout}");
        let q = Model::load(&out).expect("the output loads");
        assert!(q.graph.nodes.iter().any(|n| n.op_type == "QLinearConv"));
        assert!(
            !q.graph
                .nodes
                .iter()
                .any(|n| n.op_type == unwanted || n.domain == unwanted),
            "{extra:?}"
        );
    }
    // Flags that do not fit the mode are refused.
    for extra in [
        vec!["--contrib-ops"],
        vec!["--format", "qdq", "--contrib-ops"],
        vec!["--mode", "dynamic", "--format", "qoperator"],
    ] {
        let o = quantize(&stored, &extra);
        assert_eq!(o.status.code(), Some(1), "{extra:?}");
        assert!(!out.exists(), "{extra:?}");
    }
    // Dynamic mode with contrib operators: DynamicQuantizeMatMul for the MLP.
    let o = edgeml()
        .arg("quantize")
        .arg(digits().join("mlp.onnx"))
        .arg("-o")
        .arg(&out)
        .args(["--mode", "dynamic", "--contrib-ops"])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let q = Model::load(&out).expect("loads");
    let n = q
        .graph
        .nodes
        .iter()
        .filter(|n| n.op_type == "DynamicQuantizeMatMul" && n.domain == "com.microsoft")
        .count();
    assert_eq!(n, 2);
}

/// The digits CNN fed as two flat halves (`top`, `bottom`, `[N, 32]` each), joined and
/// reshaped to `[N, 1, 8, 8]`; with `shape_input` the reshape's target is a third,
/// int64 input `shape`, else a constant.
fn two_input_cnn(shape_input: bool) -> Model {
    use edgeml_core::DType;
    use edgeml_onnx::{Attribute, Dim, Node, Tensor, ValueInfo};
    let mut m = Model::load(digits().join("cnn.onnx")).expect("load");
    let g = &mut m.graph;
    let flat = |name: &str| {
        ValueInfo::tensor(
            name,
            DType::F32,
            vec![Dim::Symbolic("N".into()), Dim::Known(32)],
        )
    };
    g.inputs.retain(|i| i.name != "x");
    g.inputs.insert(0, flat("top"));
    g.inputs.insert(1, flat("bottom"));
    let target = ndarray::arr1(&[-1i64, 1, 8, 8]).into_dyn();
    if shape_input {
        g.inputs
            .push(ValueInfo::tensor("shape", DType::I64, vec![Dim::Known(4)]));
    } else {
        g.initializers.push(("shape".into(), Tensor::I64(target)));
    }
    g.nodes.insert(
        0,
        Node::new("Concat", &["top", "bottom"], &["flat"]).with_attr("axis", Attribute::Int(1)),
    );
    g.nodes
        .insert(1, Node::new("Reshape", &["flat", "shape"], &["x"]));
    m
}

#[test]
fn multi_input_models_calibrate_from_npz_with_an_array_per_input() {
    use ndarray_npy::NpzWriter;
    let d = tmp("multi");
    let x: ArrayD<f32> = read_npy(digits().join("x_test.npy")).expect("x");
    let flat = x.into_shape_with_order((450, 64)).expect("flat");
    let rows =
        |a: usize, b: usize, cols: std::ops::Range<usize>| flat.slice(s![a..b, cols]).to_owned();
    let write = |path: &PathBuf, arrays: &[(&str, ArrayD<f32>)], shape: bool| {
        let mut w = NpzWriter::new(std::fs::File::create(path).expect("create"));
        for (k, a) in arrays {
            w.add_array(*k, a).expect("add");
        }
        if shape {
            w.add_array("shape", &ndarray::arr1(&[-1i64, 1, 8, 8]))
                .expect("add");
        }
        w.finish().expect("finish");
    };
    let quantize = |model: &PathBuf, cal: &PathBuf| {
        let out = d.join("q.onnx");
        let _ = std::fs::remove_file(&out);
        let o = edgeml()
            .arg("quantize")
            .arg(model)
            .arg("-o")
            .arg(&out)
            .arg("--calibration")
            .arg(cal)
            .output()
            .expect("run");
        (o, out)
    };
    // Two float inputs, one file of samples cut into batches of 10.
    let two = d.join("two.onnx");
    two_input_cnn(false).save(&two).expect("save");
    let cal = d.join("cal.npz");
    let halves = |n: usize| {
        [
            ("top", rows(0, n, 0..32).into_dyn()),
            ("bottom", rows(0, n, 32..64).into_dyn()),
        ]
    };
    write(&cal, &halves(40), false);
    let (o, out) = quantize(&two, &cal);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("calibrated on 4 batches"), "{stdout}");
    let q = Model::load(&out).expect("the output loads");
    assert!(q.graph.nodes.iter().any(|n| n.op_type == "QuantizeLinear"));
    // With an int64 input too: a directory of batch files, each holding every input.
    let three = d.join("three.onnx");
    two_input_cnn(true).save(&three).expect("save");
    let dir = d.join("batches");
    std::fs::create_dir_all(&dir).expect("dir");
    for i in 0..3 {
        let b = [
            ("top", rows(i * 10, i * 10 + 10, 0..32).into_dyn()),
            ("bottom", rows(i * 10, i * 10 + 10, 32..64).into_dyn()),
        ];
        write(&dir.join(format!("b{i}.npz")), &b, true);
    }
    let (o, _) = quantize(&three, &dir);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("calibrated on 3 batches"), "{stdout}");
    // Refused, status 1, nothing written: a .npy for a two-input model, a missing
    // input, halves of different lengths.
    let npy = d.join("x.npy");
    write_npy(&npy, &rows(0, 10, 0..64)).expect("write");
    let missing = d.join("missing.npz");
    write(&missing, &halves(10)[..1], false);
    let uneven = d.join("uneven.npz");
    write(
        &uneven,
        &[
            ("top", rows(0, 20, 0..32).into_dyn()),
            ("bottom", rows(0, 10, 32..64).into_dyn()),
        ],
        false,
    );
    for (cal, words) in [
        (&npy, vec!["a .npy holds one array", "top, bottom"]),
        (&missing, vec!["no array named \"bottom\""]),
        (
            &uneven,
            vec!["different numbers of samples", "top: 20", "bottom: 10"],
        ),
    ] {
        let (o, out) = quantize(&two, cal);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{stderr}");
        for w in words {
            assert!(stderr.contains(w), "{cal:?}: {stderr}");
        }
        assert!(!out.exists());
    }
}

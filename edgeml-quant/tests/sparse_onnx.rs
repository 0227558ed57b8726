//! The sparse INT8 product inside plans: the digits MLP, pruned to 90 % zeros per
//! weight (magnitude, as `edgeml_prune` does unstructured) and then quantized by
//! `quantize_static` (QDQ, per tensor and per channel), runs both of its fused INT8
//! `MatMul`s sparse under `SparseMode::Sparse`, none under `Dense` and `Auto` (their
//! ~90 % is below `Auto`'s 95 % on `avx2`, and the other paths keep INT8 weights dense
//! under `Auto`), and every mode gives bit-identical probabilities, on one and two
//! threads. `Auto` follows the per-path
//! rule (`sparse::prefer_sparse_int8`): a `QLinearMatMul` and a `MatMulInteger` with a
//! 95 %-or-more-zero weight run sparse on the `avx2` INT8 path (forced in a child
//! process) and dense on the others, with the dense outputs. A deadline stops a long
//! sparse `MatMulInteger` from inside the kernel.
#![cfg(feature = "onnx")]
#![allow(missing_docs, clippy::unwrap_used)]

use edgeml_core::{DType, ErrorKind};
use edgeml_onnx::{
    Dim, Model, ModelBuilder, Node, Plan, PlanOptions, RunOptions, SparseMode, Tensor, ValueInfo,
};
use edgeml_quant::Isa;
use edgeml_quant::quantize::{Config, quantize_static};
use ndarray::{ArrayD, IxDyn};
use std::time::Instant;

#[path = "../../tests/common/digits.rs"]
mod digits;

/// Sets the `share` of smallest-magnitude entries of every 2-D float initializer to 0.
fn prune(m: &mut Model, share: f64) -> Vec<String> {
    let names: Vec<String> = m
        .graph
        .initializers
        .iter()
        .filter(|(_, t)| t.shape().len() == 2 && t.as_f32().is_some())
        .map(|(n, _)| n.clone())
        .collect();
    for name in &names {
        let mut w = m.graph.initializer(name).unwrap().as_f32().unwrap().clone();
        let mut mags: Vec<f32> = w.iter().map(|v| v.abs()).collect();
        mags.sort_by(f32::total_cmp);
        let cut = mags[((mags.len() as f64 * share) as usize).min(mags.len() - 1)];
        w.mapv_inplace(|v| if v.abs() < cut { 0.0 } else { v });
        let zeros = w.iter().filter(|&&v| v == 0.0).count();
        assert!(
            zeros as f64 >= 0.89 * w.len() as f64,
            "{name}: {zeros} zeros"
        );
        m.graph.set_initializer(name, Tensor::F32(w));
    }
    names
}

#[test]
fn pruned_quantized_mlp_runs_sparse_with_dense_outputs() {
    let mut model = Model::load(digits::dir().join("mlp.onnx")).unwrap();
    let pruned = prune(&mut model, 0.9);
    assert_eq!(pruned.len(), 2, "the MLP's two weights: {pruned:?}");
    let (x, _) = digits::test_set();
    let one = x.slice_axis(ndarray::Axis(0), (3..4).into()).to_owned();
    for per_channel in [false, true] {
        let config = Config {
            per_channel,
            ..Config::default()
        };
        let (mut q, _) = quantize_static(&model, &digits::calibration(&x), &config).unwrap();
        let (registry, fused) = edgeml_quant::onnx::prepare(&mut q);
        assert!(fused.total() > 0);
        let run = |mode: SparseMode, threads: usize, x: &ArrayD<f32>| {
            let opts = PlanOptions::with_threads(threads).with_sparse(mode);
            let plan = Plan::with_registry(&q, opts, &registry).unwrap();
            let out = plan.run(&[("x", Tensor::F32(x.clone()))]).unwrap();
            let p = out[0].1.as_f32().unwrap().mapv(f32::to_bits);
            (plan.sparse_steps(), p)
        };
        for threads in [1, 2] {
            for x in [&x, &one] {
                let ctx = format!("per_channel {per_channel}, {threads} threads");
                let (steps, dense) = run(SparseMode::Dense, threads, x);
                assert_eq!(steps, 0, "{ctx}");
                for (mode, want) in [(SparseMode::Auto, 0), (SparseMode::Sparse, 2)] {
                    let (steps, got) = run(mode, threads, x);
                    assert_eq!(steps, want, "{mode:?}, {ctx}");
                    assert_eq!(got, dense, "{mode:?}, {ctx}");
                }
            }
        }
    }
}

/// Unpruned weights run sparse only when forced, with the dense outputs.
#[test]
fn unpruned_weights_forced_sparse_match_dense() {
    let model = Model::load(digits::dir().join("mlp.onnx")).unwrap();
    let (x, _) = digits::test_set();
    let (mut q, _) = quantize_static(&model, &digits::calibration(&x), &Config::default()).unwrap();
    let (registry, _) = edgeml_quant::onnx::prepare(&mut q);
    let plan = |mode| {
        Plan::with_registry(
            &q,
            PlanOptions::with_threads(1).with_sparse(mode),
            &registry,
        )
        .unwrap()
    };
    let run = |p: &Plan| {
        let out = p.run(&[("x", Tensor::F32(x.clone()))]).unwrap();
        out[0].1.as_f32().unwrap().mapv(f32::to_bits)
    };
    let (auto, sparse) = (plan(SparseMode::Auto), plan(SparseMode::Sparse));
    assert_eq!((auto.sparse_steps(), sparse.sparse_steps()), (0, 2));
    assert_eq!(run(&auto), run(&sparse));
}

fn vi(name: &str, dtype: DType, shape: &[usize]) -> ValueInfo {
    ValueInfo::tensor(name, dtype, shape.iter().map(|&d| Dim::Known(d)).collect())
}

/// A long `MatMulInteger` on a 95 %-zero constant weight, alone in its model (no later
/// step boundary would notice the deadline), stops inside the sparse kernel.
#[test]
fn a_long_sparse_int8_matmul_stops_at_the_deadline() {
    let emulated = std::env::var_os("EDGEML_TEST_RUNNER").is_some();
    let (m, k, n) = if emulated {
        (512, 1024, 512)
    } else {
        (2048, 4096, 2048)
    };
    let b = ArrayD::from_shape_fn(IxDyn(&[k, n]), |i| {
        if (i[0] * 7 + i[1] * 13) % 20 == 0 {
            3i8
        } else {
            0
        }
    });
    let per_col: Vec<i32> = (0..n)
        .map(|j| (0..k).filter(|kk| (kk * 7 + j * 13) % 20 == 0).count() as i32)
        .collect();
    let model = ModelBuilder::new(13)
        .input(vi("a", DType::U8, &[m, k]))
        .initializer("b", Tensor::I8(b))
        .node(Node::new("MatMulInteger", &["a", "b"], &["y"]).with_name("long_sparse"))
        .output(vi("y", DType::I32, &[m, n]))
        .build()
        .unwrap();
    let a = Tensor::U8(ArrayD::from_elem(vec![m, k], 2u8));
    let plan = Plan::with_registry(
        &model,
        PlanOptions::with_threads(2).with_sparse(SparseMode::Sparse),
        &edgeml_quant::onnx::registry(),
    )
    .unwrap();
    assert_eq!(plan.sparse_steps(), 1);
    let inputs = [("a", &a)];
    let t0 = Instant::now();
    let out = plan.run_with(&inputs, &RunOptions::new()).unwrap();
    let full = t0.elapsed();
    let Tensor::I32(y) = &out[0].1 else {
        panic!("an i32 output")
    };
    for (j, col) in y.columns().into_iter().enumerate() {
        assert!(col.iter().all(|&v| v == 6 * per_col[j]), "column {j}");
    }
    println!("the whole sparse product: {full:?}");

    let t0 = Instant::now();
    let e = plan
        .run_with(&inputs, &RunOptions::new().timeout(full / 10))
        .expect_err("the deadline passes during the product");
    let stopped = t0.elapsed();
    assert_eq!(e.kind(), ErrorKind::DeadlineExceeded, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("long_sparse") && msg.contains("INT8 kernel"),
        "the error names the node and the kernel: {msg}"
    );
    // Only the kernel's polls can end this one-step run early: the error above names
    // them. How soon it ended is printed, not asserted (the host is shared).
    println!("stopped after {stopped:?}");
}

/// Set in the child process that `auto_runs_int8_sparse_on_avx2_from_95_percent_zeros`
/// starts with `EDGEML_KERNELS=avx2`.
const AUTO_CHILD: &str = "EDGEML_TEST_SPARSE_AUTO_CHILD";

/// A `[K, N] = [40, 25]` i8 weight with exactly `zeros` of its 1000 entries equal to
/// `zp` (spread by a permutation of the flat index), the others `zp + 1..=zp + 7`.
fn weight(zeros: usize, zp: i8) -> ArrayD<i8> {
    let (k, n) = (40, 25);
    ArrayD::from_shape_fn(IxDyn(&[k, n]), |i| {
        let idx = i[0] * n + i[1];
        if (idx * 37) % (k * n) < zeros {
            zp
        } else {
            zp + 1 + (idx % 7) as i8
        }
    })
}

/// Sparse steps, summed over a `QLinearMatMul` (weight zero point 3, so its "zeros"
/// are 3s) and a `MatMulInteger` (no zero point) whose weights have `zeros` of 1000
/// entries equal to the zero point, planned under `SparseMode::Auto`; each model's
/// outputs are checked bit for bit against `SparseMode::Dense`.
fn auto_sparse_steps(zeros: usize) -> usize {
    let (m, k, n) = (7, 40, 25);
    let a = Tensor::U8(ArrayD::from_shape_fn(IxDyn(&[m, k]), |i| {
        ((i[0] * 31 + i[1] * 17) % 256) as u8
    }));
    let qlinear = ModelBuilder::new(13)
        .input(vi("a", DType::U8, &[m, k]))
        .initializer("a_scale", Tensor::F32(ArrayD::from_elem(IxDyn(&[]), 0.02)))
        .initializer("a_zp", Tensor::U8(ArrayD::from_elem(IxDyn(&[]), 120)))
        .initializer("b", Tensor::I8(weight(zeros, 3)))
        .initializer("b_scale", Tensor::F32(ArrayD::from_elem(IxDyn(&[]), 0.01)))
        .initializer("b_zp", Tensor::I8(ArrayD::from_elem(IxDyn(&[]), 3)))
        .initializer("y_scale", Tensor::F32(ArrayD::from_elem(IxDyn(&[]), 0.03)))
        .initializer("y_zp", Tensor::U8(ArrayD::from_elem(IxDyn(&[]), 128)))
        .node(Node::new(
            "QLinearMatMul",
            &[
                "a", "a_scale", "a_zp", "b", "b_scale", "b_zp", "y_scale", "y_zp",
            ],
            &["y"],
        ))
        .output(vi("y", DType::U8, &[m, n]))
        .build()
        .unwrap();
    let integer = ModelBuilder::new(13)
        .input(vi("a", DType::U8, &[m, k]))
        .initializer("b", Tensor::I8(weight(zeros, 0)))
        .node(Node::new("MatMulInteger", &["a", "b"], &["y"]))
        .output(vi("y", DType::I32, &[m, n]))
        .build()
        .unwrap();
    let registry = edgeml_quant::onnx::registry();
    let mut steps = 0;
    for (name, model) in [("QLinearMatMul", &qlinear), ("MatMulInteger", &integer)] {
        let plan = |mode| {
            let opts = PlanOptions::with_threads(1).with_sparse(mode);
            Plan::with_registry(model, opts, &registry).unwrap()
        };
        let (auto, dense) = (plan(SparseMode::Auto), plan(SparseMode::Dense));
        assert_eq!(dense.sparse_steps(), 0, "{name}");
        let run = |p: &Plan| p.run(&[("a", a.clone())]).unwrap().remove(0).1;
        assert_eq!(
            run(&auto),
            run(&dense),
            "{name}, {zeros}/1000 zeros: Auto gives the dense outputs"
        );
        steps += auto.sparse_steps();
    }
    steps
}

/// `SparseMode::Auto` on INT8 weights: sparse on `avx2` from 95 % zeros (checked in a
/// child process forced to `avx2`, as `EDGEML_KERNELS` is read once per process),
/// dense below, and dense at any share of zeros on this process's default path unless
/// that is `avx2`.
#[test]
fn auto_runs_int8_sparse_on_avx2_from_95_percent_zeros() {
    if std::env::var_os(AUTO_CHILD).is_some() {
        assert_eq!(
            Isa::selected(),
            Isa::Avx2,
            "the child runs on the avx2 path"
        );
        assert_eq!(auto_sparse_steps(960), 2, "96 % zeros on avx2: sparse");
        assert_eq!(auto_sparse_steps(950), 2, "95 % zeros on avx2: sparse");
        assert_eq!(auto_sparse_steps(940), 0, "94 % zeros on avx2: dense");
        assert_eq!(auto_sparse_steps(500), 0, "50 % zeros on avx2: dense");
        println!("avx2 child: Auto sparse from 95 % zeros");
        return;
    }
    let isa = Isa::selected();
    let want = if isa == Isa::Avx2 { 2 } else { 0 };
    assert_eq!(auto_sparse_steps(960), want, "96 % zeros on {isa}");
    assert_eq!(auto_sparse_steps(500), 0, "50 % zeros on {isa}");
    eprintln!("default INT8 path {isa}: Auto ran {want} of 2 96 %-zero weights sparse");
    if !Isa::Avx2.is_available() {
        eprintln!("SKIP: this CPU has no AVX2, Auto's avx2 rule is not exercised here");
        return;
    }
    let name = "auto_runs_int8_sparse_on_avx2_from_95_percent_zeros";
    let exe = std::env::current_exe().expect("path of this test binary");
    let out = std::process::Command::new(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("EDGEML_KERNELS", "avx2")
        .env(AUTO_CHILD, "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the avx2 child failed or did not run the test; status {:?}\nstdout: {stdout}\n\
         stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // libtest prints the child's line after "test … ... ".
    let line = stdout
        .lines()
        .find_map(|l| l.find("avx2 child").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("the child ran its avx2 checks: {stdout}"));
    eprintln!("{line}");
}

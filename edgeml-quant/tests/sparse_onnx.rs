//! The sparse INT8 product inside plans: the digits MLP, pruned to 90 % zeros per
//! weight (magnitude, as `edgeml_prune` does unstructured) and then quantized by
//! `quantize_static` (QDQ, per tensor and per channel), runs both of its fused INT8
//! `MatMul`s sparse under `SparseMode::Sparse`, none under `Dense` and `Auto` (which
//! keeps INT8 weights dense: the dense GEMM measured faster), and every mode gives
//! bit-identical probabilities, on one and two threads. A deadline stops a long sparse
//! `MatMulInteger` from inside the kernel.
#![cfg(feature = "onnx")]
#![allow(missing_docs, clippy::unwrap_used)]

use edgeml_core::{DType, ErrorKind};
use edgeml_onnx::{
    Dim, Model, ModelBuilder, Node, Plan, PlanOptions, RunOptions, SparseMode, Tensor, ValueInfo,
};
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

//! A pruned float `Conv` through the sparse kernel versus the dense one (baseline in the
//! same group): the operator as a plan builds it (`SparseMode::Dense` / `Sparse`,
//! weights constant, packed or compressed once outside the timing), bias included.
//!
//! Single-threaded (a 1-thread rayon pool), batch 1, the best ISA of this CPU
//! (`EDGEML_KERNELS` forces another). Zeros are spread uniformly (a hash of the index),
//! as unstructured magnitude pruning leaves them; the dense time does not depend on them.
//! Ids: `sparse_conv/{dense,sparse<zeros>}/<isa>/<k>x<k>_<c>to<m>_<h>x<w>[_s<stride>]`.
//! Run: `cargo bench -p edgeml-benches --bench sparse_conv`
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use edgeml::onnx::ops::default_registry;
use edgeml::onnx::{Attribute, BuildContext, Node, Operator, SparseMode, Tensor, kernels};
use ndarray::{ArrayD, IxDyn};
use std::hint::black_box;

fn data(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 % 1000) as f32) / 500.0 - 1.0)
        .collect()
}

/// `len` weights with a fraction `zeros` of them set to zero.
fn weights(len: usize, zeros: f64) -> Vec<f32> {
    data(len)
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            if (h as f64) < zeros * (1u64 << 24) as f64 {
                0.0
            } else {
                w
            }
        })
        .collect()
}

fn tensor(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape"))
}

/// The `Conv` operator for `node` with constant `w` and `b`, built in `mode`.
fn build(node: &Node, w: &Tensor, b: &Tensor, mode: SparseMode) -> Box<dyn Operator> {
    let reg = default_registry();
    let f = reg.lookup("", "Conv", 13).expect("Conv");
    let ctx = BuildContext::new(node, 13, vec![None, Some(w), Some(b)]).with_sparse(mode);
    f.build(&ctx).expect("build")
}

fn bench(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let isa = kernels::best_isa().name();
    let mut g = c.benchmark_group("sparse_conv");
    g.sample_size(10);
    // (kernel, in channels, out channels, height = width, stride): ResNet-style 3×3
    // and 1×1 layers and a small 3×3 one.
    for &(k, ci, co, hw, s) in &[
        (3, 64, 64, 56, 1),
        (1, 256, 64, 28, 1),
        (3, 32, 32, 16, 1),
        (3, 64, 128, 56, 2),
    ] {
        let p = (k / 2) as i64;
        let node = Node::new("Conv", &["x", "w", "b"], &["y"])
            .with_attr("kernel_shape", Attribute::Ints(vec![k as i64; 2]))
            .with_attr("strides", Attribute::Ints(vec![s as i64; 2]))
            .with_attr("pads", Attribute::Ints(vec![p; 4]));
        let x = tensor(&[1, ci, hw, hw], data(ci * hw * hw));
        let b = tensor(&[co], data(co));
        let wshape = [co, ci, k, k];
        let name = format!(
            "{k}x{k}_{ci}to{co}_{hw}x{hw}{}",
            if s > 1 {
                format!("_s{s}")
            } else {
                String::new()
            }
        );
        // The operator re-reads its constant inputs' shapes at run time.
        let mut run = |label: String, op: Box<dyn Operator>, w: &Tensor| {
            let id = BenchmarkId::new(format!("{label}/{isa}"), &name);
            g.bench_function(id, |bench| {
                pool.install(|| {
                    bench.iter(|| {
                        let x = black_box(&x);
                        op.run(&[Some(x), Some(w), Some(&b)]).expect("conv")
                    })
                })
            });
        };
        let w = tensor(&wshape, weights(wshape.iter().product(), 0.9));
        run("dense".into(), build(&node, &w, &b, SparseMode::Dense), &w);
        for &z in &[0.5, 0.8, 0.9, 0.95] {
            let w = tensor(&wshape, weights(wshape.iter().product(), z));
            run(
                format!("sparse{z}"),
                build(&node, &w, &b, SparseMode::Sparse),
                &w,
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

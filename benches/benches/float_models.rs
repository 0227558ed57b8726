//! Whole-model float latency of the edgeml-onnx interpreter (batch 1), 1 and 2 threads.
//!
//! The onnxruntime baseline for the same models is measured by `scripts/bench_float.py`,
//! which also writes the comparison into BENCHMARKS.md.
//! Run: `cargo bench -p edgeml-benches --bench float_models`
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use edgeml::onnx::plan::{Plan, PlanOptions};
use edgeml::onnx::{Dim, Model, Tensor};
use ndarray::{ArrayD, IxDyn};
use std::path::Path;

const MODELS: &[(&str, &str)] = &[
    ("digits_cnn", "tests/fixtures/digits/digits_cnn.onnx"),
    ("resnet50", "tests/fixtures/models/light_resnet50.onnx"),
    ("squeezenet", "tests/fixtures/models/light_squeezenet.onnx"),
    ("shufflenet", "tests/fixtures/models/light_shufflenet.onnx"),
];

fn inputs(plan: &Plan) -> Vec<(String, Tensor)> {
    plan.inputs()
        .iter()
        .map(|vi| {
            let shape: Vec<usize> = vi
                .shape
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .map(|d| match d {
                    Dim::Known(n) => *n,
                    _ => 1,
                })
                .collect();
            let n: usize = shape.iter().product();
            let data = (0..n)
                .map(|i| ((i * 7919 % 1000) as f32) / 1000.0)
                .collect();
            let arr = ArrayD::from_shape_vec(IxDyn(&shape), data).expect("input shape");
            (vi.name.clone(), Tensor::F32(arr))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut g = c.benchmark_group("float_model");
    g.sample_size(10);
    for (name, rel) in MODELS {
        let path = root.join(rel);
        if !path.exists() {
            continue;
        }
        let model = Model::load(&path).expect("load model");
        for threads in [1usize, 2] {
            let plan = Plan::new(&model, PlanOptions::with_threads(threads)).expect("plan");
            let ins = inputs(&plan);
            let refs: Vec<(&str, &Tensor)> = ins.iter().map(|(n, t)| (n.as_str(), t)).collect();
            // One pool of the same size around the call, so a 1-thread plan stays serial.
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            g.bench_function(
                format!(
                    "{}/{name}/{threads}t",
                    edgeml::onnx::kernels::best_isa().name()
                ),
                |b| pool.install(|| b.iter(|| plan.run_refs(&refs).expect("run"))),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

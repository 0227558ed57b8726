//! A run's deadline and cancellation stop a long INT8 step from inside its kernel
//! (issue 19): the INT8 operators poll the run's `RunStop` before each chunk of their
//! parallel loops, as the float GEMM and convolution do. A single-step model: without
//! the polls the run would finish (there is no later step boundary) and succeed.
#![cfg(feature = "onnx")]

use edgeml_core::{DType, ErrorKind};
use edgeml_onnx::{
    CancelToken, Dim, Model, ModelBuilder, Node, Plan, PlanOptions, RunOptions, Tensor, ValueInfo,
};
use ndarray::ArrayD;
use std::time::{Duration, Instant};

/// Bound on how long a stopped run may take to return: a correctness bound (the run
/// ends at all, well before the product would), not a speed claim.
const GENEROUS: Duration = Duration::from_secs(2);

fn vi(name: &str, dtype: DType, shape: &[usize]) -> ValueInfo {
    ValueInfo::tensor(name, dtype, shape.iter().map(|&d| Dim::Known(d)).collect())
}

/// `A [m, k] · B [k, n]` as one `MatMulInteger` with a constant `B` (packed at plan
/// time): m·n·k multiply-adds in a single step.
fn matmul_integer(m: usize, k: usize, n: usize) -> (Model, Tensor) {
    let b = Tensor::U8(ArrayD::from_elem(vec![k, n], 3u8));
    let model = ModelBuilder::new(13)
        .input(vi("a", DType::U8, &[m, k]))
        .initializer("b", b)
        .node(Node::new("MatMulInteger", &["a", "b"], &["y"]).with_name("long_mmi"))
        .output(vi("y", DType::I32, &[m, n]))
        .build()
        .expect("model");
    (model, Tensor::U8(ArrayD::from_elem(vec![m, k], 2u8)))
}

#[test]
fn a_long_int8_matmul_stops_at_the_deadline_and_when_cancelled() {
    // 2048 x 16384 by 16384 x 2048: 68.7 G multiply-adds, a large multiple of the
    // deadline on every INT8 path (tens of ms with AMX, seconds in scalar code). Under
    // an emulator (`EDGEML_TEST_RUNNER`, set by scripts/test-aarch64.sh) 64x less.
    let emulated = std::env::var_os("EDGEML_TEST_RUNNER").is_some();
    let (m, k, n) = if emulated {
        println!("EDGEML_TEST_RUNNER is set: a 64x smaller product");
        (512, 4096, 512)
    } else {
        (2048, 16384, 2048)
    };
    let (model, a) = matmul_integer(m, k, n);
    let plan = Plan::with_registry(
        &model,
        PlanOptions::with_threads(2),
        &edgeml_quant::onnx::registry(),
    )
    .expect("plans");
    let inputs = [("a", &a)];

    // The whole product, unbounded, for the time scale (and its values).
    let t0 = Instant::now();
    let out = plan.run_with(&inputs, &RunOptions::new()).expect("runs");
    let full = t0.elapsed();
    let Tensor::I32(y) = &out[0].1 else {
        panic!("an i32 output, got {:?}", out[0].1.dtype())
    };
    assert!(y.iter().all(|&v| v == 6 * k as i32), "2 · 3 summed over k");
    println!("the whole product: {full:?}");

    // A deadline at a tenth of it stops the run inside the kernel.
    let t0 = Instant::now();
    let e = plan
        .run_with(&inputs, &RunOptions::new().timeout(full / 10))
        .expect_err("the deadline passes during the product");
    let stopped = t0.elapsed();
    assert_eq!(e.kind(), ErrorKind::DeadlineExceeded, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("long_mmi") && msg.contains("INT8 kernel"),
        "the error must name the node and say where it stopped: {msg}"
    );
    assert!(
        stopped < full / 2,
        "stopped after {stopped:?}; the whole product takes {full:?}"
    );

    // Cancelling from another thread stops it too.
    let token = CancelToken::new();
    let opts = RunOptions::new().cancel_token(token.clone());
    let (e, lag) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let r = plan.run_with(&inputs, &opts);
            (r, Instant::now())
        });
        std::thread::sleep(full / 10);
        let at = Instant::now();
        token.cancel();
        let (r, returned) = h.join().expect("the run thread does not panic");
        (r, returned.saturating_duration_since(at))
    });
    let e = e.expect_err("cancelled during the product");
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
    assert!(e.to_string().contains("long_mmi"), "{e}");
    assert!(lag < GENEROUS, "returned {lag:?} after the cancellation");

    // The plan is still usable and exact.
    let again = plan
        .run_with(&inputs, &RunOptions::new())
        .expect("runs again");
    assert_eq!(again[0].1, out[0].1);
}

/// An 8-bit `MaxPool` whose `n × n` window (stride 1, `n − 1` padding) is as large as
/// its `[1, 2, n, n]` input: about 6n³ compares a plane in one step.
fn huge_u8_pool(n: usize) -> (Model, Tensor) {
    let (k, p) = (n as i64, n as i64 - 1);
    let pool = Node::new("MaxPool", &["x"], &["y"])
        .with_name("huge_u8_pool")
        .with_attr("kernel_shape", edgeml_onnx::Attribute::Ints(vec![k, k]))
        .with_attr("pads", edgeml_onnx::Attribute::Ints(vec![p, p, p, p]));
    let model = ModelBuilder::new(13)
        .input(vi("x", DType::U8, &[1, 2, n, n]))
        .node(pool)
        .output(vi("y", DType::U8, &[1, 2, 2 * n - 1, 2 * n - 1]))
        .build()
        .expect("model");
    let x = ArrayD::from_shape_fn(vec![1, 2, n, n], |i| ((i[2] * 7 + i[3] * 13) % 251) as u8);
    (model, Tensor::U8(x))
}

#[test]
fn a_huge_8_bit_pooling_window_stops_at_the_deadline() {
    let n = if std::env::var_os("EDGEML_TEST_RUNNER").is_some() {
        256
    } else {
        1024
    };
    let registry = edgeml_quant::onnx::registry();
    for threads in [1, 2] {
        let (model, x) = huge_u8_pool(n);
        let plan = Plan::with_registry(&model, PlanOptions::with_threads(threads), &registry)
            .expect("plans");
        let t0 = Instant::now();
        let e = plan
            .run_with(
                &[("x", &x)],
                &RunOptions::new().timeout(Duration::from_millis(50)),
            )
            .expect_err("the pool takes far longer than the deadline");
        let stopped = t0.elapsed();
        assert_eq!(e.kind(), ErrorKind::DeadlineExceeded, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("huge_u8_pool") && msg.contains("8-bit MaxPool"),
            "the error must name the node and say where it stopped: {msg}"
        );
        // The same pool 1/8 the size is 512 times less work; run in full, it bounds
        // the whole step from above (its fixed costs included).
        let (small, xs) = huge_u8_pool(n / 8);
        let small_plan = Plan::with_registry(&small, PlanOptions::with_threads(threads), &registry)
            .expect("plans");
        let t0 = Instant::now();
        let out = small_plan
            .run_with(&[("x", &xs)], &RunOptions::new().timeout(GENEROUS * 10))
            .expect("the small pool runs");
        let full = t0.elapsed() * 512;
        assert!(
            stopped < full / 8,
            "stopped after {stopped:?}; the whole step would take about {full:?}"
        );
        // Its centre output's window covers the whole plane: the largest code.
        let Tensor::U8(y) = &out[0].1 else {
            panic!("a u8 output")
        };
        let Tensor::U8(xa) = &xs else { unreachable!() };
        let m = n / 8;
        let want = xa.index_axis(ndarray::Axis(1), 1).iter().copied().max();
        assert_eq!(Some(y[[0, 1, m - 1, m - 1]]), want);
    }
}

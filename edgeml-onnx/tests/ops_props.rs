//! Property tests of the broadcasting element-wise operators and of reductions against
//! naive f64 references written index by index.

use edgeml_onnx::ops::default_registry;
use edgeml_onnx::{BuildContext, Node, Tensor};
use ndarray::{ArrayD, Dimension, IxDyn};
use proptest::prelude::*;

fn node(op: &str, n_in: usize) -> Node {
    Node {
        op_type: op.into(),
        inputs: (0..n_in).map(|i| format!("i{i}")).collect(),
        outputs: vec!["y".into()],
        ..Default::default()
    }
}

fn run(n: &Node, opset: i64, inputs: &[&Tensor]) -> edgeml_onnx::Result<Vec<Tensor>> {
    let reg = default_registry();
    let f = reg.lookup("", &n.op_type, opset).expect("registered");
    let op = f.build(&BuildContext::new(n, opset, vec![None; inputs.len()]))?;
    let args: Vec<Option<&Tensor>> = inputs.iter().map(|t| Some(*t)).collect();
    op.run(&args)
}

/// Two broadcast-compatible shapes: each dim of b is the dim of a or 1, and b may have
/// fewer leading dims.
fn shapes() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    prop::collection::vec((1usize..4, any::<bool>(), any::<bool>()), 0..4).prop_flat_map(|dims| {
        let a: Vec<usize> = dims.iter().map(|d| if d.1 { 1 } else { d.0 }).collect();
        let b: Vec<usize> = dims.iter().map(|d| if d.2 { 1 } else { d.0 }).collect();
        (0..=b.len()).prop_map(move |drop| (a.clone(), b[drop..].to_vec()))
    })
}

fn filled(shape: &[usize], seed: u32) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32 / 250.0 - 2.0
        })
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape")
}

/// Element of `a` (shape right-aligned) at output index `idx`.
fn at(a: &ArrayD<f32>, idx: &[usize]) -> f32 {
    let off = idx.len() - a.ndim();
    let i: Vec<usize> = (0..a.ndim())
        .map(|k| if a.shape()[k] == 1 { 0 } else { idx[off + k] })
        .collect();
    a[IxDyn(&i)]
}

proptest! {
    #[test]
    fn binary_ops_broadcast_like_numpy((sa, sb) in shapes(), which in 0usize..4, swap in any::<bool>()) {
        let (sa, sb) = if swap { (sb, sa) } else { (sa, sb) };
        let (a, b) = (filled(&sa, 1), filled(&sb, 7));
        let ops = ["Add", "Sub", "Mul", "Max"];
        let f = |x: f32, y: f32| match which { 0 => x + y, 1 => x - y, 2 => x * y, _ => x.max(y) };
        let out = run(&node(ops[which], 2), 17, &[&Tensor::F32(a.clone()), &Tensor::F32(b.clone())]).unwrap();
        let y = out[0].as_f32().unwrap();
        let r = sa.len().max(sb.len());
        prop_assert_eq!(y.ndim(), r);
        for (idx, &v) in y.indexed_iter() {
            let idx: Vec<usize> = idx.as_array_view().to_vec();
            prop_assert_eq!(v, f(at(&a, &idx), at(&b, &idx)));
        }
    }

    #[test]
    fn reduce_sum_and_mean_match_f64((shape, _) in shapes(), axis_bits in 0u8..16, keep in any::<bool>(), mean in any::<bool>()) {
        let a = filled(&shape, 3);
        let axes: Vec<i64> = (0..shape.len()).filter(|k| axis_bits & (1 << k) != 0).map(|k| k as i64).collect();
        let mut n = node(if mean { "ReduceMean" } else { "ReduceSum" }, 1);
        n.attributes.push(("keepdims".into(), edgeml_onnx::Attribute::Int(keep as i64)));
        n.attributes.push(("axes".into(), edgeml_onnx::Attribute::Ints(axes.clone())));
        let out = run(&n, 11, &[&Tensor::F32(a.clone())]).unwrap();
        let y = out[0].as_f32().unwrap();
        let red: Vec<usize> = if axes.is_empty() { (0..shape.len()).collect() } else { axes.iter().map(|&k| k as usize).collect() };
        let count: usize = red.iter().map(|&k| shape[k]).product();
        // Reference: accumulate each input element into its output cell.
        let out_shape: Vec<usize> = (0..shape.len()).map(|k| if red.contains(&k) { 1 } else { shape[k] }).collect();
        let mut acc = ArrayD::<f64>::zeros(IxDyn(&out_shape));
        for (idx, &v) in a.indexed_iter() {
            let o: Vec<usize> = (0..shape.len()).map(|k| if red.contains(&k) { 0 } else { idx[k] }).collect();
            acc[IxDyn(&o)] += v as f64;
        }
        if mean { acc.mapv_inplace(|s| s / count as f64); }
        prop_assert_eq!(y.len(), acc.len());
        for (g, w) in y.iter().zip(acc.iter()) {
            prop_assert!((*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()), "{} vs {}", g, w);
        }
        if keep { prop_assert_eq!(y.shape(), &out_shape[..]); }
    }

    /// Adjacent reduced axes on contiguous input (the one-pass path: SE blocks' spatial
    /// mean, last-axis sums) for every reduction it serves, runs long enough to fill the
    /// eight partial sums, and a NaN that Max and Min must propagate.
    #[test]
    fn reductions_over_adjacent_axes_match_f64(
        shape in prop::collection::vec(1usize..12, 1..5),
        span in (0usize..4, 0usize..4),
        which in 0usize..7,
        nan in prop::option::of(0usize..10_000),
    ) {
        let ops = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceSumSquare"];
        let r = shape.len();
        let (first, last) = (span.0.min(r - 1), (span.0 + span.1).min(r - 1));
        let mut a = filled(&shape, 5);
        if let Some(i) = nan {
            let n = a.len();
            a.as_slice_mut().unwrap()[i % n] = f32::NAN;
        }
        let mut n = node(ops[which], 1);
        n.attributes.push(("keepdims".into(), edgeml_onnx::Attribute::Int(1)));
        n.attributes.push(("axes".into(), edgeml_onnx::Attribute::Ints((first as i64..=last as i64).collect())));
        let out = run(&n, 11, &[&Tensor::F32(a.clone())]).unwrap();
        let y = out[0].as_f32().unwrap();
        let out_shape: Vec<usize> = (0..r).map(|k| if (first..=last).contains(&k) { 1 } else { shape[k] }).collect();
        let count: usize = shape[first..=last].iter().product();
        let mut cells: Vec<Vec<f64>> = vec![vec![]; y.len()];
        let cell = ArrayD::from_shape_vec(IxDyn(&out_shape), (0..y.len()).collect::<Vec<_>>()).unwrap();
        for (idx, &v) in a.indexed_iter() {
            let o: Vec<usize> = (0..r).map(|k| if (first..=last).contains(&k) { 0 } else { idx[k] }).collect();
            cells[cell[IxDyn(&o)]].push(v as f64);
        }
        prop_assert_eq!(y.shape(), &out_shape[..]);
        for (g, c) in y.iter().zip(&cells) {
            prop_assert_eq!(c.len(), count);
            let w = match which {
                0 => c.iter().sum::<f64>(),
                1 => c.iter().sum::<f64>() / count as f64,
                2 => c.iter().copied().fold(f64::NEG_INFINITY, |m, v| if v.is_nan() || m.is_nan() { f64::NAN } else { m.max(v) }),
                3 => c.iter().copied().fold(f64::INFINITY, |m, v| if v.is_nan() || m.is_nan() { f64::NAN } else { m.min(v) }),
                4 => c.iter().map(|v| v.abs()).sum::<f64>(),
                5 => c.iter().map(|v| v * v).sum::<f64>().sqrt(),
                _ => c.iter().map(|v| v * v).sum::<f64>(),
            };
            if w.is_nan() {
                prop_assert!(g.is_nan(), "{} vs NaN", g);
            } else {
                prop_assert!((*g as f64 - w).abs() <= 1e-6 * (1.0 + w.abs()), "{} vs {}", g, w);
            }
        }
    }

    /// Last-axis Softmax and LogSoftmax (rows long enough for the lane loops and their
    /// tails) against f64, with a NaN that must stay in its own row.
    #[test]
    fn softmax_rows_match_f64(rows in 1usize..4, n in 1usize..70, log in any::<bool>(), scale in 0.5f32..40.0, nan in prop::option::of(0usize..1000)) {
        let mut a = filled(&[rows, n], 9);
        a.mapv_inplace(|v| v * scale);
        let nan_row = nan.map(|i| {
            let i = i % a.len();
            a.as_slice_mut().unwrap()[i] = f32::NAN;
            i / n
        });
        let out = run(&node(if log { "LogSoftmax" } else { "Softmax" }, 1), 13, &[&Tensor::F32(a.clone())]).unwrap();
        let y = out[0].as_f32().unwrap();
        for r in 0..rows {
            let x: Vec<f64> = (0..n).map(|j| a[[r, j]] as f64).collect();
            let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = x.iter().map(|v| (v - m).exp()).sum();
            for j in 0..n {
                let g = y[[r, j]] as f64;
                if Some(r) == nan_row {
                    prop_assert!(g.is_nan(), "row {} col {}: {} in a row with NaN", r, j, g);
                    continue;
                }
                let w = if log { (x[j] - m) - s.ln() } else { (x[j] - m).exp() / s };
                prop_assert!((g - w).abs() <= 1e-6 * (1.0 + w.abs()), "row {} col {}: {} vs {}", r, j, g, w);
            }
        }
    }
}

/// A squeeze-excitation `ReduceMean` large enough to be split over a pool's threads by
/// whole channels gives the bits of the one-thread run, and the f64 mean.
#[test]
fn spatial_mean_split_over_threads_matches_one_thread() {
    let a = filled(&[1, 97, 23, 19], 3);
    let mut n = node("ReduceMean", 1);
    n.attributes
        .push(("keepdims".into(), edgeml_onnx::Attribute::Int(1)));
    n.attributes
        .push(("axes".into(), edgeml_onnx::Attribute::Ints(vec![2, 3])));
    let x = Tensor::F32(a.clone());
    let one = run(&n, 11, &[&x]).expect("one thread");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .expect("pool");
    let split = pool.install(|| run(&n, 11, &[&x])).expect("three threads");
    let (one, split) = (
        one[0].as_f32().expect("f32"),
        split[0].as_f32().expect("f32"),
    );
    assert_eq!(split.shape(), &[1, 97, 1, 1]);
    for c in 0..97 {
        let want = a
            .index_axis(ndarray::Axis(1), c)
            .iter()
            .map(|&v| v as f64)
            .sum::<f64>()
            / 437.0;
        let (g, s) = (one[[0, c, 0, 0]], split[[0, c, 0, 0]]);
        assert_eq!(g.to_bits(), s.to_bits(), "channel {c}: {g} vs {s} split");
        assert!(
            (g as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
            "channel {c}: {g} vs {want}"
        );
    }
}

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
}

//! Helpers of the sparse-kernel tests (`nn_sparse`, `nn_sparse_conv`,
//! `plan_sparse_conv`): deterministic values, pruned weights, tensors, attributes and
//! a tolerance check.
#![allow(dead_code)]

use edgeml_onnx::{Attribute, Tensor};
use ndarray::{ArrayD, IxDyn};

/// Deterministic values in [-2, 2) from `seed`.
pub(crate) fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32 / 250.0 - 2.0
        })
        .collect()
}

/// `len` weights of which a fraction `zeros` (decided by a hash of `seed`) is zero.
pub(crate) fn pruned(len: usize, zeros: f64, seed: u32) -> Vec<f32> {
    let mut w = values(len, seed ^ 0x55);
    for (i, v) in w.iter_mut().enumerate() {
        let h = (i as u64)
            .wrapping_add(u64::from(seed) << 32)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        if ((h >> 40) as f64 / (1u64 << 24) as f64) < zeros {
            *v = 0.0;
        }
    }
    w
}

/// An f32 tensor of `shape` holding `data`.
pub(crate) fn tensor(shape: &[usize], data: Vec<f32>) -> Tensor {
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), data).expect("shape"))
}

/// An `INTS` attribute.
pub(crate) fn ints(v: &[usize]) -> Attribute {
    Attribute::Ints(v.iter().map(|&x| x as i64).collect())
}

/// Asserts `a` and `b` agree within `1e-5` relative (plus `1e-5` absolute).
pub(crate) fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
    let (a, b) = (a.as_f32().expect("f32"), b.as_f32().expect("f32"));
    assert_eq!(a.shape(), b.shape(), "{what}");
    for (x, y) in a.iter().zip(b) {
        assert!(
            (x - y).abs() <= 1e-5 * (1.0 + x.abs().max(y.abs())),
            "{what}: {x} vs {y}"
        );
    }
}

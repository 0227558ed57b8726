//! Compute-heavy neural-network operators (Conv, ConvTranspose, MatMul, Gemm, pooling,
//! normalization, recurrent layers) on the SIMD float kernels of [`crate::kernels`].
//!
//! All of them take and return `f32` tensors (other element types are an
//! [`Error::Unsupported`] naming the node). Weights that are constant at plan time are
//! packed once into GEMM panels when the operator is built. Work is parallelised with
//! rayon, inside whatever pool the plan installed.
//!
//! Choices where the ONNX specification is silent follow onnxruntime:
//! - MaxPool ignores NaN inputs unless the whole window is NaN (`x > max` comparisons);
//!   a window that lies entirely in the padding yields `f32::MIN`.
//! - With `ceil_mode`, a last window that would start inside the end padding is dropped.
//! - AveragePool with `count_include_pad` divides by the number of window positions
//!   inside the padded input (never the positions added by `ceil_mode`).
//! - BatchNormalization runs in inference mode only (`training_mode = 1` is unsupported).
//! - LayerNormalization computes its statistics in `f64` whatever `stash_type` says.

pub(crate) mod conv;
mod conv_transpose;
pub(crate) mod gemm;
mod norm;
mod pool;
mod rnn;
mod window;

pub use window::{AutoPad, ConvAttrs, Window};

use crate::ops::attr::{describe, shape_mismatch, unsupported};
use crate::ops::util::input;
use crate::{Error, Node, Registry, Result, Tensor};
use ndarray::{ArrayD, IxDyn};
use std::borrow::Cow;

/// Registers the neural-network operators into `r`.
pub fn register(r: &mut Registry) {
    const ALL: i64 = i64::MAX;
    r.register("", "Conv", 1, ALL, conv::build);
    r.register("com.microsoft", "FusedConv", 1, ALL, conv::build_fused);
    r.register("", "ConvTranspose", 1, ALL, conv_transpose::build);
    r.register("", "MatMul", 1, ALL, gemm::build_matmul);
    r.register("", "Gemm", 1, ALL, gemm::build_gemm);
    r.register("", "BatchNormalization", 1, ALL, norm::build_batch_norm);
    r.register("", "LayerNormalization", 17, ALL, norm::build_layer_norm);
    r.register(
        "",
        "InstanceNormalization",
        1,
        ALL,
        norm::build_instance_norm,
    );
    r.register("", "MaxPool", 1, ALL, pool::build_max_pool);
    r.register("", "AveragePool", 1, ALL, pool::build_average_pool);
    r.register(
        "",
        "GlobalAveragePool",
        1,
        ALL,
        pool::build_global_average_pool,
    );
    r.register("", "GlobalMaxPool", 1, ALL, pool::build_global_max_pool);
    r.register("", "LSTM", 1, ALL, rnn::build_lstm);
    r.register("", "GRU", 1, ALL, rnn::build_gru);
}

/// Input `i` as an `f32` array (required input).
fn input_f32<'a>(node: &Node, inputs: &[Option<&'a Tensor>], i: usize) -> Result<&'a ArrayD<f32>> {
    let t = input(node, inputs, i)?;
    t.as_f32().ok_or_else(|| {
        unsupported(
            node,
            format!("input {i} has type {:?}; only f32 is supported", t.dtype()),
        )
    })
}

/// Optional input `i` as an `f32` array.
fn opt_input_f32<'a>(
    node: &Node,
    inputs: &[Option<&'a Tensor>],
    i: usize,
) -> Result<Option<&'a ArrayD<f32>>> {
    match inputs.get(i).copied().flatten() {
        None => Ok(None),
        Some(_) => input_f32(node, inputs, i).map(Some),
    }
}

/// The operands of Conv and ConvTranspose — `X`, `W` and the optional `B` — with the
/// rank check both share (`X` and `W` of equal rank, 3-D to 5-D).
type ConvOperands<'a> = (&'a ArrayD<f32>, &'a ArrayD<f32>, Option<&'a ArrayD<f32>>);

fn conv_operands<'a>(node: &Node, inputs: &[Option<&'a Tensor>]) -> Result<ConvOperands<'a>> {
    let x = input_f32(node, inputs, 0)?;
    let w = input_f32(node, inputs, 1)?;
    let b = opt_input_f32(node, inputs, 2)?;
    if !(3..=5).contains(&x.ndim()) || w.ndim() != x.ndim() {
        return Err(shape_mismatch(
            node,
            format!(
                "input {:?} and weight {:?} must both be 3-D to 5-D",
                x.shape(),
                w.shape()
            ),
        ));
    }
    Ok((x, w, b))
}

/// The elements of `a` in row-major order (borrowed when already contiguous).
fn contiguous(a: &ArrayD<f32>) -> Cow<'_, [f32]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    }
}

/// Wraps `data` with `shape` as an `f32` tensor.
fn tensor(node: &Node, shape: &[usize], data: Vec<f32>) -> Result<Tensor> {
    ArrayD::from_shape_vec(IxDyn(shape), data)
        .map(Tensor::F32)
        .map_err(|e| {
            Error::InvalidInput(format!("{}: output shape {shape:?}: {e}", describe(node)))
        })
}

/// Product of dimensions with overflow checking, bounded by `isize::MAX` bytes of f32.
fn checked_numel(node: &Node, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= (isize::MAX as usize) / 8)
        .ok_or_else(|| {
            Error::LimitExceeded(format!(
                "{}: tensor of shape {shape:?} is too large",
                describe(node)
            ))
        })
}

/// Left-pads a spatial shape to 3 dimensions with 1s (so 1-D and 2-D share 3-D loops).
fn to3(v: &[usize], fill: usize) -> [usize; 3] {
    let mut r = [fill; 3];
    let off = 3 - v.len();
    r[off..].copy_from_slice(v);
    r
}

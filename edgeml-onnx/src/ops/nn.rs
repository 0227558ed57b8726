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
mod gemm;
mod norm;
mod pool;
mod rnn;

use crate::{Attribute, Error, Node, Registry, Result, Tensor};
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

/// `"Conv 'conv1'"`: how errors name a node.
fn who(node: &Node) -> String {
    if node.name.is_empty() {
        format!("{} node", node.op_type)
    } else {
        format!("{} '{}'", node.op_type, node.name)
    }
}

fn unsupported(node: &Node, msg: impl std::fmt::Display) -> Error {
    Error::Unsupported(format!("{}: {msg}", who(node)))
}

fn invalid(node: &Node, msg: impl std::fmt::Display) -> Error {
    Error::InvalidModel(format!("{}: {msg}", who(node)))
}

fn shape_err(node: &Node, msg: impl std::fmt::Display) -> Error {
    Error::ShapeMismatch(format!("{}: {msg}", who(node)))
}

fn attr_int(node: &Node, name: &str, default: i64) -> Result<i64> {
    match node.attr(name) {
        None => Ok(default),
        Some(Attribute::Int(v)) => Ok(*v),
        Some(a) => Err(invalid(
            node,
            format!("attribute {name} must be an int, got {a:?}"),
        )),
    }
}

fn attr_float(node: &Node, name: &str, default: f32) -> Result<f32> {
    match node.attr(name) {
        None => Ok(default),
        Some(Attribute::Float(v)) => Ok(*v),
        Some(Attribute::Int(v)) => Ok(*v as f32),
        Some(a) => Err(invalid(
            node,
            format!("attribute {name} must be a float, got {a:?}"),
        )),
    }
}

fn attr_ints(node: &Node, name: &str) -> Result<Option<Vec<i64>>> {
    match node.attr(name) {
        None => Ok(None),
        Some(Attribute::Ints(v)) => Ok(Some(v.clone())),
        Some(Attribute::Int(v)) => Ok(Some(vec![*v])),
        Some(a) => Err(invalid(
            node,
            format!("attribute {name} must be ints, got {a:?}"),
        )),
    }
}

fn attr_floats(node: &Node, name: &str) -> Result<Option<Vec<f32>>> {
    match node.attr(name) {
        None => Ok(None),
        Some(Attribute::Floats(v)) => Ok(Some(v.clone())),
        Some(Attribute::Float(v)) => Ok(Some(vec![*v])),
        Some(a) => Err(invalid(
            node,
            format!("attribute {name} must be floats, got {a:?}"),
        )),
    }
}

fn attr_string(node: &Node, name: &str, default: &str) -> Result<String> {
    match node.attr(name) {
        None => Ok(default.to_owned()),
        Some(Attribute::String(v)) => Ok(String::from_utf8_lossy(v).into_owned()),
        Some(a) => Err(invalid(
            node,
            format!("attribute {name} must be a string, got {a:?}"),
        )),
    }
}

fn attr_strings(node: &Node, name: &str) -> Result<Option<Vec<String>>> {
    match node.attr(name) {
        None => Ok(None),
        Some(Attribute::Strings(v)) => Ok(Some(
            v.iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        )),
        Some(a) => Err(invalid(
            node,
            format!("attribute {name} must be strings, got {a:?}"),
        )),
    }
}

/// Non-negative integers from an attribute list (pads, strides, dilations…).
fn to_usizes(node: &Node, name: &str, v: &[i64]) -> Result<Vec<usize>> {
    v.iter()
        .map(|&x| {
            usize::try_from(x)
                .map_err(|_| invalid(node, format!("attribute {name} has a negative entry {x}")))
        })
        .collect()
}

/// Input `i` as an `f32` array (required input).
fn input_f32<'a>(node: &Node, inputs: &[Option<&'a Tensor>], i: usize) -> Result<&'a ArrayD<f32>> {
    let t = inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| Error::InvalidInput(format!("{}: input {i} is missing", who(node))))?;
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
        return Err(shape_err(
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
        .map_err(|e| Error::InvalidInput(format!("{}: output shape {shape:?}: {e}", who(node))))
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
                who(node)
            ))
        })
}

/// Padding mode of convolutions and pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

fn auto_pad(node: &Node) -> Result<AutoPad> {
    match attr_string(node, "auto_pad", "NOTSET")?.as_str() {
        "NOTSET" | "" => Ok(AutoPad::NotSet),
        "SAME_UPPER" => Ok(AutoPad::SameUpper),
        "SAME_LOWER" => Ok(AutoPad::SameLower),
        "VALID" => Ok(AutoPad::Valid),
        other => Err(invalid(node, format!("unknown auto_pad {other:?}"))),
    }
}

/// Spatial window attributes (`strides`, `dilations`, `pads`, `auto_pad`, `ceil_mode`)
/// shared by Conv, the pools and the quantized convolutions of `edgeml-quant`
/// (`QLinearConv`, `ConvInteger`), so every operator reads them the same way.
#[derive(Debug, Clone)]
pub struct Window {
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    /// `[begin_0, …, begin_k, end_0, …, end_k]` as given (ignored unless NOTSET).
    pads: Vec<usize>,
    auto_pad: AutoPad,
    ceil_mode: bool,
}

impl Window {
    /// Reads the attributes; `kernel` comes from the attribute or the caller.
    ///
    /// # Errors
    /// Attributes of the wrong type or length, zero kernel extents, strides or
    /// dilations, or an unknown `auto_pad`.
    pub fn from_node(node: &Node, kernel: Vec<usize>) -> Result<Self> {
        let k = kernel.len();
        let get = |name: &str, default: usize, len: usize| -> Result<Vec<usize>> {
            match attr_ints(node, name)? {
                None => Ok(vec![default; len]),
                Some(v) if v.len() == len => to_usizes(node, name, &v),
                Some(v) => Err(invalid(
                    node,
                    format!("attribute {name} has {} entries, expected {len}", v.len()),
                )),
            }
        };
        let w = Window {
            strides: get("strides", 1, k)?,
            dilations: get("dilations", 1, k)?,
            pads: get("pads", 0, 2 * k)?,
            auto_pad: auto_pad(node)?,
            ceil_mode: attr_int(node, "ceil_mode", 0)? != 0,
            kernel,
        };
        if w.strides.contains(&0) || w.dilations.contains(&0) || w.kernel.contains(&0) {
            return Err(invalid(
                node,
                "kernel_shape, strides and dilations must be positive",
            ));
        }
        Ok(w)
    }

    /// The kernel extents.
    pub fn kernel(&self) -> &[usize] {
        &self.kernel
    }

    /// The strides, one per spatial axis.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// The dilations, one per spatial axis.
    pub fn dilations(&self) -> &[usize] {
        &self.dilations
    }

    /// Output extents, begin pads and end pads for the input extents `input`, with
    /// `auto_pad` resolved; the end pads are the ones the output extents use (padding
    /// beyond the last window is never read).
    ///
    /// # Errors
    /// As [`Window::geometry`].
    pub fn resolve(&self, node: &Node, input: &[usize]) -> Result<[Vec<usize>; 3]> {
        let (out, begin) = self.geometry(node, input)?;
        let end = (0..out.len())
            .map(|i| {
                let eff = (self.kernel[i] - 1) * self.dilations[i] + 1;
                ((out[i].max(1) - 1) * self.strides[i] + eff).saturating_sub(input[i] + begin[i])
            })
            .collect();
        Ok([out, begin, end])
    }

    /// Output extents and begin pads for the input extents `input`.
    ///
    /// # Errors
    /// A rank that differs from the kernel's, a window larger than the padded input, or
    /// an overflowing kernel extent.
    #[allow(clippy::needless_range_loop)] // walks five parallel per-axis lists
    pub fn geometry(&self, node: &Node, input: &[usize]) -> Result<(Vec<usize>, Vec<usize>)> {
        let k = self.kernel.len();
        if input.len() != k {
            return Err(shape_err(
                node,
                format!("{}-D input for a {k}-D window", input.len()),
            ));
        }
        let mut out = Vec::with_capacity(k);
        let mut begin = Vec::with_capacity(k);
        for i in 0..k {
            let eff = (self.kernel[i] - 1)
                .checked_mul(self.dilations[i])
                .and_then(|x| x.checked_add(1))
                .ok_or_else(|| invalid(node, "kernel extent overflows"))?;
            let (s, n) = (self.strides[i], input[i]);
            let (o, pb) = match self.auto_pad {
                AutoPad::NotSet | AutoPad::Valid => {
                    let (pb, pe) = if self.auto_pad == AutoPad::Valid {
                        (0, 0)
                    } else {
                        (self.pads[i], self.pads[k + i])
                    };
                    let padded = n + pb + pe;
                    if padded < eff {
                        return Err(shape_err(
                            node,
                            format!(
                                "window {eff} larger than padded input {padded} on spatial axis {i}"
                            ),
                        ));
                    }
                    let span = padded - eff;
                    let mut o = if self.ceil_mode {
                        span.div_ceil(s) + 1
                    } else {
                        span / s + 1
                    };
                    if self.ceil_mode && (o - 1) * s >= n + pb {
                        o -= 1;
                    }
                    (o, pb)
                }
                AutoPad::SameUpper | AutoPad::SameLower => {
                    let o = n.div_ceil(s);
                    let total = ((o.max(1) - 1) * s + eff).saturating_sub(n);
                    let pb = if self.auto_pad == AutoPad::SameUpper {
                        total / 2
                    } else {
                        total - total / 2
                    };
                    (o, pb)
                }
            };
            out.push(o);
            begin.push(pb);
        }
        Ok((out, begin))
    }
}

/// Left-pads a spatial shape to 3 dimensions with 1s (so 1-D and 2-D share 3-D loops).
fn to3(v: &[usize], fill: usize) -> [usize; 3] {
    let mut r = [fill; 3];
    let off = 3 - v.len();
    r[off..].copy_from_slice(v);
    r
}

//! The operators behind the Conv + Add (+ activation), Conv + Concat and MatMul + bias
//! fusions of [`super::optimize`], and the activations a fused chain can end with.

use crate::ops::nn::conv::Conv;
use crate::{Error, Operator, Result, Tensor};

/// An activation that can end a fused chain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Act {
    Relu,
    LeakyRelu(f32),
    Clip(f32, f32),
    Sigmoid,
    Tanh,
    HardSigmoid(f32, f32),
    /// `x · sigmoid(x)`: a `Sigmoid` and the `Mul` of its input by it (SiLU, Swish).
    Silu,
    /// ONNX `HardSwish`.
    HardSwish,
}

impl Act {
    /// The activation `node` applies (`Relu`, `LeakyRelu`, `Sigmoid`, `Tanh`,
    /// `HardSigmoid`, `HardSwish`, `Clip`), its parameters read from attributes and,
    /// for `Clip` from opset 11, from constant inputs as `konst` knows them (a missing
    /// bound does not clip; below opset 11 the attribute defaults are ±`f32::MAX`);
    /// `None` for other operators or bounds that are not constant scalars. One matcher
    /// for the planner's convolution chains and [`crate::passes::FuseConvActivation`].
    pub(crate) fn of_node<'t>(
        node: &crate::Node,
        opset: i64,
        konst: &dyn Fn(&str) -> Option<&'t Tensor>,
    ) -> Option<Act> {
        Some(match node.op_type.as_str() {
            "Relu" => Act::Relu,
            "LeakyRelu" => Act::LeakyRelu(node.float_attr("alpha", 0.01)),
            "Sigmoid" => Act::Sigmoid,
            "Tanh" => Act::Tanh,
            "HardSwish" => Act::HardSwish,
            "HardSigmoid" => {
                Act::HardSigmoid(node.float_attr("alpha", 0.2), node.float_attr("beta", 0.5))
            }
            "Clip" if opset < 11 => Act::Clip(
                node.float_attr("min", f32::MIN),
                node.float_attr("max", f32::MAX),
            ),
            "Clip" => {
                let bound = |i: usize, default: f32| -> Option<f32> {
                    match node.inputs.get(i).filter(|n| !n.is_empty()) {
                        None => Some(default),
                        Some(n) => {
                            let a = konst(n)?.as_f32()?;
                            (a.len() == 1).then(|| a.iter().next().copied()).flatten()
                        }
                    }
                };
                Act::Clip(bound(1, f32::NEG_INFINITY)?, bound(2, f32::INFINITY)?)
            }
            _ => return None,
        })
    }

    /// Whether onnxruntime's `com.microsoft` `FusedConv` has this activation (`Silu`
    /// and `HardSwish` are edgeml's own).
    pub(crate) fn in_onnxruntime(self) -> bool {
        !matches!(self, Act::Silu | Act::HardSwish)
    }

    /// `FusedConv`'s `activation` / `activation_params` attributes.
    pub(crate) fn attributes(self) -> (&'static str, Vec<f32>) {
        match self {
            Act::Relu => ("Relu", vec![]),
            Act::LeakyRelu(a) => ("LeakyRelu", vec![a]),
            Act::Clip(lo, hi) => ("Clip", vec![lo, hi]),
            Act::Sigmoid => ("Sigmoid", vec![]),
            Act::Tanh => ("Tanh", vec![]),
            Act::HardSigmoid(a, b) => ("HardSigmoid", vec![a, b]),
            // edgeml's own FusedConv only: onnxruntime's has no such activation.
            Act::Silu => ("Silu", vec![]),
            // edgeml's own FusedConv only, as Silu.
            Act::HardSwish => ("HardSwish", vec![]),
        }
    }

    /// Applies the activation in place with the standalone operators' semantics
    /// (NaN propagates through `Relu` and `Clip`; `Sigmoid`, `Tanh` and `HardSigmoid`
    /// run the same vectorized `f32` kernels as the standalone operators on `f32`).
    pub(crate) fn apply(self, v: &mut [f32]) {
        match self {
            Act::Relu => crate::ops::activation::relu_in_place(v),
            Act::LeakyRelu(a) => v
                .iter_mut()
                .for_each(|x| *x = if *x < 0.0 { *x * a } else { *x }),
            Act::Clip(lo, hi) => v.iter_mut().for_each(|x| {
                let y = if *x < lo { lo } else { *x };
                *x = if y > hi { hi } else { y };
            }),
            Act::Sigmoid => crate::kernels::vmath::sigmoid_in_place(v),
            Act::Tanh => crate::kernels::vmath::tanh_in_place(v),
            Act::Silu => crate::kernels::vmath::silu_in_place(v),
            Act::HardSwish => crate::kernels::vmath::hardswish_in_place(v),
            Act::HardSigmoid(a, b) => v
                .iter_mut()
                .for_each(|x| *x = crate::kernels::vmath::hard_sigmoid(*x, a, b)),
        }
    }
}

/// The first output of a fused step's part `op` run on `args`.
fn first_output(op: &dyn Operator, args: &[Option<&Tensor>], what: &str) -> Result<Tensor> {
    op.run(args)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::InvalidModel(format!("fused {what} produced no output")))
}

/// `act(Conv(X, W, B) + Z)`: `Z` is added to the convolution's output in place when the
/// shapes agree, else through the original `Add`/`Sum` (broadcasting).
#[derive(Debug)]
pub(crate) struct ConvAdd {
    pub(crate) conv: Box<dyn Operator>,
    pub(crate) add: Box<dyn Operator>,
    pub(crate) conv_first: bool,
    pub(crate) act: Option<Act>,
}

impl Operator for ConvAdd {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let z = inputs.get(3).copied().flatten();
        let mut y = first_output(self.conv.as_ref(), &inputs[..3.min(inputs.len())], "Conv")?;
        let mut out = match (&mut y, z) {
            (Tensor::F32(ya), Some(Tensor::F32(za))) if ya.shape() == za.shape() => {
                *ya += za;
                y
            }
            (_, z) => {
                let args = if self.conv_first {
                    [Some(&y), z]
                } else {
                    [z, Some(&y)]
                };
                first_output(self.add.as_ref(), &args, "Add")?
            }
        };
        if let Some(act) = self.act {
            match &mut out {
                Tensor::F32(a) => match a.as_slice_mut() {
                    Some(s) => act.apply(s),
                    None => a
                        .iter_mut()
                        .for_each(|x| act.apply(std::slice::from_mut(x))),
                },
                other => {
                    return Err(Error::InvalidInput(format!(
                        "fused activation needs float input, found {:?}",
                        other.dtype()
                    )));
                }
            }
        }
        Ok(vec![out])
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    /// Whether the convolution does.
    fn runs_sparse(&self) -> bool {
        self.conv.runs_sparse()
    }
}

/// `MatMul(A, B) + bias`, the bias a constant broadcast along the last axis only
/// (every dimension but the last is 1): added to each row of the product in place right
/// after the GEMM, while the rows are still in cache, where the `Add` would write a new
/// tensor. Each element is the same `f32` sum the `Add` computes (so results are
/// bit-identical); a product of lower rank than the bias (a 1-D `A`) goes through the
/// original `Add`. Inputs: `A`, `B`, the bias.
#[derive(Debug)]
pub(crate) struct MatMulBias {
    pub(crate) matmul: Box<dyn Operator>,
    pub(crate) add: Box<dyn Operator>,
    /// Whether the product is the `Add`'s first operand.
    pub(crate) matmul_first: bool,
}

impl Operator for MatMulBias {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let bias = inputs.get(2).copied().flatten();
        let mut y = first_output(
            self.matmul.as_ref(),
            &inputs[..2.min(inputs.len())],
            "MatMul",
        )?;
        if let (Tensor::F32(ya), Some(Tensor::F32(ba))) = (&mut y, bias)
            && ba.ndim() <= ya.ndim()
            && ya.shape().last() == ba.shape().last()
            && let (Some(rows), Some(b)) = (ya.as_slice_mut(), ba.as_slice())
            && !b.is_empty()
        {
            for row in rows.chunks_exact_mut(b.len()) {
                for (v, &c) in row.iter_mut().zip(b) {
                    *v += c;
                }
            }
            return Ok(vec![y]);
        }
        let args = if self.matmul_first {
            [Some(&y), bias]
        } else {
            [bias, Some(&y)]
        };
        self.add.run(&args)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    /// Whether the `MatMul` does.
    fn runs_sparse(&self) -> bool {
        self.matmul.runs_sparse()
    }
}

/// Operands each part of a [`ConvConcat`] takes: `X`, `W`, `B` (absent ones `None`).
pub(crate) const CONV_ARITY: usize = 3;

/// `Concat(axis = 1)` of convolution chains (`Conv`, or `FusedConv` without `Z`) that
/// have no other consumer, such as the two expand convolutions of a SqueezeNet fire
/// module: with batch 1 each convolution writes its channels straight into the
/// concatenated output, which saves the copy. Inputs are [`CONV_ARITY`] per part, in
/// the `Concat`'s order. Other batch sizes, and anything the direct path does not
/// expect, run the parts and the original `Concat`, so results never depend on it.
#[derive(Debug)]
pub(crate) struct ConvConcat {
    /// The convolutions; each is edgeml's [`Conv`] (checked when planned).
    pub(crate) parts: Vec<Box<dyn Operator>>,
    /// The original `Concat`, for the fallback.
    pub(crate) concat: Box<dyn Operator>,
}

/// Part `i`'s operands among a [`ConvConcat`]'s inputs.
fn part_args<'a, 't>(inputs: &'a [Option<&'t Tensor>], i: usize) -> &'a [Option<&'t Tensor>] {
    &inputs[i * CONV_ARITY..(i + 1) * CONV_ARITY]
}

impl ConvConcat {
    /// The direct path: `None` when it does not apply.
    fn direct(&self, inputs: &[Option<&Tensor>]) -> Option<Result<Tensor>> {
        let convs: Vec<&Conv> = self
            .parts
            .iter()
            .map(|p| p.as_any()?.downcast_ref::<Conv>())
            .collect::<Option<_>>()?;
        let mut shapes = Vec::with_capacity(convs.len());
        for (i, c) in convs.iter().enumerate() {
            match c.output_shape(part_args(inputs, i)) {
                Ok(s) => shapes.push(s),
                // Let the parts report their own errors.
                Err(_) => return None,
            }
        }
        let first = shapes.first()?;
        if first[0] != 1
            || shapes
                .iter()
                .any(|s| s.len() != first.len() || s[2..] != first[2..])
        {
            return None;
        }
        let lens: Vec<usize> = shapes
            .iter()
            .map(|s| s.iter().try_fold(1usize, |a, &d| a.checked_mul(d)))
            .collect::<Option<_>>()?;
        let total = lens.iter().try_fold(0usize, |a, &l| a.checked_add(l))?;
        let mut shape = first.clone();
        shape[1] = shapes.iter().map(|s| s[1]).sum();
        let mut out = crate::buffers::take_f32_overwritten(total);
        let mut off = 0;
        for (i, (c, len)) in convs.iter().zip(&lens).enumerate() {
            if let Err(e) = c.conv_into(part_args(inputs, i), &mut out[off..off + len]) {
                return Some(Err(e));
            }
            off += len;
        }
        Some(crate::buffers::f32_tensor(&shape, out))
    }
}

impl Operator for ConvConcat {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        if inputs.len() != self.parts.len() * CONV_ARITY {
            return Err(Error::InvalidInput(format!(
                "fused Conv + Concat: {} inputs for {} parts",
                inputs.len(),
                self.parts.len()
            )));
        }
        if let Some(r) = self.direct(inputs) {
            return Ok(vec![r?]);
        }
        let mut ys = Vec::with_capacity(self.parts.len());
        for (i, p) in self.parts.iter().enumerate() {
            ys.push(first_output(p.as_ref(), part_args(inputs, i), "Conv")?);
        }
        let refs: Vec<Option<&Tensor>> = ys.iter().map(Some).collect();
        self.concat.run(&refs)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    /// Whether any of the convolutions does (the step counts once).
    fn runs_sparse(&self) -> bool {
        self.parts.iter().any(|p| p.runs_sparse())
    }
}

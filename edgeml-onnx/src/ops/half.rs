//! Half-precision (`float16`, `bfloat16`) tensors on operators that compute in `f32`
//! only.
//!
//! onnxruntime's CPU provider has float16 kernels for few operators and surrounds the
//! others with `Cast` nodes (its `InsertCastTransformer`), so a float16 model computes
//! in float32 between rounding steps. [`via_f32`] does the same inside one operator:
//! half inputs are widened to `f32` (exact), the `f32` operator runs, and its `f32`
//! outputs are rounded to the half type of the inputs (to nearest, ties to even).
//! Constant half inputs (weights) are widened once, when the plan is built, so the
//! operator packs them as it packs `f32` weights.
//!
//! Which type an operator computes in is decided at plan time by its first input of the
//! operator's float type whose element type is known: `f32` or `f64` builds the operator as it is (no wrapper, and
//! plan-time rewrites that look for edgeml's own operators still apply); a half type,
//! or no known type, builds the wrapper, which passes `f32` inputs straight through.

use crate::op::{BuildContext, InputType, OpFactory, Operator};
use crate::{Registry, Result, Tensor};
use edgeml_core::{DType, bf16, f16};
use std::sync::Arc;

/// The default-domain operators whose implementations compute in `f32` (or are generic
/// over the numeric types without the half ones) and whose floating-point outputs have
/// the input's type.
const VIA_F32: &[&str] = &[
    // Neural-network layers.
    "Conv",
    "ConvTranspose",
    "MatMul",
    "Gemm",
    "BatchNormalization",
    "LayerNormalization",
    "InstanceNormalization",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "LSTM",
    "GRU",
    "LRN",
    // Arithmetic, reductions and the like.
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Mod",
    "Neg",
    "Abs",
    "Relu",
    "Sign",
    "Sum",
    "Mean",
    "Max",
    "Min",
    "PRelu",
    "Clip",
    "Softmax",
    "LogSoftmax",
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceSumSquare",
    "ReduceLogSumExp",
    "ArgMax",
    "ArgMin",
    "TopK",
    "Resize",
    "Upsample",
];

/// Makes the [`VIA_F32`] operators of `r` (and `com.microsoft` `FusedConv`) accept half
/// inputs ([`via_f32`]).
pub(crate) fn compute_in_f32(r: &mut Registry) {
    r.wrap("", VIA_F32, via_f32);
    r.wrap("com.microsoft", &["FusedConv"], via_f32);
}

/// `build` for an operator that computes in `f32` only, accepting half inputs as
/// described in the [module](self) documentation.
fn via_f32(build: Arc<dyn OpFactory>) -> Arc<dyn OpFactory> {
    Arc::new(move |ctx: &BuildContext<'_>| -> Result<Box<dyn Operator>> {
        // Resize's `roi` and `scales` are float whatever its data's type.
        let typed = match ctx.node.op_type.as_str() {
            "Resize" | "Upsample" => 1,
            _ => ctx.input_types.len(),
        };
        let decided = ctx.input_types[..typed.min(ctx.input_types.len())]
            .iter()
            .flatten()
            .filter_map(|t| t.dtype)
            .find(|d| matches!(d, DType::F32 | DType::F64 | DType::F16 | DType::BF16));
        if matches!(decided, Some(DType::F32 | DType::F64)) {
            return build.build(ctx);
        }
        let consts: Vec<Option<Tensor>> = ctx
            .constant_inputs
            .iter()
            .map(|c| c.and_then(widen))
            .collect();
        let constant_inputs = ctx
            .constant_inputs
            .iter()
            .zip(&consts)
            .map(|(c, w)| w.as_ref().or(*c))
            .collect();
        let input_types = ctx
            .input_types
            .iter()
            .map(|t| {
                t.as_ref().map(|t| InputType {
                    dtype: t.dtype.map(|d| match d {
                        DType::F16 | DType::BF16 => DType::F32,
                        d => d,
                    }),
                    shape: t.shape.clone(),
                })
            })
            .collect();
        let inner_ctx = BuildContext::new(ctx.node, ctx.opset, constant_inputs)
            .with_input_types(input_types)
            .with_sparse(ctx.sparse);
        Ok(Box::new(HalfViaF32 {
            inner: build.build(&inner_ctx)?,
            consts,
        }) as Box<dyn Operator>)
    })
}

/// `t` widened to `f32` if it is a half tensor.
fn widen(t: &Tensor) -> Option<Tensor> {
    match t {
        Tensor::F16(a) => Some(Tensor::F32(a.mapv(f16::to_f32))),
        Tensor::BF16(a) => Some(Tensor::F32(a.mapv(bf16::to_f32))),
        _ => None,
    }
}

/// An `f32` operator run on half inputs (see the [module](self) documentation).
#[derive(Debug)]
struct HalfViaF32 {
    inner: Box<dyn Operator>,
    /// The constant half inputs, widened at plan time (`None`: not such an input).
    consts: Vec<Option<Tensor>>,
}

fn is_half(t: &Tensor) -> bool {
    matches!(t.dtype(), DType::F16 | DType::BF16)
}

impl Operator for HalfViaF32 {
    fn consumes_first_input(&self) -> bool {
        self.inner.consumes_first_input()
    }

    fn run_consuming(&self, first: Tensor, rest: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        if is_half(&first) || rest.iter().flatten().any(|t| is_half(t)) {
            let mut args = Vec::with_capacity(rest.len() + 1);
            args.push(Some(&first));
            args.extend_from_slice(rest);
            return self.run(&args);
        }
        self.inner.run_consuming(first, rest)
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let half = inputs.iter().flatten().find_map(|t| match t.dtype() {
            d @ (DType::F16 | DType::BF16) => Some(d),
            _ => None,
        });
        let Some(half) = half else {
            return self.inner.run(inputs);
        };
        let widened: Vec<Option<Tensor>> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| match self.consts.get(i).and_then(Option::as_ref) {
                Some(_) => None,
                None => t.and_then(widen),
            })
            .collect();
        let args: Vec<Option<&Tensor>> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                self.consts
                    .get(i)
                    .and_then(Option::as_ref)
                    .or(widened[i].as_ref())
                    .or(*t)
            })
            .collect();
        let out = self.inner.run(&args)?;
        Ok(out
            .into_iter()
            .map(|t| match (t, half) {
                (Tensor::F32(a), DType::BF16) => Tensor::BF16(a.mapv(bf16::from_f32)),
                (Tensor::F32(a), _) => Tensor::F16(a.mapv(f16::from_f32)),
                (t, _) => t,
            })
            .collect())
    }
}

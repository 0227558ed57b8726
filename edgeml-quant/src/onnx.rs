//! INT8 operators for the `edgeml-onnx` interpreter, and the QDQ fusion that sends
//! quantized ONNX models to them.
//!
//! [`register`] adds to a [`Registry`]:
//! - `QuantizeLinear`, `DequantizeLinear` (per-tensor and per-axis, u8/i8, opsets 10–21;
//!   `block_size > 0` and float8 outputs are refused as unsupported, naming the node),
//!   `DynamicQuantizeLinear`;
//! - `QLinearMatMul`, `MatMulInteger` (N-D batching with numpy broadcasting, constant
//!   or run-time weights), and onnxruntime's `com.microsoft` `MatMulIntegerToFloat`,
//!   `DynamicQuantizeMatMul` and `QGemm`;
//! - `QLinearConv`, `ConvInteger` (1-D and 2-D, `group`, `strides`, `dilations`, `pads`
//!   and `auto_pad`, constant or run-time weights);
//! - onnxruntime's `com.microsoft` `QLinearAdd`, `QLinearMul`, `QLinearSigmoid`,
//!   `QLinearLeakyRelu`, `QLinearSoftmax`, `QLinearAveragePool`,
//!   `QLinearGlobalAveragePool`, `QLinearConcat`, and `MaxPool` on u8/i8;
//! - edgeml's `com.edgeml` `QLinearConv` with a fused `Relu`, and `QLinearLookup`, an
//!   activation (`Sigmoid`, `HardSigmoid`, `HardSwish`, `Tanh`, `Gelu`, `LeakyRelu`,
//!   `Relu`, `Clip`) through a 256-entry table; both are written by [`fuse_qdq`].
//!
//! The generic operators of `edgeml-onnx` that only move or select values (`Pad`,
//! `Resize` nearest, `Split`, `Slice`, `Gather`, `Transpose`, `Reshape`, `Flatten`,
//! `Squeeze`, `Unsqueeze`, `Concat`, `Identity`) run on u8/i8 tensors as they are.
//!
//! Weights that are constant at plan time are packed once when the plan is built. The
//! kernels are the exact ones of [`crate::gemm`] and [`crate::conv`]; inside a plan with
//! several threads they split work over the plan's own pool.
//!
//! [`fuse_qdq`] rewrites `DequantizeLinear → op → QuantizeLinear` groups (the QDQ format
//! that `onnxruntime.quantization.quantize_static` writes by default; Conv, MatMul,
//! Gemm, Add, the activations above, the average pools, Concat, and the exact operators)
//! into the fused operators, as onnxruntime's graph optimizer does, so a QDQ model runs
//! on the INT8 kernels rather than in float. [`prepare`] applies it and returns a
//! registry with these operators; `edgeml run`/`bench` do both by default.
//!
//! Numerics follow the ONNX specification and onnxruntime where the specification is
//! silent: `QuantizeLinear` divides by the scale and rounds half to even, saturating to
//! the output type; NaN quantizes to the type's lowest value (as MLAS's clamp does).
//! Scales must be finite and positive, zero points inside their type; an int32
//! `DequantizeLinear` needs a zero point of 0. An activation table's entry `q` is
//! `saturate(round_half_even(f(x_scale · (q − x_zp)) / y_scale) + y_zp)` with the
//! dequantization and division in `f32` and `f` in `f64` rounded to `f32`; it is built
//! once at plan time when the parameters are constant. onnxruntime's own `f32`
//! approximations of `f` can differ from it by one step next to a rounding tie.

mod conv;
mod fuse;
mod lut;
mod matmul;
mod params;
mod qdq;
mod qelementwise;
mod qpool;
mod summary;

pub use fuse::{FuseReport, FuseTarget, fuse_qdq, fuse_qdq_for};
pub use summary::{QuantSummary, summarize};

use edgeml_onnx::ops::attr::describe;
use edgeml_onnx::ops::util::input;
use edgeml_onnx::{
    BuildContext, Error as OnnxError, Model, Node, Operator, Registry, RunStop, Tensor,
};
use std::sync::Arc;

/// Registers the INT8 operators into `r` (later registrations win, so these replace any
/// earlier entry of the same name).
pub fn register(r: &mut Registry) {
    const ALL: i64 = i64::MAX;
    r.register("", "QuantizeLinear", 10, ALL, qdq::build_quantize);
    r.register("", "DequantizeLinear", 10, ALL, qdq::build_dequantize);
    r.register("", "DynamicQuantizeLinear", 11, ALL, qdq::build_dynamic);
    r.register(
        "",
        "QLinearMatMul",
        10,
        ALL,
        polled(matmul::build_qlinear_matmul),
    );
    r.register(
        "",
        "MatMulInteger",
        10,
        ALL,
        polled(matmul::build_matmul_integer),
    );
    r.register("", "QLinearConv", 10, ALL, polled(conv::build_qlinear_conv));
    r.register("", "ConvInteger", 10, ALL, polled(conv::build_conv_integer));
    // QLinearConv with a fused activation, written only by `fuse_qdq` for execution.
    r.register(
        "com.edgeml",
        "QLinearConv",
        1,
        ALL,
        polled(conv::build_qlinear_conv),
    );
    // Activations through 256-entry tables, written by `fuse_qdq` (see `lut`).
    r.register("com.edgeml", "QLinearLookup", 1, ALL, lut::build_lookup);
    const MS: &str = "com.microsoft";
    r.register(
        MS,
        "QLinearAveragePool",
        1,
        ALL,
        qpool::build_qlinear_average_pool,
    );
    r.register(
        MS,
        "MatMulIntegerToFloat",
        1,
        ALL,
        polled(matmul::build_integer_to_float),
    );
    r.register(
        MS,
        "DynamicQuantizeMatMul",
        1,
        ALL,
        polled(matmul::build_dynamic_matmul),
    );
    r.register(MS, "QGemm", 1, ALL, polled(matmul::build_qgemm));
    qelementwise::register(r);
}

/// `factory`'s operators wrapped in [`Polled`].
fn polled(
    factory: fn(&BuildContext<'_>) -> edgeml_onnx::Result<Box<dyn Operator>>,
) -> impl Fn(&BuildContext<'_>) -> edgeml_onnx::Result<Box<dyn Operator>> + Send + Sync {
    move |ctx| Ok(Box::new(Polled(factory(ctx)?)) as Box<dyn Operator>)
}

/// An INT8 operator whose kernels poll the run's deadline and cancellation
/// ([`RunStop`]) before each chunk of their parallel loops (`kernels::driver::par_chunks`,
/// at least 8 chunks per call when the run has a deadline or a token), so a long
/// quantized convolution or matrix product stops as a float one does, with
/// `Error::Cancelled` / `Error::DeadlineExceeded` naming the node. A run with neither
/// pays one branch per step.
#[derive(Debug)]
struct Polled(Box<dyn Operator>);

impl Polled {
    fn call(
        &self,
        f: impl FnOnce() -> edgeml_onnx::Result<Vec<Tensor>>,
    ) -> edgeml_onnx::Result<Vec<Tensor>> {
        let stop = RunStop::current();
        if !stop.is_active() {
            return f();
        }
        let poll = stop.clone();
        let (r, stopped) =
            crate::kernels::driver::with_stop(Arc::new(move || poll.should_stop()), f);
        if stopped {
            Err(stop.error("an INT8 kernel"))
        } else {
            r
        }
    }
}

impl Operator for Polled {
    fn run(&self, inputs: &[Option<&Tensor>]) -> edgeml_onnx::Result<Vec<Tensor>> {
        self.call(|| self.0.run(inputs))
    }

    fn consumes_first_input(&self) -> bool {
        self.0.consumes_first_input()
    }

    fn run_consuming(
        &self,
        first: Tensor,
        rest: &[Option<&Tensor>],
    ) -> edgeml_onnx::Result<Vec<Tensor>> {
        self.call(|| self.0.run_consuming(first, rest))
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        self.0.as_any()
    }

    fn runs_sparse(&self) -> bool {
        self.0.runs_sparse()
    }
}

/// The default `edgeml-onnx` registry with the INT8 operators added.
pub fn registry() -> Registry {
    let mut r = edgeml_onnx::ops::default_registry();
    register(&mut r);
    r
}

/// Makes `model` ready for INT8 execution: fuses its QDQ groups ([`fuse_qdq`]) and
/// returns the registry to plan it with ([`registry`]).
///
/// ```no_run
/// use edgeml_onnx::{Model, Plan, PlanOptions};
///
/// let mut model = Model::load("model_int8.onnx")?;
/// let (registry, report) = edgeml_quant::onnx::prepare(&mut model);
/// println!("{report}"); // e.g. "fused 52 QLinearConv, 1 QGemm (204 nodes removed)"
/// let plan = Plan::with_registry(&model, PlanOptions::default(), &registry)?;
/// # let _ = plan;
/// # Ok::<(), edgeml_onnx::Error>(())
/// ```
pub fn prepare(model: &mut Model) -> (Registry, FuseReport) {
    let report = fuse_qdq(model);
    (registry(), report)
}

/// Worker threads the kernels may use: the plan's pool when running inside one with
/// more than one thread, else the calling thread only (never rayon's global pool).
pub(super) fn threads() -> usize {
    if rayon::current_thread_index().is_some() {
        rayon::current_num_threads().max(1)
    } else {
        1
    }
}

/// The kernels' options for a call made now.
/// An output array for a kernel that writes every element: a recycled block from the
/// plan's buffer pool when one fits (see `edgeml_onnx::buffers::take_overwritten`), so
/// neither zero-filling nor fresh pages are paid on every run.
fn overwritten<T: crate::QElem, D: ndarray::Dimension>(
    shape: D,
) -> edgeml_onnx::Result<ndarray::Array<T, D>> {
    let v = edgeml_onnx::buffers::take_overwritten::<T>(shape.size());
    ndarray::Array::from_shape_vec(shape, v).map_err(|e| OnnxError::Internal(e.to_string()))
}

fn gemm_options() -> crate::GemmOptions {
    crate::GemmOptions { threads: threads() }
}

/// An `edgeml-onnx` error naming `node`, from a kernel error.
fn kernel_err(node: &Node, e: crate::Error) -> OnnxError {
    let msg = format!("{}: {e}", describe(node));
    match e {
        crate::Error::Shape(_) => OnnxError::ShapeMismatch(msg),
        crate::Error::IsaUnavailable(_) => OnnxError::Unsupported(msg),
        crate::Error::Limit(_) => OnnxError::LimitExceeded(msg),
        _ => OnnxError::InvalidInput(msg),
    }
}

/// Input `which` (a position of `pos`, where `usize::MAX` means "this operator has no
/// such input") if present.
fn get<'t>(pos: &[usize; 9], inputs: &[Option<&'t Tensor>], which: usize) -> Option<&'t Tensor> {
    inputs.get(pos[which]).copied().flatten()
}

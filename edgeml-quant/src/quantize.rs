//! Whole-model post-training quantization of ONNX models: [`quantize_static`] calibrates
//! a float model on sample inputs and writes a QDQ model, the format of onnxruntime's
//! `quantize_static` (`QuantFormat.QDQ`), which onnxruntime, edgeml
//! ([`crate::onnx::prepare`]) and other runtimes run on INT8 kernels;
//! [`quantize_dynamic`] writes onnxruntime's dynamic form (int8 weights, activations
//! quantized at run time by `DynamicQuantizeLinear`); [`quantize_weight_only`] stores
//! only the weights in int8 (float compute).
//!
//! What the pass writes, for each quantizable node (`Conv`, `Gemm`, `MatMul` of the
//! default domain with a constant float weight, not excluded):
//! - its activation input and its output get a `QuantizeLinear → DequantizeLinear` pair
//!   (per-tensor, u8 asymmetric by default) whose parameters come from the calibrated
//!   range; every consumer of the tensor reads the dequantized value;
//! - its weight becomes an int8 initializer (symmetric, per-tensor or per output
//!   channel) read through a `DequantizeLinear`;
//! - its bias (a 1-D constant with one value per output channel) becomes an int32
//!   initializer with scale `x_scale · w_scale` and zero point 0, through a
//!   `DequantizeLinear`;
//! - a `Relu`, or a `Clip` with constant bounds and lower bound 0, that is the only
//!   consumer of its output is removed and the output range is calibrated after it:
//!   the output `QuantizeLinear` (zero point at the bottom of the integer range)
//!   saturates exactly as the activation would (as onnxruntime's quantizer does). This
//!   needs asymmetric activations; with symmetric ones the activation stays.
//!
//! A `Sigmoid` whose input is one of these quantized tensors (the gate of a SiLU
//! `x · sigmoid(x)` after a convolution) gets a calibrated `QuantizeLinear →
//! DequantizeLinear` pair on its output too, as onnxruntime's quantizer does, unless
//! that output is a graph output: runtimes run it as an INT8 lookup table, and the
//! `Mul` reads two quantized values. It stays listed in [`Report::float_nodes`] (its
//! operator is float in the file).
//!
//! Exact operators (`MaxPool`, `Flatten`, `Reshape`, `Transpose`, `Squeeze`,
//! `Unsqueeze`, `Identity`) between two quantized tensors then run on the integer
//! codes with their input's scale and zero point ([`Config::exact_ops_in_int8`]): the
//! `DequantizeLinear` before and the `QuantizeLinear` after them go, saving a
//! requantization. Other operators stay in float and are listed in
//! [`Report::float_nodes`].
//!
//! With [`Config::layer_errors`] or [`Config::target_sqnr`] the report holds each
//! quantized node's SQNR and the model outputs' ([`Report::output_sqnr_db`]);
//! [`Config::target_sqnr`] keeps the worst nodes in float until the outputs reach it,
//! [`Config::bias_correction`] corrects biases for the mean error of weight
//! rounding, and [`Config::equalize`] balances the weight ranges of `Conv → [Relu] →
//! Conv` pairs first ([`equalize`]). All keep the QDQ format described above.
//!
//! Every pass first turns `Constant` nodes into initializers, turns each `MatMul` with
//! a 2-D input and a constant bias `Add` into one `Gemm` (not for the standard-domain
//! [`Format::QOperator`], which has `QLinearMatMul` and no quantized `Gemm`), and folds
//! `BatchNormalization` into the `Conv`, `ConvTranspose` or `Gemm` before it (exact
//! rewrites; onnxruntime's `quant_pre_process` does the same), so weights written as
//! constants are quantized, a bias is added in int32 inside its layer as in TFLite's
//! fully connected layer, and batch norms do not run in float between two
//! quantizations.
//!
//! Activation tensors whose calibration saw no finite value get the range `(0, 0)`
//! (scale 1.0, zero point 0); non-finite values in activations are skipped by the
//! observers. Non-finite calibration inputs and non-finite weights are errors.

mod bias;
mod calibrate;
mod dynamic;
mod equalize;
mod exact;
mod feeds;
mod report;
mod rewrite;
mod rounds;
mod sqnr;

use crate::{Error, Result};
use edgeml_core::DType;
use edgeml_onnx::{Attribute, Model, Node};
use std::collections::{HashMap, HashSet};

/// How activation ranges are calibrated. Whatever the method, a tensor that is a graph
/// output gets its full observed range (MinMax): the histogram methods clip outliers,
/// which later layers absorb, but nothing follows a model output (a detector's box
/// coordinates, a regression target), so clipping it loses those values outright.
/// onnxruntime applies the method to outputs too (with its default 128 bins its
/// Entropy search has one candidate, the full range, anyway).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Method {
    /// The minimum and maximum seen ([`crate::MinMax`]): onnxruntime's default.
    MinMax,
    /// A percentile of the absolute values ([`crate::Percentile`]).
    Percentile {
        /// Percentage of values kept, in `(0, 100]` (onnxruntime: 99.999).
        percentile: f64,
        /// Histogram bins (onnxruntime: 2048).
        bins: usize,
    },
    /// The exponential moving average of each batch's min and max
    /// ([`crate::MovingAverageMinMax`], PyTorch's `MovingAverageMinMaxObserver`).
    MovingAverage {
        /// Averaging constant in `(0, 1]` (PyTorch: 0.01).
        averaging_constant: f64,
    },
    /// The KL-divergence threshold search ([`crate::Entropy`], onnxruntime's
    /// `CalibrationMethod.Entropy`).
    Entropy {
        /// Histogram bins, even (edgeml: 2048; see [`crate::Entropy`] for
        /// onnxruntime's 128).
        bins: usize,
        /// Quantized bins (onnxruntime: 128).
        quantized_bins: usize,
    },
    /// The L2-optimal range ([`crate::Mse`], PyTorch's `HistogramObserver`).
    Mse {
        /// Histogram bins, even (PyTorch: 2048).
        bins: usize,
    },
}

impl Method {
    /// [`Method::Percentile`] with onnxruntime's defaults (99.999, 2048 bins).
    pub const PERCENTILE: Method = Method::Percentile {
        percentile: 99.999,
        bins: 2048,
    };
    /// [`Method::MovingAverage`] with PyTorch's averaging constant 0.01.
    pub const MOVING_AVERAGE: Method = Method::MovingAverage {
        averaging_constant: 0.01,
    };
    /// [`Method::Entropy`] with 2048 bins and 128 quantized bins.
    pub const ENTROPY: Method = Method::Entropy {
        bins: 2048,
        quantized_bins: 128,
    };
    /// [`Method::Mse`] with PyTorch's 2048 bins.
    pub const MSE: Method = Method::Mse { bins: 2048 };
}

/// The operator form of a statically quantized model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Format {
    /// `QuantizeLinear → DequantizeLinear` pairs around float operators (onnxruntime's
    /// default `QuantFormat.QDQ`): every runtime reads it, and fuses what it can.
    #[default]
    Qdq,
    /// Quantized operators (onnxruntime's `QuantFormat.QOperator`): the QDQ model with
    /// its groups fused by [`crate::onnx::fuse_qdq_for`] into standard-domain
    /// `QLinearConv` and `QLinearMatMul`, and exact operators on the codes; other
    /// groups (e.g. `Gemm`, `Add`) stay in QDQ form.
    QOperator,
    /// [`Format::QOperator`] plus onnxruntime's `com.microsoft` contrib operators
    /// (`QGemm`, `QLinearAdd`, `QLinearConcat`, the quantized pools, `QLinearSigmoid`,
    /// `QLinearLeakyRelu`), as onnxruntime's own QOperator quantizer writes them; only
    /// onnxruntime and edgeml run those.
    QOperatorContrib,
}

/// Options of [`quantize_static`]. The defaults are those of onnxruntime's
/// `quantize_static` in QDQ format: MinMax calibration, u8 asymmetric activations, i8
/// symmetric per-tensor weights, no `reduce_range`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Quantize weights per output channel (default `false`).
    pub per_channel: bool,
    /// Calibration method (default [`Method::MinMax`]).
    pub method: Method,
    /// Activation type: `U8` (default), `I8`, `U16` or `I16`.
    pub activation_type: DType,
    /// Weight type: `I8` (default) or `U8`.
    pub weight_type: DType,
    /// Symmetric activation ranges (default `false`).
    pub symmetric_activations: bool,
    /// Symmetric weight ranges (default `true`, as onnxruntime for int8 weights).
    pub symmetric_weights: bool,
    /// Use 7-bit ranges, for CPUs without VNNI whose u8×i8 sums saturate (default
    /// `false`).
    pub reduce_range: bool,
    /// Node names or operator types to keep in float.
    pub exclude: Vec<String>,
    /// Run exact operators (`MaxPool`, `Flatten`, `Reshape`, `Transpose`, `Squeeze`,
    /// `Unsqueeze`, `Identity`) between two quantized tensors on the integer codes
    /// (default `true`); otherwise they run in float between a `DequantizeLinear` and
    /// a `QuantizeLinear`.
    pub exact_ops_in_int8: bool,
    /// Measure each quantized node's output error on the calibration data
    /// ([`Report::layers`]; default `false`: it runs the float and the quantized model
    /// once more over every batch).
    pub layer_errors: bool,
    /// Threads running calibration batches, each with its own observers, merged in
    /// batch order (default 1; 0 = every core). Exact for MinMax, Entropy and Mse
    /// (their merges are exact); the moving average agrees up to rounding; Percentile
    /// re-bins when merging (within a bin of its histogram).
    pub calibration_threads: usize,
    /// Automatic mixed precision (static mode): while the model's output SQNR on the
    /// calibration data ([`Report::output_sqnr_db`]) is below this many dB, keep the
    /// quantized node with the lowest output SQNR ([`Report::layers`]) in float and
    /// quantize again with the same calibrated ranges, until the target is met or no
    /// node is left quantized (the float model, SQNR `+∞`). At most one round per
    /// quantizable node; each round runs the float and the quantized model over every
    /// batch once. Default `None` (onnxruntime has no such loop). Must be finite and
    /// at least 0.
    pub target_sqnr: Option<f64>,
    /// Empirical bias correction (Nagel et al. 2019; AIMET's "empirical" mode; static
    /// mode): each quantized `Conv`, `Gemm` or `MatMul` with a float bias (its own, or
    /// for `MatMul` that of the `Add` after it) gets the mean over the calibration data
    /// of its output change from weight rounding, per output channel, taken off the
    /// bias before the bias is quantized ([`Report::bias_corrections`]). The inputs are
    /// the float model's, so only the weights' rounding is corrected. Default `false`
    /// (onnxruntime has none).
    pub bias_correction: bool,
    /// Cross-layer equalization of `Conv → [Relu] → Conv` pairs before calibration
    /// (Nagel et al. 2019; see [`equalize`]); errors are still measured against the
    /// original model. Default `false` (onnxruntime has none).
    pub equalize: bool,
    /// Check the ranges of a method that can narrow them ([`Method::Percentile`],
    /// [`Method::Entropy`], [`Method::Mse`], [`Method::MovingAverage`]; static mode):
    /// quantize once with the method's ranges and once with every tensor's full
    /// observed range (MinMax, which calibration records beside the method), measure
    /// both models' output SQNR on the calibration data (as [`Report::output_sqnr_db`])
    /// and keep the full ranges only when they score more than 0.1 dB higher
    /// ([`Report::range_check`]). A clipping threshold that lowers one tensor's error
    /// can still cost the model's outputs more (a detector's large activations, a
    /// classifier's confident logits). Two more passes of the float and the quantized
    /// model over the batches; skipped when no range was narrowed or the model has no
    /// f32 output. Default `true` (onnxruntime has no such check; its Entropy, with 128
    /// bins, keeps the full range anyway).
    pub range_check: bool,
    /// Bias correction where it helps (static mode, when [`Config::bias_correction`]
    /// is off): measure the corrections as [`Config::bias_correction`] does, quantize
    /// with and without them, and keep them only when the model's output SQNR on the
    /// calibration data is more than 0.1 dB higher ([`Report::bias_check`]). Per-tensor
    /// weights of a convolution with BatchNormalization folded in gain most (channels
    /// whose ranges differ by far share one scale, and their rounding errors do not
    /// average out). One more pass of the float model per quantized layer with a bias,
    /// and up to two of the float and quantized models; skipped without a bias to
    /// correct or an f32 output. Default `false`, as onnxruntime (which has no bias
    /// correction): a higher output SQNR on the calibration data did not always carry
    /// over to held-out accuracy on the small digits models (BENCHMARKS.md).
    pub bias_check: bool,
    /// The output form (default [`Format::Qdq`], as onnxruntime's `quantize_static`).
    /// [`quantize_dynamic`] writes `com.microsoft` `DynamicQuantizeMatMul` for `MatMul`
    /// and `Gemm` with [`Format::QOperatorContrib`]; it writes standard operators
    /// otherwise, and [`quantize_weight_only`] ignores the format.
    pub format: Format,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            per_channel: false,
            method: Method::MinMax,
            activation_type: DType::U8,
            weight_type: DType::I8,
            symmetric_activations: false,
            symmetric_weights: true,
            reduce_range: false,
            exclude: Vec::new(),
            exact_ops_in_int8: true,
            layer_errors: false,
            calibration_threads: 1,
            target_sqnr: None,
            bias_correction: false,
            equalize: false,
            range_check: true,
            bias_check: false,
            format: Format::Qdq,
        }
    }
}

pub use feeds::{CalibrationBatch, Feeds};
pub use report::{
    ActivationRange, BiasCheck, BiasCorrection, FloatNode, KeptFloat, LayerError, NodeRef,
    RangeCheck, Report,
};

/// Calibrates `model` on `batches` and returns the QDQ-quantized model with a report.
/// Each batch is either an `ArrayD<f32>`, one batch of the model's single input (e.g.
/// `[10, 1, 8, 8]`), or, for models with several inputs, [`Feeds`]: a value for every
/// input by name, of the input's element type (as onnxruntime's
/// `CalibrationDataReader` returns a dict per batch). See the [module](self)
/// documentation for what is written.
///
/// # Errors
/// [`Error::EmptyCalibration`] without batches; [`Error::Invalid`] for a
/// [`Config::target_sqnr`] that is NaN, infinite or negative; [`Error::Shape`] for a
/// batch whose rank, fixed dimensions or element type disagree with the model's input,
/// or [`Feeds`] that miss an input, repeat one or name something else;
/// [`Error::NonFinite`] for NaN or infinite calibration values or weights;
/// [`Error::Unsupported`] for unnamed batches and a model without exactly one input,
/// opsets below 10 (13 for per-channel), an unsupported [`Config`] type or no
/// quantizable node; [`Error::Model`] if the float model fails to plan or run.
pub fn quantize_static<B: CalibrationBatch>(
    model: &Model,
    batches: &[B],
    config: &Config,
) -> Result<(Model, Report)> {
    quantize_static_with_progress(model, batches, config, &mut |_| {})
}

/// [`quantize_static`] calling `progress(done)` after each calibration batch.
///
/// # Errors
/// As [`quantize_static`].
pub fn quantize_static_with_progress<B: CalibrationBatch>(
    model: &Model,
    batches: &[B],
    config: &Config,
    progress: &mut dyn FnMut(usize),
) -> Result<(Model, Report)> {
    rounds::run(&prepared(model, config)?, batches, config, progress)
}

/// Weight-only quantization: every quantizable node's weight becomes an int8
/// initializer behind a `DequantizeLinear` (as in [`quantize_static`], per-tensor or
/// per-channel); activations and biases stay float, so no calibration data is needed.
/// The file shrinks about 4× on weight-dominated models; runtimes fold the
/// `DequantizeLinear` of a constant at load time and compute in float, so accuracy is
/// that of the rounded weights alone. [`Config::method`] and the activation options
/// are ignored.
///
/// # Errors
/// [`Error::NonFinite`] for NaN or infinite weights; [`Error::Unsupported`] for opsets
/// below 10 (13 for per-channel), an unsupported [`Config::weight_type`], no
/// quantizable node, or [`Config::target_sqnr`], [`Config::bias_correction`] or
/// [`Config::equalize`] set.
pub fn quantize_weight_only(model: &Model, config: &Config) -> Result<(Model, Report)> {
    let model = &prepared(model, config)?;
    static_only(config, "weight-only")?;
    check_config(model, config)?;
    let mut sel = select(model, config)?;
    if sel.targets.is_empty() {
        return Err(Error::Unsupported(
            "the model has no quantizable node (Conv, Gemm or MatMul with a constant weight)"
                .into(),
        ));
    }
    sel.tensors.clear();
    for t in &mut sel.targets {
        t.bias = None;
        if let Some(j) = t.fold.take() {
            sel.float_nodes.push(FloatNode {
                node: node_ref(&model.graph.nodes[j]),
                reason: "weight-only quantization".into(),
            });
        }
    }
    let mut report = Report::default();
    let out = rewrite::write(model, &sel, &[], config, &mut report)?;
    Ok((out, report))
}

/// Dynamic quantization, as onnxruntime's `quantize_dynamic` writes it (QOperator
/// form, standard-domain operators only): each quantizable node's weight becomes an
/// int8 initializer (symmetric, per-tensor or, with [`Config::per_channel`], per output
/// channel); its float input is quantized at run time by a `DynamicQuantizeLinear`
/// (u8, one per input tensor, shared by its consumers), and the node becomes
///
/// - `MatMul`: `MatMulInteger → Cast(float) → Mul(x_scale · w_scale)`;
/// - `Gemm` (no `transA`, `alpha = beta = 1`): the same on the `[K, N]` weight
///   (transposed back if `transB`), then `Add` of its `C` input — onnxruntime leaves
///   `Gemm` in float in dynamic mode;
/// - `Conv`: `ConvInteger → Cast → Mul`, then `Add` of the bias reshaped to
///   `[1, C, 1, ...]` (onnxruntime's `ConvInteger` rule). Per-channel scales are written
///   as `[1, C, 1, ...]` with one scalar zero point, since onnxruntime's `ConvInteger`
///   refuses per-channel zero points (weights whose channels need different zero
///   points, i.e. asymmetric ones, fall back to per-tensor); onnxruntime itself uses
///   per-tensor weights for `Conv`.
///
/// No calibration data is needed; `Relu`/`Clip` stay float after the node.
/// [`Config::method`] and the activation options are ignored (activations are u8
/// from their run-time min/max, as `DynamicQuantizeLinear` defines). Needs opset 11
/// (`DynamicQuantizeLinear`).
///
/// # Errors
/// [`Error::NonFinite`] for NaN or infinite weights; [`Error::Unsupported`] for opsets
/// below 11, an unsupported [`Config::weight_type`], no quantizable node, or
/// [`Config::target_sqnr`], [`Config::bias_correction`] or [`Config::equalize`] set.
pub fn quantize_dynamic(model: &Model, config: &Config) -> Result<(Model, Report)> {
    let model = &prepared(model, config)?;
    static_only(config, "dynamic")?;
    // No QuantizeLinear is written: the activation options and the per-axis opset
    // requirement of static quantization do not apply.
    let weights_only = Config {
        per_channel: false,
        activation_type: DType::U8,
        ..config.clone()
    };
    let opset = model.opset("").unwrap_or(1);
    if opset < 11 {
        return Err(Error::Unsupported(format!(
            "the model imports opset {opset}; dynamic quantization needs \
             DynamicQuantizeLinear from opset 11"
        )));
    }
    check_config(model, &weights_only)?;
    let mut report = Report::default();
    let out = dynamic::write(model, config, &mut report)?;
    Ok((out, report))
}

/// Refuses the options of static quantization only.
fn static_only(c: &Config, mode: &str) -> Result<()> {
    if c.target_sqnr.is_some() || c.bias_correction || c.equalize {
        return Err(Error::Unsupported(format!(
            "target_sqnr, bias_correction and equalize are options of static quantization, \
             not {mode}"
        )));
    }
    Ok(())
}

/// Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization", §4.1): for
/// each `Conv → [Relu] → Conv` pair (both ungrouped, constant f32 weights and bias read
/// by no other node, the intermediate value read by the second node only and no graph
/// output), with `r1_i = max|W1[i, ..]|` and `r2_i = max|W2[:, i, ..]|`, output channel
/// `i` of the first (weight row and bias) is divided by `s_i = sqrt(r1_i · r2_i) / r2_i`
/// and input channel `i` of the second multiplied by it, so both ranges become
/// `sqrt(r1_i · r2_i)`, which suits per-tensor weight quantization. Exact in float up
/// to rounding (`Relu(x / s) = Relu(x) / s`). Chains are equalized pair by pair in
/// graph order, once. Returns the model and the `(first, second)` pairs.
///
/// # Errors
/// [`Error::NonFinite`] for a NaN or infinite weight of a qualifying pair.
pub fn equalize(model: &Model) -> Result<(Model, Vec<(NodeRef, NodeRef)>)> {
    let mut m = model.clone();
    let pairs = equalize::run(&mut m)?;
    Ok((m, pairs))
}

/// `model` ready for quantization, as onnxruntime's `quant_pre_process` prepares it:
/// `Constant` nodes become initializers (so their weights are found), `MatMul` + bias
/// `Add` pairs become `Gemm` (see the module documentation) and
/// `BatchNormalization` after a `Conv`/`ConvTranspose`/`Gemm` is folded into its weights
/// (so it is quantized with them instead of running in float between two
/// quantizations); the weights the folds replaced are dropped. All are exact rewrites
/// of the float model.
fn prepared(model: &Model, config: &Config) -> Result<Model> {
    use edgeml_onnx::passes::{
        ConstantToInitializer, EliminateDeadCode, FoldBatchNorm, FuseMatMulAdd, Pass,
    };
    let mut m = model.clone();
    // Dead code last: the weights a fold replaced would stay in the file otherwise.
    // A MatMul and its bias Add become one Gemm, quantized as one group with an int32
    // bias (what onnxruntime's MatMulAddFusion does in quant_pre_process, and TFLite's
    // fully connected layer); but the standard-domain QOperator form has no quantized
    // Gemm, and keeps QLinearMatMul.
    let matmul_add: &[&dyn Pass] = if config.format == Format::QOperator {
        &[]
    } else {
        &[&FuseMatMulAdd]
    };
    let passes = [&ConstantToInitializer as &dyn Pass]
        .into_iter()
        .chain(matmul_add.iter().copied())
        .chain([&FoldBatchNorm as &dyn Pass, &EliminateDeadCode]);
    for pass in passes {
        pass.run(&mut m).map_err(|e| Error::Model {
            kind: e.kind(),
            message: format!("preparing the model ({}): {e}", pass.name()),
        })?;
    }
    Ok(m)
}

fn check_config(model: &Model, c: &Config) -> Result<()> {
    if !matches!(
        c.activation_type,
        DType::U8 | DType::I8 | DType::U16 | DType::I16
    ) {
        return Err(Error::Unsupported(format!(
            "activation type {}",
            c.activation_type
        )));
    }
    if !matches!(c.weight_type, DType::U8 | DType::I8) {
        return Err(Error::Unsupported(format!("weight type {}", c.weight_type)));
    }
    let opset = model.opset("").unwrap_or(1);
    let need = if c.per_channel || matches!(c.activation_type, DType::U16 | DType::I16) {
        13
    } else {
        10
    };
    if opset < need {
        return Err(Error::Unsupported(format!(
            "the model imports opset {opset}; this quantization needs QuantizeLinear from \
             opset {need}"
        )));
    }
    Ok(())
}

/// A node to quantize.
#[derive(Debug, Clone)]
struct Target {
    node: usize,
    /// Axis of the output channels in the weight.
    w_axis: usize,
    /// Bias initializer to quantize to int32.
    bias: Option<String>,
    /// The folded activation node, if any.
    fold: Option<usize>,
}

/// The nodes to quantize and the activation tensors to calibrate.
#[derive(Debug, Default)]
struct Selection {
    targets: Vec<Target>,
    float_nodes: Vec<FloatNode>,
    /// Activation tensors, in graph order (inputs first).
    tensors: Vec<String>,
}

fn node_ref(n: &Node) -> NodeRef {
    let name = if n.name.is_empty() {
        format!(
            "{}({})",
            n.op_type,
            n.outputs.first().map_or("", String::as_str)
        )
    } else {
        n.name.clone()
    };
    NodeRef {
        name,
        op_type: n.op_type.clone(),
    }
}

fn int_attr(n: &Node, name: &str, default: i64) -> i64 {
    match n.attr(name) {
        Some(Attribute::Int(v)) => *v,
        _ => default,
    }
}

fn float_attr(n: &Node, name: &str, default: f32) -> f32 {
    match n.attr(name) {
        Some(Attribute::Float(v)) => *v,
        _ => default,
    }
}

/// Why `n` cannot be quantized, or its weight axis.
fn check_node(model: &Model, n: &Node) -> std::result::Result<usize, String> {
    let g = &model.graph;
    if n.outputs.len() != 1 || n.inputs.first().is_none_or(String::is_empty) {
        return Err("not exactly one output, or no input".into());
    }
    let Some(w) = n.inputs.get(1).and_then(|w| g.initializer(w)) else {
        return Err("the weight is not a constant".into());
    };
    let Some(wf) = w.as_f32() else {
        return Err(format!("the weight is {}, not f32", w.dtype()));
    };
    let rank = wf.ndim();
    match n.op_type.as_str() {
        "Conv" if rank >= 3 => Ok(0),
        "Gemm" if rank == 2 => {
            if int_attr(n, "transA", 0) != 0 {
                return Err("Gemm with transA".into());
            }
            if float_attr(n, "alpha", 1.0) != 1.0 || float_attr(n, "beta", 1.0) != 1.0 {
                return Err("Gemm with alpha or beta other than 1".into());
            }
            Ok(if int_attr(n, "transB", 0) != 0 { 0 } else { 1 })
        }
        "MatMul" if rank == 2 => Ok(1),
        _ => Err(format!("a weight of rank {rank}")),
    }
}

fn select(model: &Model, config: &Config) -> Result<Selection> {
    select_except(model, config, &HashSet::new())
}

/// [`select`], keeping the nodes of `keep` (indices) in float.
fn select_except(model: &Model, config: &Config, keep: &HashSet<usize>) -> Result<Selection> {
    let g = &model.graph;
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        for v in &n.inputs {
            consumers.entry(v.as_str()).or_default().push(i);
        }
    }
    let outputs: HashSet<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
    let excluded = |n: &Node| {
        config
            .exclude
            .iter()
            .any(|e| *e == n.op_type || (!n.name.is_empty() && *e == n.name))
    };
    let mut sel = Selection::default();
    let mut folded: HashSet<usize> = HashSet::new();
    let mut tensors: Vec<String> = Vec::new();
    let push = |t: &str, tensors: &mut Vec<String>| {
        if !tensors.iter().any(|x| x == t) {
            tensors.push(t.to_owned());
        }
    };
    for (i, n) in g.nodes.iter().enumerate() {
        if folded.contains(&i) {
            continue;
        }
        let quantizable =
            n.domain.is_empty() && matches!(n.op_type.as_str(), "Conv" | "Gemm" | "MatMul");
        let reason = if !quantizable {
            Some("no INT8 rule for this operator (yet)".to_owned())
        } else if excluded(n) {
            Some("excluded".to_owned())
        } else if keep.contains(&i) {
            Some("kept in float to reach the target SQNR".to_owned())
        } else {
            check_node(model, n).err()
        };
        if let Some(reason) = reason {
            if quantized_sigmoid(n, &tensors, &outputs, excluded(n)) {
                // Its output gets a Q → DQ pair too (see `quantized_sigmoid`).
                push(&n.outputs[0], &mut tensors);
            }
            sel.float_nodes.push(FloatNode {
                node: node_ref(n),
                reason,
            });
            continue;
        }
        let w_axis = check_node(model, n).unwrap_or(0);
        let w = &n.inputs[1];
        if let Some(wf) = g.initializer(w).and_then(|t| t.as_f32())
            && let Some(bad) = wf.iter().find(|v| !v.is_finite())
        {
            return Err(Error::NonFinite(format!(
                "weight {w:?} of {} holds {bad}",
                node_ref(n).name
            )));
        }
        let channels = g
            .initializer(w)
            .map_or(0, |t| t.shape().get(w_axis).copied().unwrap_or(0));
        let bias = (n.op_type != "MatMul")
            .then(|| n.inputs.get(2).filter(|b| !b.is_empty()))
            .flatten()
            .filter(|b| {
                g.initializer(b)
                    .and_then(|t| t.as_f32())
                    .is_some_and(|t| t.ndim() == 1 && t.len() == channels)
            })
            .cloned();
        if let Some(b) = &bias
            && let Some(bad) = g
                .initializer(b)
                .and_then(|t| t.as_f32())
                .and_then(|t| t.iter().find(|v| !v.is_finite()).copied())
        {
            return Err(Error::NonFinite(format!("bias {b:?} holds {bad}")));
        }
        let out = &n.outputs[0];
        let fold = match consumers.get(out.as_str()).map(Vec::as_slice) {
            Some(&[j]) if !outputs.contains(out.as_str()) && !config.symmetric_activations => {
                let a = &g.nodes[j];
                let foldable = a.domain.is_empty()
                    && a.outputs.len() == 1
                    && !excluded(a)
                    && (a.op_type == "Relu" || (a.op_type == "Clip" && clip_from_zero(model, a)));
                foldable.then_some(j)
            }
            _ => None,
        };
        let y = fold.map_or(out, |j| &g.nodes[j].outputs[0]);
        push(&n.inputs[0], &mut tensors);
        push(y, &mut tensors);
        if let Some(j) = fold {
            folded.insert(j);
        }
        sel.targets.push(Target {
            node: i,
            w_axis,
            bias,
            fold,
        });
    }
    sel.tensors = tensors;
    Ok(sel)
}

/// Whether `n` is a `Sigmoid` whose output is quantized: one whose input is already a
/// quantized tensor, whose output is not a graph output, and that is not excluded. As
/// onnxruntime's quantizer does (its QDQ rule for `Sigmoid`), the output gets its own
/// calibrated `QuantizeLinear → DequantizeLinear` pair, so `DQ → Sigmoid → Q` runs as
/// an INT8 lookup table (onnxruntime's `QLinearSigmoid`, edgeml's fused table) and the
/// `Mul` of a SiLU `x · sigmoid(x)` reads two quantized values. On ddddocr's OCR
/// network (a SiLU after every convolution) this raised the output SQNR by 1.4 dB
/// per-channel (BENCHMARKS.md, "Trained models from PyPI wheels"). A graph output
/// keeps its float value, since nothing follows it to absorb the rounding.
fn quantized_sigmoid(
    n: &Node,
    tensors: &[String],
    outputs: &HashSet<&str>,
    excluded: bool,
) -> bool {
    n.domain.is_empty()
        && n.op_type == "Sigmoid"
        && !excluded
        && n.outputs.len() == 1
        && n.inputs.first().is_some_and(|x| tensors.contains(x))
        && !outputs.contains(n.outputs[0].as_str())
}

/// Whether a `Clip` has constant bounds with lower bound 0 (a ReLU6-like activation).
fn clip_from_zero(model: &Model, n: &Node) -> bool {
    let g = &model.graph;
    let scalar = |i: usize| -> Option<Option<f32>> {
        match n.inputs.get(i).filter(|v| !v.is_empty()) {
            None => Some(None),
            Some(v) => {
                let t = g.initializer(v)?.as_f32()?;
                (t.len() == 1).then(|| t.iter().next().copied())
            }
        }
    };
    let lo = if n.inputs.len() > 1 {
        scalar(1)
    } else {
        Some(Some(float_attr(n, "min", f32::MIN)))
    };
    let hi_ok = n.inputs.len() <= 2 || scalar(2).is_some();
    matches!(lo, Some(Some(v)) if v == 0.0) && hi_ok
}

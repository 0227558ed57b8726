//! What the quantization passes report.

/// A node of the input model, named for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    /// The node's name, or `op_type(first output)` when the node has no name.
    pub name: String,
    /// Its operator type.
    pub op_type: String,
}

/// A node left in float, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloatNode {
    /// The node.
    pub node: NodeRef,
    /// Why it was not quantized.
    pub reason: String,
}

/// The calibrated quantization of one activation tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationRange {
    /// Tensor name.
    pub name: String,
    /// The range the observer proposed.
    pub range: (f32, f32),
    /// Scale written.
    pub scale: f32,
    /// Zero point written.
    pub zero_point: i32,
}

/// The error of one quantized node's output on the calibration data: the float
/// model's value `x` against the quantized model's dequantized codes `x̂` of the same
/// tensor (the QDQ model run as written, every earlier quantization included, as
/// onnxruntime's `qdq_loss_debug` compares them).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerError {
    /// The quantized node.
    pub node: NodeRef,
    /// Its output tensor (after a folded activation).
    pub tensor: String,
    /// Signal-to-quantization-noise ratio `10·log10(Σx² / Σ(x − x̂)²)` in dB over all
    /// calibration batches; `+∞` when the quantized values are exact.
    pub sqnr_db: f64,
    /// The largest `|x − x̂|`.
    pub max_abs_error: f32,
}

/// What [`quantize_static`](super::quantize_static) did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Nodes now running quantized.
    pub quantized: Vec<NodeRef>,
    /// Activations (`Relu`, `Clip`) folded into the quantized node before them.
    pub folded: Vec<NodeRef>,
    /// Nodes left in float.
    pub float_nodes: Vec<FloatNode>,
    /// Activation tensors, in graph order.
    pub activations: Vec<ActivationRange>,
    /// Calibration batches run.
    pub batches: usize,
    /// Bias values that saturated the int32 range.
    pub saturated_bias: usize,
    /// Exact operators now running on integer codes (see [`Config::exact_ops_in_int8`](super::Config::exact_ops_in_int8)).
    pub int8_exact_ops: Vec<NodeRef>,
    /// Per-node output errors, in graph order, when [`Config::layer_errors`](super::Config::layer_errors) or
    /// [`Config::target_sqnr`](super::Config::target_sqnr) is set.
    pub layers: Vec<LayerError>,
    /// The SQNR of the model's outputs on the calibration data in dB: the float
    /// model's outputs `y` against the quantized model's `ŷ` (run as written, by the
    /// reference QDQ operators), `10·log10(Σy² / Σ(y − ŷ)²)` over every batch, the
    /// lowest over the model's f32 outputs; `+∞` when they are equal. Measured when
    /// [`Config::layer_errors`](super::Config::layer_errors) or [`Config::target_sqnr`](super::Config::target_sqnr) is set.
    pub output_sqnr_db: Option<f64>,
    /// The nodes [`Config::target_sqnr`](super::Config::target_sqnr) kept in float, in the order it kept them.
    pub kept_float: Vec<KeptFloat>,
    /// The biases [`Config::bias_correction`](super::Config::bias_correction) changed.
    pub bias_corrections: Vec<BiasCorrection>,
    /// The `(first, second)` node pairs [`Config::equalize`](super::Config::equalize)
    /// equalized.
    pub equalized: Vec<(NodeRef, NodeRef)>,
    /// The QDQ groups fused into quantized operators for
    /// [`Format::QOperator`](super::Format::QOperator) and
    /// [`Format::QOperatorContrib`](super::Format::QOperatorContrib) (`None` for QDQ).
    pub qoperator: Option<crate::onnx::FuseReport>,
    /// What [`Config::range_check`](super::Config::range_check) measured (`None` when
    /// it did not run).
    pub range_check: Option<RangeCheck>,
    /// What [`Config::bias_check`](super::Config::bias_check) measured (`None` when it
    /// did not run).
    pub bias_check: Option<BiasCheck>,
}

/// The two candidates of [`Config::bias_check`](super::Config::bias_check): the
/// model's output SQNR on the calibration data (dB) without and with empirical bias
/// correction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BiasCheck {
    /// Output SQNR without bias correction.
    pub without_sqnr_db: f64,
    /// Output SQNR with bias correction ([`Report::bias_corrections`] when kept).
    pub with_sqnr_db: f64,
    /// Whether the correction was kept (more than 0.1 dB higher).
    pub kept_correction: bool,
}

/// The two candidates of [`Config::range_check`](super::Config::range_check): the
/// model's output SQNR on the calibration data (dB, as
/// [`Report::output_sqnr_db`]) with the method's ranges and with every tensor's full
/// observed range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RangeCheck {
    /// Output SQNR with the calibration method's (clipped) ranges.
    pub method_sqnr_db: f64,
    /// Output SQNR with the full observed ranges (MinMax).
    pub full_range_sqnr_db: f64,
    /// Whether the full ranges were kept (more than 0.1 dB higher).
    pub kept_full_range: bool,
}

/// A node that [`Config::target_sqnr`](super::Config::target_sqnr) kept in float.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptFloat {
    /// The node.
    pub node: NodeRef,
    /// Its output SQNR (dB) in the round that kept it in float, the lowest then.
    pub layer_sqnr_db: f64,
    /// The model's output SQNR (dB) in that round, below the target.
    pub output_sqnr_db: f64,
}

/// A bias changed by [`Config::bias_correction`](super::Config::bias_correction).
#[derive(Debug, Clone, PartialEq)]
pub struct BiasCorrection {
    /// The quantized node.
    pub node: NodeRef,
    /// The bias initializer (the node's own, or its `Add`'s).
    pub bias: String,
    /// The value taken off each output channel's bias: the mean over the calibration
    /// data of the node's output with quantized weights minus with float weights.
    pub shift: Vec<f32>,
}

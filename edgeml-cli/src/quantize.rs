//! `edgeml quantize`: post-training quantization of an ONNX model to INT8 (static, as
//! QDQ or QOperator; dynamic; weight-only), to a float16 model, or to float16 or
//! bfloat16 weight storage.

use anyhow::{Context, bail};
use edgeml_core::DType;
use edgeml_onnx::{Model, Tensor, ValueInfo};
use edgeml_quant::quantize::{
    Config, Feeds, Format, Method, Report, quantize_dynamic, quantize_static_with_progress,
    quantize_weight_only,
};
use ndarray::{ArrayD, Axis, IxDyn, OwnedRepr};
use ndarray_npy::NpzReader;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Calibration methods.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum MethodArg {
    /// Minimum and maximum seen (onnxruntime's default).
    Minmax,
    /// 99.999th percentile of |x| from a 2048-bin histogram (onnxruntime's percentile).
    Percentile,
    /// KL-divergence threshold search, 2048 bins, 128 quantized bins (onnxruntime's
    /// entropy calibration).
    Entropy,
    /// L2-optimal range from a 2048-bin histogram (PyTorch's HistogramObserver).
    Mse,
    /// Moving average of each batch's min and max, constant 0.01 (PyTorch's
    /// MovingAverageMinMaxObserver).
    MovingAverage,
}

/// Output forms of `--mode static`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum FormatArg {
    /// QuantizeLinear → DequantizeLinear pairs around float operators.
    Qdq,
    /// Quantized operators (QLinearConv, QLinearMatMul, …).
    Qoperator,
}

/// Quantization modes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Activations quantized with ranges calibrated on `--calibration` data.
    Static,
    /// Int8 weights, activations quantized at run time (DynamicQuantizeLinear,
    /// MatMulInteger/ConvInteger, as onnxruntime's quantize_dynamic); no calibration.
    Dynamic,
    /// Weights only (int8 behind DequantizeLinear); float compute, no calibration.
    WeightOnly,
    /// Float16 compute: every float32 weight and activation becomes float16
    /// (onnxconverter-common's convert_float_to_float16, values clamped as it clamps);
    /// inputs and outputs stay float32 behind Cast nodes unless `--fp16-io`; `--exclude`
    /// keeps nodes or operator types in float32.
    Fp16,
    /// Float32 weights stored as float16 behind Cast nodes; float32 compute, inputs and
    /// outputs (half the file, the float model's speed and almost its accuracy).
    Fp16Weights,
    /// Float32 weights stored as bfloat16 behind Cast nodes (float32's range, 8
    /// significant bits; needs opset 13); float32 compute, inputs and outputs.
    Bf16,
}

/// Arguments of `edgeml quantize`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The float ONNX model.
    model: PathBuf,
    /// Where to write the quantized model (written atomically).
    #[arg(short, long)]
    output: PathBuf,
    /// Quantization mode.
    #[arg(long, value_enum, default_value = "static")]
    mode: Mode,
    /// Output form (`--mode static`): `qdq` (QuantizeLinear/DequantizeLinear pairs around
    /// float ops, onnxruntime's default) or `qoperator` (QLinearConv, QLinearMatMul and
    /// 8-bit exact ops; groups without a standard quantized operator stay in QDQ form).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Also write onnxruntime's com.microsoft contrib operators: with `--format
    /// qoperator`, QGemm, QLinearAdd, QLinearConcat, the quantized pools,
    /// QLinearSigmoid and QLinearLeakyRelu; with `--mode dynamic`,
    /// DynamicQuantizeMatMul for MatMul and Gemm. Only onnxruntime and edgeml run them.
    #[arg(long)]
    contrib_ops: bool,
    /// Quantize weights per output channel (default: per tensor).
    #[arg(long)]
    per_channel: bool,
    /// Calibration data: one `.npy` or `.npz` holding samples along axis 0 (cut into
    /// `--batch-size` batches), or a directory of `.npy` or `.npz` files, each one batch.
    /// A `.npz` (`np.savez`, compressed or not) holds one array per model input, named
    /// after it, of the input's element type (token ids as int64, …); a `.npy` feeds a
    /// model with one input. Required by `--mode static`.
    #[arg(long, value_name = "PATH")]
    calibration: Option<PathBuf>,
    /// Samples per calibration batch when `--calibration` is a single file.
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    /// Threads running calibration batches, each with its own observers, merged in
    /// batch order (0 = every core). Exact for minmax, entropy and mse; moving-average
    /// agrees up to rounding; percentile re-bins when merging.
    #[arg(long, default_value_t = 0, value_name = "N")]
    calibration_threads: usize,
    /// Calibration method (`--mode static`).
    #[arg(long, value_enum, default_value = "minmax")]
    method: MethodArg,
    /// Node names or operator types to keep in float32 (repeatable; not `--mode
    /// fp16-weights`/`bf16`).
    #[arg(long, value_name = "NAME_OR_OP", num_args = 1..)]
    exclude: Vec<String>,
    /// Keep layers in float until the model's output SQNR on the calibration data
    /// reaches DB decibels (`--mode static`): each round keeps the quantized layer with
    /// the lowest SQNR in float and quantizes again with the same calibrated ranges,
    /// until the target is met or no layer is left quantized. At least 0.
    #[arg(long, value_name = "DB", allow_negative_numbers = true)]
    target_sqnr: Option<f64>,
    /// Empirical bias correction (`--mode static`): take the mean output change that
    /// weight rounding causes on the calibration data, per output channel, off each
    /// quantized layer's float bias (Conv/Gemm bias, or the Add after a MatMul).
    #[arg(long)]
    bias_correction: bool,
    /// Cross-layer equalization of Conv → [Relu] → Conv pairs before calibration
    /// (`--mode static`): per channel, scales the first layer's output channel down and
    /// the second's input channel up so both weight ranges match (same float function).
    #[arg(long)]
    equalize: bool,
    /// Skip the range check (`--mode static` with percentile, entropy, mse or
    /// moving-average): by default the model is quantized once with the method's ranges
    /// and once with the full observed ranges (minmax), and the full ranges are kept
    /// when the output SQNR on the calibration data is more than 0.1 dB higher with them.
    #[arg(long)]
    no_range_check: bool,
    /// Bias correction where it helps (`--mode static`, instead of `--bias-correction`):
    /// quantize with and without it, and keep it when it raises the output SQNR on the
    /// calibration data by more than 0.1 dB.
    #[arg(long, conflicts_with = "bias_correction")]
    bias_check: bool,
    /// Symmetric activation ranges (`--mode static`; keeps Relu/Clip as separate nodes).
    #[arg(long)]
    symmetric_activations: bool,
    /// 7-bit ranges, for CPUs without VNNI whose u8×i8 pair sums saturate: the weights,
    /// and in `--mode static` the activations too (not the float16/bfloat16 modes).
    #[arg(long)]
    reduce_range: bool,
    /// With `--mode fp16`: make the model's float32 inputs and outputs float16 too
    /// (onnxconverter-common's `keep_io_types=False`).
    #[arg(long)]
    fp16_io: bool,
    /// Write a JSON report (quantized and float nodes, activation ranges, output and
    /// per-layer SQNR, layers kept in float, bias corrections, equalized pairs in static
    /// mode) here. `-v`
    /// prints the per-layer SQNR of every layer, worst first.
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
}

/// Reads the array `key` of `npz` as `dtype` (f32 when the input declares none).
fn npz_tensor(
    npz: &mut NpzReader<std::fs::File>,
    key: &str,
    dtype: Option<DType>,
    path: &Path,
) -> anyhow::Result<Tensor> {
    macro_rules! read {
        ($($d:ident => $t:ty),*) => {
            match dtype.unwrap_or(DType::F32) {
                $(DType::$d => npz.by_name::<OwnedRepr<$t>, IxDyn>(key).map(Tensor::$d),)*
                other => bail!(
                    "{}: {key:?} feeds an input of element type {other:?}, which calibration \
                     data cannot hold",
                    path.display()
                ),
            }
        };
    }
    let t = read!(F32 => f32, F64 => f64, I64 => i64, I32 => i32, I16 => i16, I8 => i8,
                  U16 => u16, U8 => u8, Bool => bool);
    t.with_context(|| {
        format!(
            "{}: {key:?} is not a C-order {} array",
            path.display(),
            dtype.map_or("f32".to_owned(), |d| format!("{d:?}"))
        )
    })
}

/// A value for each of `inputs` from the `.npz` at `path` (`np.savez` or
/// `np.savez_compressed`; keys are input names, with or without numpy's `.npy` suffix).
fn read_npz(path: &Path, inputs: &[&ValueInfo]) -> anyhow::Result<Feeds> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut npz =
        NpzReader::new(file).with_context(|| format!("{}: not a .npz", path.display()))?;
    let names = npz
        .names()
        .with_context(|| format!("{}: cannot list the arrays", path.display()))?;
    inputs
        .iter()
        .map(|vi| {
            let input = vi.name.as_str();
            let Some(key) = names
                .iter()
                .find(|k| k.as_str() == input || k.strip_suffix(".npy") == Some(input))
            else {
                bail!(
                    "{}: no array named {input:?}, an input of the model (it holds {}); save \
                     one array per input as np.savez(path, **{{name: array}})",
                    path.display(),
                    names.join(", ")
                );
            };
            Ok((vi.name.clone(), npz_tensor(&mut npz, key, vi.dtype, path)?))
        })
        .collect()
}

fn is_ext(p: &Path, ext: &str) -> bool {
    p.extension().is_some_and(|x| x == ext)
}

/// Rows `r` (along axis 0) of `t`.
fn rows(t: &Tensor, r: std::ops::Range<usize>) -> Tensor {
    macro_rules! cut {
        ($($v:ident),*) => {
            match t {
                $(Tensor::$v(a) => Tensor::$v(a.slice_axis(Axis(0), r.into()).to_owned()),)*
            }
        };
    }
    cut!(F32, F16, BF16, F64, I8, U8, I16, U16, I32, I64, Bool)
}

/// The calibration batches named by `path` for `model`'s run-time inputs (also `edgeml
/// prune --recalibrate`): a directory of `.npy` or `.npz` files, each one batch; or one
/// `.npy` or `.npz` holding every sample along axis 0, cut into batches of
/// `batch_size`. A `.npz` holds one array per input, named after it; a `.npy` feeds a
/// model with a single input.
pub(crate) fn load_calibration(
    path: &Path,
    model: &Model,
    batch_size: usize,
) -> anyhow::Result<Vec<Feeds>> {
    let inputs = run_inputs(model);
    if inputs.is_empty() {
        bail!("the model has no run-time input to calibrate");
    }
    let read = |p: &Path| -> anyhow::Result<Feeds> {
        if is_ext(p, "npz") {
            return read_npz(p, &inputs);
        }
        match inputs.as_slice() {
            [one] => Ok(vec![(one.name.clone(), crate::run::read_any(p)?)]),
            many => bail!(
                "{}: a .npy holds one array, and the model has {} inputs ({}); give a .npz \
                 with one array per input, named after it",
                p.display(),
                many.len(),
                many.iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    };
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_ext(p, "npy") || is_ext(p, "npz"))
            .collect();
        files.sort();
        if files.is_empty() {
            bail!("{}: no .npy or .npz files in the directory", path.display());
        }
        return files.iter().map(|f| read(f)).collect();
    }
    if batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let all = read(path)?;
    let mut n = None;
    for (name, t) in &all {
        let Some(&len) = t.shape().first() else {
            bail!(
                "{}: {name:?} is a scalar, which holds no samples",
                path.display()
            );
        };
        if n.is_some_and(|n| n != len) {
            bail!(
                "{}: the arrays hold different numbers of samples along axis 0 ({})",
                path.display(),
                all.iter()
                    .map(|(k, t)| format!("{k}: {}", t.shape().first().unwrap_or(&0)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        n = Some(len);
    }
    let n = n.unwrap_or(0);
    Ok((0..n)
        .step_by(batch_size)
        .map(|i| {
            all.iter()
                .map(|(k, t)| (k.clone(), rows(t, i..(i + batch_size).min(n))))
                .collect()
        })
        .collect())
}

/// `model`'s run-time graph inputs.
fn run_inputs(model: &Model) -> Vec<&ValueInfo> {
    model.graph.runtime_inputs().collect()
}

/// [`load_calibration`] for a model with one float input (`edgeml prune
/// --recalibrate`): each batch's array.
pub(crate) fn load_single_f32(
    path: &Path,
    model: &Model,
    batch_size: usize,
) -> anyhow::Result<Vec<ArrayD<f32>>> {
    let inputs = run_inputs(model);
    if inputs.len() != 1 {
        bail!(
            "calibration data here feeds models with exactly one input; this one has {}",
            inputs.len()
        );
    }
    load_calibration(path, model, batch_size)?
        .into_iter()
        .map(|mut f| match f.pop() {
            Some((_, Tensor::F32(a))) => Ok(a),
            Some((name, t)) => bail!("{name:?}: float32 data needed, got {:?}", t.dtype()),
            None => bail!("an empty calibration batch"),
        })
        .collect()
}

fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.2} MiB", bytes as f64 / f64::from(1 << 20))
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

fn json_report(r: &Report, before: u64, after: u64) -> serde_json::Value {
    use serde_json::json;
    let refs = |v: &[edgeml_quant::quantize::NodeRef]| -> Vec<serde_json::Value> {
        v.iter()
            .map(|n| json!({"name": n.name, "op_type": n.op_type}))
            .collect()
    };
    json!({
        "size_before": before,
        "size_after": after,
        "calibration_batches": r.batches,
        "quantized": refs(&r.quantized),
        "qoperator": r.qoperator.as_ref().map(|f| json!({
            "fused": f.fused, "removed": f.removed,
        })),
        "folded": refs(&r.folded),
        "int8_exact_ops": refs(&r.int8_exact_ops),
        "float": r.float_nodes.iter().map(|f| json!({
            "name": f.node.name, "op_type": f.node.op_type, "reason": f.reason,
        })).collect::<Vec<_>>(),
        "activations": r.activations.iter().map(|a| json!({
            "name": a.name, "rmin": a.range.0, "rmax": a.range.1,
            "scale": a.scale, "zero_point": a.zero_point,
        })).collect::<Vec<_>>(),
        "saturated_bias_values": r.saturated_bias,
        // SQNR is null when the quantized values are exact (infinite SQNR).
        "layers": r.layers.iter().map(|l| json!({
            "name": l.node.name, "op_type": l.node.op_type, "tensor": l.tensor,
            "sqnr_db": l.sqnr_db.is_finite().then_some(l.sqnr_db),
            "max_abs_error": l.max_abs_error,
        })).collect::<Vec<_>>(),
        "output_sqnr_db": r.output_sqnr_db.filter(|v| v.is_finite()),
        "kept_float": r.kept_float.iter().map(|k| json!({
            "name": k.node.name, "op_type": k.node.op_type,
            "layer_sqnr_db": k.layer_sqnr_db.is_finite().then_some(k.layer_sqnr_db),
            "output_sqnr_db": k.output_sqnr_db.is_finite().then_some(k.output_sqnr_db),
        })).collect::<Vec<_>>(),
        "equalized": r.equalized.iter().map(|(a, b)| json!([a.name, b.name])).collect::<Vec<_>>(),
        "bias_corrections": r.bias_corrections.iter().map(|b| json!({
            "name": b.node.name, "op_type": b.node.op_type, "bias": b.bias,
            "shift": b.shift,
        })).collect::<Vec<_>>(),
        "range_check": r.range_check.map(|c| json!({
            "method_sqnr_db": c.method_sqnr_db.is_finite().then_some(c.method_sqnr_db),
            "full_range_sqnr_db": c.full_range_sqnr_db.is_finite().then_some(c.full_range_sqnr_db),
            "kept": if c.kept_full_range { "full_range" } else { "method" },
        })),
        "bias_check": r.bias_check.map(|c| json!({
            "without_sqnr_db": c.without_sqnr_db.is_finite().then_some(c.without_sqnr_db),
            "with_sqnr_db": c.with_sqnr_db.is_finite().then_some(c.with_sqnr_db),
            "kept_correction": c.kept_correction,
        })),
    })
}

fn histogram<'a>(ops: impl Iterator<Item = &'a str>) -> String {
    let mut h: BTreeMap<&str, usize> = BTreeMap::new();
    for op in ops {
        *h.entry(op).or_default() += 1;
    }
    let parts: Vec<String> = h.iter().map(|(k, v)| format!("{v} {k}")).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn fp16(model: &Model, args: &Args) -> anyhow::Result<()> {
    use edgeml_quant::fp16::{
        HalfOptions, convert_float_to_float16, convert_weights, convert_weights_bf16,
    };
    if args.mode != Mode::Fp16 && !args.exclude.is_empty() {
        bail!("--exclude does not apply to --mode fp16-weights or bf16");
    }
    let half = if args.mode == Mode::Bf16 {
        "bfloat16"
    } else {
        "float16"
    };
    let (h, report) = match args.mode {
        Mode::Bf16 => convert_weights_bf16(model, &[]).context("bf16 conversion failed")?,
        Mode::Fp16Weights => convert_weights(model, &[]).context("fp16 conversion failed")?,
        _ => {
            let opts = HalfOptions {
                keep_io_types: !args.fp16_io,
                keep: args.exclude.clone(),
            };
            convert_float_to_float16(model, &opts).context("fp16 conversion failed")?
        }
    };
    h.save(&args.output)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let before = std::fs::metadata(&args.model).map(|m| m.len()).unwrap_or(0);
    let after = std::fs::metadata(&args.output)
        .map(|m| m.len())
        .unwrap_or(0);
    outln!("wrote     {}", args.output.display());
    outln!(
        "size      {} -> {} ({:.1}%)",
        size_text(before),
        size_text(after),
        100.0 * after as f64 / before.max(1) as f64
    );
    outln!("{half:<9} {} initializers", report.converted.len());
    if report.clamped > 0 {
        log::warn!(
            "{} weight values clamped into the {half} range",
            report.clamped
        );
    }
    Ok(())
}

pub(crate) fn main(args: Args) -> anyhow::Result<()> {
    let model = Model::load(&args.model)
        .with_context(|| format!("cannot load {}", args.model.display()))?;
    let config = Config {
        per_channel: args.per_channel,
        method: match args.method {
            MethodArg::Minmax => Method::MinMax,
            MethodArg::Percentile => Method::PERCENTILE,
            MethodArg::Entropy => Method::ENTROPY,
            MethodArg::Mse => Method::MSE,
            MethodArg::MovingAverage => Method::MOVING_AVERAGE,
        },
        exclude: args.exclude.clone(),
        // Output and per-layer SQNR for the summary (one more pass over the batches;
        // static mode only).
        layer_errors: args.mode == Mode::Static,
        calibration_threads: args.calibration_threads,
        target_sqnr: args.target_sqnr,
        bias_correction: args.bias_correction,
        equalize: args.equalize,
        range_check: !args.no_range_check,
        bias_check: args.bias_check,
        symmetric_activations: args.symmetric_activations,
        reduce_range: args.reduce_range,
        format: match (args.format, args.contrib_ops) {
            (Some(FormatArg::Qoperator), false) => Format::QOperator,
            (Some(FormatArg::Qoperator), true) => Format::QOperatorContrib,
            // Dynamic mode's only switch (its form is always QOperator).
            (None, true) if args.mode == Mode::Dynamic => Format::QOperatorContrib,
            (None | Some(FormatArg::Qdq), true) => {
                bail!("--contrib-ops needs --format qoperator (or --mode dynamic)")
            }
            _ => Format::Qdq,
        },
        ..Config::default()
    };
    if args.format.is_some() && args.mode != Mode::Static {
        bail!(
            "--format applies to --mode static (dynamic mode always writes quantized \
             operators; use --contrib-ops there for DynamicQuantizeMatMul)"
        );
    }
    if args.mode != Mode::Static
        && (args.target_sqnr.is_some()
            || args.no_range_check
            || args.bias_check
            || args.bias_correction
            || args.equalize
            || args.symmetric_activations)
    {
        bail!(
            "--target-sqnr, --no-range-check, --bias-check, --bias-correction, \
             --equalize and --symmetric-activations need --mode static"
        );
    }
    let half = matches!(args.mode, Mode::Fp16 | Mode::Fp16Weights | Mode::Bf16);
    if half && args.reduce_range {
        bail!("--reduce-range does not apply to --mode fp16, fp16-weights or bf16");
    }
    if args.fp16_io && args.mode != Mode::Fp16 {
        bail!("--fp16-io needs --mode fp16");
    }
    let result = match args.mode {
        Mode::Fp16 | Mode::Fp16Weights | Mode::Bf16 => return fp16(&model, &args),
        Mode::WeightOnly => quantize_weight_only(&model, &config),
        Mode::Dynamic => quantize_dynamic(&model, &config),
        Mode::Static => {
            let Some(cal) = &args.calibration else {
                bail!(
                    "--mode static needs --calibration PATH (a .npy or .npz of samples, or a \
                     directory of batches)"
                );
            };
            let batches = load_calibration(cal, &model, args.batch_size)?;
            let bar = indicatif::ProgressBar::new(batches.len() as u64).with_style(
                indicatif::ProgressStyle::with_template(
                    "calibrate {bar:30} {pos}/{len} batches {elapsed}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let r = quantize_static_with_progress(&model, &batches, &config, &mut |done| {
                bar.set_position(done as u64);
            });
            bar.finish_and_clear();
            r
        }
    };
    let (q, report) = result.context("quantization failed")?;
    q.save(&args.output)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let before = std::fs::metadata(&args.model).map(|m| m.len()).unwrap_or(0);
    let after = std::fs::metadata(&args.output)
        .map(|m| m.len())
        .unwrap_or(0);
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&json_report(&report, before, after))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename to {}", path.display()))?;
    }
    outln!("wrote     {}", args.output.display());
    outln!(
        "size      {} -> {} ({:.1}%)",
        size_text(before),
        size_text(after),
        100.0 * after as f64 / before.max(1) as f64
    );
    outln!(
        "quantized {}",
        histogram(report.quantized.iter().map(|n| n.op_type.as_str()))
    );
    if !report.folded.is_empty() {
        outln!(
            "folded    {}",
            histogram(report.folded.iter().map(|n| n.op_type.as_str()))
        );
    }
    if !report.int8_exact_ops.is_empty() {
        outln!(
            "int8 pass {}",
            histogram(report.int8_exact_ops.iter().map(|n| n.op_type.as_str()))
        );
    }
    outln!(
        "float     {}",
        histogram(report.float_nodes.iter().map(|f| f.node.op_type.as_str()))
    );
    if let Some(f) = &report.qoperator {
        outln!("qoperator {f}");
    }
    if report.batches > 0 {
        outln!("calibrated on {} batches", report.batches);
    }
    if !report.equalized.is_empty() {
        outln!("equalized {} Conv pairs", report.equalized.len());
    }
    if !report.bias_corrections.is_empty() {
        let largest = report
            .bias_corrections
            .iter()
            .flat_map(|b| &b.shift)
            .fold(0.0f32, |m, v| m.max(v.abs()));
        outln!(
            "bias      {} corrected (largest shift {largest:.3e})",
            report.bias_corrections.len()
        );
    }
    if let Some(c) = report.range_check {
        outln!(
            "ranges    {} kept: output SQNR {:.2} dB with the method's ranges, {:.2} dB with \
             the full ranges (calibration data)",
            if c.kept_full_range {
                "full (minmax)"
            } else {
                "method's"
            },
            c.method_sqnr_db,
            c.full_range_sqnr_db
        );
    }
    if let Some(c) = report.bias_check {
        outln!(
            "bias      correction {}: output SQNR {:.2} dB without, {:.2} dB with \
             (calibration data)",
            if c.kept_correction {
                "kept"
            } else {
                "not kept"
            },
            c.without_sqnr_db,
            c.with_sqnr_db
        );
    }
    if let Some(db) = report.output_sqnr_db {
        let target = match args.target_sqnr {
            Some(t) if db >= t => format!(" (target {t} dB met)"),
            Some(t) => format!(" (target {t} dB not met)"),
            None => String::new(),
        };
        outln!("SQNR      {db:.2} dB at the outputs on the calibration data{target}");
    }
    if !report.kept_float.is_empty() {
        let names: Vec<&str> = report
            .kept_float
            .iter()
            .map(|k| k.node.name.as_str())
            .collect();
        outln!("kept float for the target: {}", names.join(", "));
    }
    let mut layers: Vec<_> = report.layers.iter().collect();
    layers.sort_by(|a, b| a.sqnr_db.total_cmp(&b.sqnr_db));
    // The worst few always; every layer with -v.
    if !log::log_enabled!(log::Level::Info) {
        layers.truncate(3);
    }
    if !layers.is_empty() {
        outln!("SQNR on the calibration data, worst layers first:");
        for l in layers {
            outln!(
                "  {:>8.2} dB  max |err| {:<10.4e} {} ({})",
                l.sqnr_db,
                l.max_abs_error,
                l.node.name,
                l.node.op_type
            );
        }
    }
    if report.saturated_bias > 0 {
        log::warn!(
            "{} bias values saturated the int32 range",
            report.saturated_bias
        );
    }
    Ok(())
}

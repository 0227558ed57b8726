//! `edgeml inspect`.

use anyhow::anyhow;
use edgeml_onnx::Model;
use edgeml_onnx::ir::{ModelSummary, format_type};
use serde_json::{Value, json};
use std::path::PathBuf;

/// Arguments of `edgeml inspect`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The ONNX model file.
    model: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// One line, whatever a hostile model put in its names.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn to_json(path: &str, s: &ModelSummary) -> Value {
    let vi = |v: &[edgeml_onnx::ValueInfo]| -> Vec<Value> {
        v.iter()
            .map(|v| {
                json!({
                    "name": v.name,
                    "dtype": v.dtype.map(|d| d.name()),
                    "shape": v.shape.as_ref().map(|d| d.iter().map(|d| match d {
                        edgeml_onnx::Dim::Known(n) => json!(n),
                        edgeml_onnx::Dim::Symbolic(s) => json!(s),
                        edgeml_onnx::Dim::Unknown => Value::Null,
                    }).collect::<Vec<_>>()),
                    "type": format_type(v),
                })
            })
            .collect()
    };
    let params: serde_json::Map<String, Value> = s
        .params
        .iter()
        .map(|(d, p)| {
            (
                d.name().to_owned(),
                json!({"tensors": p.tensors, "elements": p.elements, "bytes": p.bytes,
                       "zeros": p.zeros, "sparsity": p.sparsity()}),
            )
        })
        .collect();
    let t = s.total();
    json!({
        "model": path,
        "ir_version": s.ir_version,
        "producer": s.producer,
        "opsets": s.opsets.iter().map(|(d, v)| json!({"domain": d, "version": v})).collect::<Vec<_>>(),
        "inputs": vi(&s.inputs),
        "outputs": vi(&s.outputs),
        "nodes": s.nodes,
        "ops": s.ops,
        "parameters": {"tensors": t.tensors, "elements": t.elements, "bytes": t.bytes,
                       "zeros": t.zeros, "sparsity": t.sparsity(), "by_dtype": params},
    })
}

/// Runs `edgeml inspect`.
pub(crate) fn main(args: Args) -> anyhow::Result<()> {
    let shown = args.model.display().to_string();
    let model =
        Model::load(&args.model).map_err(|e| anyhow!(one_line(&format!("{shown}: {e}"))))?;
    let s = model.summary();
    let q = edgeml_quant::onnx::summarize(&model);
    if args.json {
        let mut j = to_json(&shown, &s);
        j["quantization"] = json!({
            "format": q.format,
            "quantized_ops": q.quantized,
            "float_compute_ops": q.float,
            "quantize_nodes": q.quantize_nodes,
            "dequantize_nodes": q.dequantize_nodes,
            "quantized_constants": q.weights,
        });
        outln!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        outln!("model: {shown}");
        use std::io::Write as _;
        write!(std::io::stdout().lock(), "{s}")?;
        write!(std::io::stdout().lock(), "{q}")?;
    }
    Ok(())
}

//! `edgeml prune`: magnitude-prune an ONNX model's weights and write the result.

use anyhow::{Context, bail};
use edgeml_onnx::Model;
use edgeml_prune::onnx::{
    MemberKind, PruneConfig, PruneReport, Recalibrate, Storage, StructuredConfig, prune_model,
};
use edgeml_prune::pattern::{BlockReduce, Norm};
use edgeml_prune::{Pattern, Scope};
use std::path::{Path, PathBuf};

/// What `edgeml prune --help` says after the options.
pub(crate) const AFTER_HELP: &str = "\
Patterns (each applied to a weight in its [out, in, ...] view: Conv as stored, Gemm/MatMul
as [N, K], ConvTranspose with axes 0 and 1 swapped):
  unstructured  exactly round(S·n) smallest |w| per layer (PyTorch l1_unstructured), or
                over all layers with --scope global (global_unstructured)
  channel       whole output channels with the smallest L1 norm (ln_structured, dim 0);
                the final layer is skipped. Channels are removed for real when the layer
                feeds the next Conv/Gemm/MatMul through BatchNormalization, per-channel
                Add/Mul, activations, pooling or Flatten; otherwise zeroed (see report)
  block:HxW     HxW blocks of the [out, rest] view with the smallest mean |w|
  keep:K/G      keep K of every G consecutive input weights (N:M; 2:4 is keep:2/4)

With --structured, channels are removed in coupled groups (Torch-Pruning's DepGraph):
a group is every slice that must lose the same channels (a layer's output channels,
the next layers' input channels, BatchNormalization parameters, both sides of residual
Add/Mul, Concat ranges, Split pieces, depthwise convs, the slices of grouped convs
(which keep their group count), channel shuffles (Reshape-Transpose-Reshape), Flatten
or Reshape-to-[N, C*S] blocks of the next Gemm). Groups are ranked by the norm of all
their weights (--norm, default l2), pruned per group (--scope layer) or over all
groups by mean-normalised score (--scope global), with --min-channels and --round-to.
Groups that reach a graph output or an op that is not followed (other Reshapes,
Transpose, Slice, ...) are left alone and reported as blocked.

Biases and normalisation parameters are never pruned.";

/// The `--pattern` values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PatternArg {
    Unstructured,
    Channel,
    Block(usize, usize),
    Keep(usize, usize),
}

fn parse_pattern(s: &str) -> Result<PatternArg, String> {
    let pair = |v: &str, sep: char| -> Option<(usize, usize)> {
        let (a, b) = v.split_once(sep)?;
        Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
    };
    match s {
        "unstructured" => Ok(PatternArg::Unstructured),
        "channel" => Ok(PatternArg::Channel),
        _ => {
            if let Some(v) = s.strip_prefix("block:") {
                match pair(v, 'x') {
                    Some((h, w)) if h > 0 && w > 0 => return Ok(PatternArg::Block(h, w)),
                    _ => return Err(format!("`{s}`: expected block:HxW with H, W >= 1")),
                }
            }
            if let Some(v) = s.strip_prefix("keep:") {
                match pair(v, '/') {
                    Some((k, g)) if k >= 1 && k <= g => return Ok(PatternArg::Keep(k, g)),
                    _ => return Err(format!("`{s}`: expected keep:K/G with 1 <= K <= G")),
                }
            }
            Err(format!(
                "`{s}`: expected unstructured, channel, block:HxW or keep:K/G"
            ))
        }
    }
}

/// The `--scope` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScopeArg {
    /// Each layer to the target sparsity.
    Layer,
    /// Unstructured magnitude over all layers together.
    Global,
}

/// The `--norm` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NormArg {
    /// Sum of |w|.
    L1,
    /// Euclidean norm.
    L2,
}

/// Arguments of `edgeml prune`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// Where to write the pruned model (written atomically).
    #[arg(short, long)]
    output: PathBuf,
    /// Fraction of weights (channels, blocks) to prune per layer, in [0, 1).
    #[arg(short, long)]
    sparsity: f64,
    /// unstructured | channel | block:HxW | keep:K/G.
    #[arg(short, long, default_value = "unstructured", value_parser = parse_pattern)]
    pattern: PatternArg,
    /// Prune each layer to the sparsity, or rank all layers together (unstructured only).
    #[arg(long, value_enum, default_value_t = ScopeArg::Layer)]
    scope: ScopeArg,
    /// Node names, op types (e.g. Gemm) or weight names to leave dense (repeatable).
    #[arg(short, long, value_name = "NAME_OR_OP", num_args = 1..)]
    exclude: Vec<String>,
    /// Leave layers with fewer weights than this dense.
    #[arg(long, value_name = "N", default_value_t = 0)]
    min_size: usize,
    /// Write pruned weights as ONNX sparse_initializer (COO) where that is smaller.
    #[arg(long)]
    sparse_storage: bool,
    /// Prune coupled channel groups (DepGraph-style) instead of --pattern.
    #[arg(long, conflicts_with = "pattern")]
    structured: bool,
    /// Norm of the channel importance: l1 or l2 (default: l1 for -p channel, l2 for
    /// --structured).
    #[arg(long, value_enum)]
    norm: Option<NormArg>,
    /// With --structured: channels every group keeps at least.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "structured")]
    min_channels: usize,
    /// With --structured: round each pruned group's kept channels up to a multiple of N.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "structured")]
    round_to: usize,
    /// Refit each layer's kept weights and bias by least squares so that, on this
    /// calibration data, it reproduces the original model's layer output (zeros and
    /// removed channels stay). One f32 `.npy` or `.npz` of samples along axis 0, or a
    /// directory of `.npy`/`.npz` batches, as `edgeml quantize --calibration`.
    #[arg(long, value_name = "DATA")]
    recalibrate: Option<PathBuf>,
    /// Samples per batch when `--recalibrate` is a single file.
    #[arg(long, default_value_t = 64, requires = "recalibrate")]
    batch_size: usize,
    /// Ridge dampening of the recalibration, as a fraction of the mean diagonal of
    /// each layer's Gram matrix (SparseGPT's percdamp).
    #[arg(long, default_value_t = 0.01, requires = "recalibrate")]
    dampening: f64,
    /// Write the per-layer report as JSON to this file (written atomically).
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
}

fn config(a: &Args, model: &Model) -> anyhow::Result<PruneConfig> {
    let pattern = match a.pattern {
        PatternArg::Unstructured => Pattern::Magnitude,
        PatternArg::Channel => Pattern::Channels {
            axis: 0,
            norm: match a.norm {
                Some(NormArg::L2) => Norm::L2,
                _ => Norm::L1,
            },
        },
        PatternArg::Block(height, width) => Pattern::Block {
            height,
            width,
            reduce: BlockReduce::Mean,
        },
        PatternArg::Keep(k, g) => Pattern::keep_of_group(k, g, 1),
    };
    let scope = match a.scope {
        ScopeArg::Layer => Scope::Layer,
        ScopeArg::Global => Scope::Global,
    };
    let structured = a.structured.then_some(StructuredConfig {
        norm: match a.norm {
            Some(NormArg::L1) => Norm::L1,
            _ => Norm::L2,
        },
        scope,
        min_channels: a.min_channels,
        round_to: a.round_to,
    });
    let recalibrate = match &a.recalibrate {
        Some(p) => Some(Recalibrate {
            dampening: a.dampening,
            ..Recalibrate::new(crate::quantize::load_single_f32(p, model, a.batch_size)?)
        }),
        None => None,
    };
    Ok(PruneConfig {
        sparsity: a.sparsity,
        pattern,
        scope: if a.structured { Scope::Layer } else { scope },
        exclude: a.exclude.clone(),
        min_size: a.min_size,
        remove_channels: true,
        sparse_storage: a.sparse_storage,
        structured,
        recalibrate,
    })
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    if let Err(e) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", tmp.display()));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))
}

fn shape(s: &[usize]) -> String {
    s.iter().map(usize::to_string).collect::<Vec<_>>().join("x")
}

fn print(r: &PruneReport, in_bytes: u64, out_bytes: u64) -> anyhow::Result<()> {
    outln!(
        "{:<24} {:<13} {:>12} {:>12} {:>9} {:>9} {:>9} {:>7}",
        "layer",
        "op",
        "shape",
        "after",
        "params",
        "nonzero",
        "sparsity",
        "storage"
    );
    for l in &r.layers {
        outln!(
            "{:<24} {:<13} {:>12} {:>12} {:>9} {:>9} {:>8.2}% {:>7}",
            l.node,
            l.op_type,
            shape(&l.shape_before),
            shape(&l.shape_after),
            l.params_before,
            l.nonzero_after,
            100.0 * l.sparsity,
            match l.storage {
                Storage::Dense => "dense",
                Storage::Sparse => "coo",
            }
        );
        if let Some(n) = &l.note {
            outln!("  note: {n}");
        }
    }
    for (i, g) in r.groups.iter().enumerate() {
        let mut layers: Vec<&str> = g
            .members
            .iter()
            .filter(|m| m.kind != MemberKind::Param)
            .map(|m| m.tensor.as_str())
            .collect();
        layers.sort_unstable();
        layers.dedup();
        let what = match &g.blocked {
            Some(why) => format!("blocked: {why}"),
            None => format!("removed {:?}", g.removed),
        };
        outln!(
            "group {i:<3} {:>4} channels [{}] {what}",
            g.channels,
            layers.join(", ")
        );
    }
    for f in &r.recalibrated {
        match (f.error_before, f.error_after) {
            (Some(b), Some(a)) => outln!(
                "recalibrated {:<24} {:<6} relative output error {:.4} -> {:.4} ({} rows)",
                f.node,
                f.op_type,
                b,
                a,
                f.rows
            ),
            _ => outln!(
                "recalibrated {:<24} {:<6} left as is: {}",
                f.node,
                f.op_type,
                f.note.as_deref().unwrap_or("")
            ),
        }
    }
    for s in &r.skipped {
        outln!("{:<24} {:<13} skipped: {}", s.node, s.op_type, s.reason);
    }
    outln!(
        "pruned layers: {} -> {} non-zero weights ({:.2}% sparsity)",
        r.pruned_params_before,
        r.pruned_nonzero_after,
        100.0 * r.sparsity
    );
    outln!(
        "model: {} -> {} parameters ({} non-zero); weights {} -> {} bytes; file {} -> {} bytes",
        r.model_params_before,
        r.model_params_after,
        r.model_nonzero_after,
        r.model_bytes_before,
        r.model_bytes_after,
        in_bytes,
        out_bytes
    );
    Ok(())
}

pub(crate) fn main(a: Args) -> anyhow::Result<()> {
    let mut model =
        Model::load(&a.model).with_context(|| format!("cannot load {}", a.model.display()))?;
    let config = config(&a, &model)?;
    let report = prune_model(&mut model, &config)
        .with_context(|| format!("cannot prune {}", a.model.display()))?;
    if report.layers.is_empty() {
        bail!("nothing was pruned");
    }
    model
        .save(&a.output)
        .with_context(|| format!("cannot write {}", a.output.display()))?;
    if let Some(p) = &a.report {
        let json = serde_json::to_vec_pretty(&report).context("cannot encode the report")?;
        write_atomic(p, &json)?;
    }
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    print(&report, size(&a.model), size(&a.output))
}

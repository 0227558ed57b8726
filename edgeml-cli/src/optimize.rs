//! `edgeml optimize`: simplify an ONNX model with the passes of `edgeml_onnx::passes`
//! and write it.

use anyhow::Context;
use edgeml_onnx::Model;
use edgeml_onnx::passes::{FoldConstants, OptimizeLevel, Pipeline, infer_shapes};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The `--level` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LevelArg {
    /// Standard-domain operators only (any runtime runs the result).
    Basic,
    /// Also onnxruntime's com.microsoft fused operators (FusedConv).
    Extended,
}

/// Arguments of `edgeml optimize`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// Where to write the optimized model (written atomically).
    #[arg(short, long)]
    output: PathBuf,
    /// Which rewrites to apply.
    #[arg(long, value_enum, default_value = "basic")]
    level: LevelArg,
    /// Largest folded constant, in elements; larger ones are left unfolded. The default,
    /// 2^28 (1 GiB of f32), folds every weight of real models, as onnxslim and onnxsim
    /// do (they have no limit); the library's `FoldConstants` default is 2^22.
    #[arg(long, value_name = "N", default_value_t = 1 << 28)]
    max_fold_elements: usize,
    /// Also write the inferred type and shape of every intermediate value into
    /// value_info.
    ///
    /// Without it, value_info holds the input model's entries for the values that
    /// survive (no rewrite changes the type or shape of a value it keeps) and drops
    /// those of removed values: what onnxslim writes with --no-shape-infer. With it,
    /// every other intermediate value whose type inference knows gets an entry too:
    /// what onnxslim and onnxsim write by default.
    #[arg(long)]
    infer_shapes: bool,
    /// Write initializers of at least 1024 bytes to OUT.data (ONNX external data, as
    /// onnxslim's --save-as-external-data). Models over 2 GiB are always written so.
    #[arg(long)]
    external_data: bool,
}

/// Node count per operator (`domain:op` outside the default domain), main graph only.
fn histogram(m: &Model) -> BTreeMap<String, usize> {
    let mut h = BTreeMap::new();
    for n in &m.graph.nodes {
        let key = if n.domain.is_empty() || n.domain == "ai.onnx" {
            n.op_type.clone()
        } else {
            format!("{}:{}", n.domain, n.op_type)
        };
        *h.entry(key).or_default() += 1;
    }
    h
}

pub(crate) fn main(a: Args) -> anyhow::Result<()> {
    let in_bytes = std::fs::metadata(&a.model)
        .with_context(|| format!("cannot read {}", a.model.display()))?
        .len();
    let mut model =
        Model::load(&a.model).with_context(|| format!("cannot load {}", a.model.display()))?;
    let before = histogram(&model);
    let nodes_before = model.graph.nodes.len();
    let inits_before = model.graph.initializers.len();
    let level = match a.level {
        LevelArg::Basic => OptimizeLevel::Basic,
        LevelArg::Extended => OptimizeLevel::Extended,
    };
    let fold = FoldConstants {
        max_elements: a.max_fold_elements,
    };
    let pipeline = Pipeline::for_level_with(level, fold);
    let report = pipeline
        .run(&mut model)
        .with_context(|| format!("cannot optimize {}", a.model.display()))?;
    for (pass, n) in &report.changes {
        log::info!("{pass}: {n} rewrites");
    }
    if a.infer_shapes {
        let n = infer_shapes(&mut model).context("shape inference failed")?;
        log::info!("infer-shapes: {n} values annotated");
    }
    if a.external_data {
        model.save_with_external_data(&a.output, 1024)
    } else {
        model.save(&a.output)
    }
    .with_context(|| format!("cannot write {}", a.output.display()))?;
    let out_bytes = std::fs::metadata(&a.output)
        .with_context(|| format!("cannot read {}", a.output.display()))?
        .len();
    let after = histogram(&model);
    outln!("{:<28} {:>8} {:>8}", "op", "before", "after");
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (b, f) = (
            before.get(k).copied().unwrap_or(0),
            after.get(k).copied().unwrap_or(0),
        );
        let mark = if b == f { "" } else { "  *" };
        outln!("{k:<28} {b:>8} {f:>8}{mark}");
    }
    outln!(
        "nodes: {nodes_before} -> {}; initializers: {inits_before} -> {}; file: {in_bytes} -> {out_bytes} bytes",
        model.graph.nodes.len(),
        model.graph.initializers.len()
    );
    let changes: Vec<String> = report
        .changes
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(p, n)| format!("{p} {n}"))
        .collect();
    outln!(
        "rewrites: {} ({} round{})",
        if changes.is_empty() {
            "none".to_owned()
        } else {
            changes.join(", ")
        },
        report.rounds,
        if report.rounds == 1 { "" } else { "s" }
    );
    Ok(())
}

//! `edgeml run`: run a model on `.npy` inputs and write each output as `NAME.npy`.

use anyhow::{Context, bail};
use edgeml_onnx::{PlanOptions, Tensor};
use ndarray::ArrayD;
use ndarray_npy::{read_npy, write_npy};
use std::path::{Path, PathBuf};

/// Arguments of `edgeml run`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// An input as `NAME=FILE.npy` (repeat for each input); a bare `FILE.npy` is allowed
    /// when the model has exactly one input.
    #[arg(short, long = "input", value_name = "NAME=FILE.npy")]
    inputs: Vec<String>,
    /// Where to write the outputs (created if missing).
    #[arg(short, long, default_value = ".")]
    output_dir: PathBuf,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Let idle worker threads sleep during a run instead of spin-waiting for work
    /// (saves CPU time and power on shared or battery-powered machines, costs latency).
    #[arg(long)]
    no_spin: bool,
    /// Run QDQ models as written (float operators between QuantizeLinear and
    /// DequantizeLinear) instead of fusing them onto the INT8 kernels.
    #[arg(long)]
    no_fuse_qdq: bool,
    #[command(flatten)]
    bounds: crate::planning::Bounds,
}

/// Reads a `.npy` file of any element type edgeml supports.
pub(crate) fn read_any(path: &Path) -> anyhow::Result<Tensor> {
    macro_rules! try_read {
        ($($t:ty => $v:ident),*) => {
            $(if let Ok(a) = read_npy::<_, ArrayD<$t>>(path) {
                return Ok(Tensor::$v(a));
            })*
        };
    }
    // Fail early with the I/O error if the file cannot be opened at all.
    std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    try_read!(f32 => F32, i64 => I64, i32 => I32, bool => Bool, f64 => F64, u8 => U8,
              i8 => I8, i16 => I16, u16 => U16);
    bail!(
        "{}: not a C-order .npy of a supported element type (f32, f64, i8-i64, u8, u16, bool)",
        path.display()
    )
}

/// Writes `t` to `path` atomically (temporary file, then rename). f16/bf16 are written
/// as f32.
pub(crate) fn write_any(path: &Path, t: &Tensor) -> anyhow::Result<()> {
    let tmp = path.with_extension("npy.tmp");
    let r = match t {
        Tensor::F32(a) => write_npy(&tmp, a),
        Tensor::F64(a) => write_npy(&tmp, a),
        Tensor::F16(a) => write_npy(&tmp, &a.mapv(|v| v.to_f32())),
        Tensor::BF16(a) => write_npy(&tmp, &a.mapv(|v| v.to_f32())),
        Tensor::I8(a) => write_npy(&tmp, a),
        Tensor::U8(a) => write_npy(&tmp, a),
        Tensor::I16(a) => write_npy(&tmp, a),
        Tensor::U16(a) => write_npy(&tmp, a),
        Tensor::I32(a) => write_npy(&tmp, a),
        Tensor::I64(a) => write_npy(&tmp, a),
        Tensor::Bool(a) => write_npy(&tmp, a),
        #[allow(unreachable_patterns)]
        _ => bail!("cannot write element type {:?} as .npy", t.dtype()),
    };
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", tmp.display()));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))
}

/// A file name for an output: characters other than `[A-Za-z0-9_.-]` become `_`.
fn file_name(output: &str) -> String {
    let s: String = output
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

/// Runs `edgeml run`.
pub(crate) fn main(args: Args) -> anyhow::Result<()> {
    let mut opts = PlanOptions::default();
    opts.threads = args.threads;
    opts.spin = !args.no_spin;
    args.bounds.apply(&mut opts)?;
    let plan = crate::planning::load_and_plan(&args.model, opts, !args.no_fuse_qdq)?;
    let declared: Vec<String> = plan.inputs().iter().map(|i| i.name.clone()).collect();
    let mut inputs: Vec<(String, Tensor)> = Vec::new();
    for spec in &args.inputs {
        let (name, file) = match spec.split_once('=') {
            Some((n, f)) => (n.to_owned(), f),
            None if declared.len() == 1 => (declared[0].clone(), spec.as_str()),
            None => {
                bail!("--input {spec:?}: write NAME=FILE.npy; the model's inputs are {declared:?}")
            }
        };
        let t = read_any(Path::new(file))?;
        inputs.push((name, t));
    }
    let refs: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let outs = plan
        .run_with(&refs, &args.bounds.run_options()?)
        .context("the model failed to run")?;
    std::fs::create_dir_all(&args.output_dir)
        .with_context(|| format!("cannot create {}", args.output_dir.display()))?;
    for (name, t) in &outs {
        let path = args.output_dir.join(format!("{}.npy", file_name(name)));
        write_any(&path, t)?;
        outln!(
            "{name}: {:?} {:?} -> {}",
            t.dtype(),
            t.shape(),
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::file_name;

    #[test]
    fn output_names_become_safe_file_names() {
        assert_eq!(file_name("gpu_0/softmax_1"), "gpu_0_softmax_1");
        assert_eq!(file_name(".."), "_..");
        assert_eq!(file_name(""), "_");
    }
}

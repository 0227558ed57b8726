//! The `edgeml` command: inspect, run, bench, optimize, quantize, prune, distill and drift for ONNX
//! models on edge devices.
#![forbid(unsafe_code)]

use clap::{ArgAction, Parser, Subcommand};
use std::process::ExitCode;

/// `println!` that returns the write error instead of panicking, so that a closed
/// output pipe (`edgeml inspect m.onnx | head -1`) ends the command quietly.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod bench;
mod distill_cmd;
mod drift;
mod inspect;
mod optimize;
mod planning;
mod prune;
mod quantize;
mod run;

/// What `--help` says after the options.
const AFTER_HELP: &str = "\
Logging: library warnings are shown by default; -v adds info, -vv debug, -vvv trace.
RUST_LOG (env_logger syntax, e.g. RUST_LOG=edgeml_onnx=debug) sets levels per module;
-v/-vv override its global level.

Exit status:
  0  success (also when the output pipe is closed early, as in `edgeml inspect m.onnx | head`)
  1  the command failed: a message `edgeml: error: ...` is printed on stderr
  2  the command line is invalid (unknown option, missing argument), or
     `edgeml drift --fail-on-drift` found drift";

/// edgeml: put machine-learning models on edge devices.
#[derive(Parser, Debug)]
#[command(name = "edgeml", version, about, after_help = AFTER_HELP)]
struct Cli {
    /// More log output: -v info, -vv debug, -vvv trace (default: warnings only).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a model's opsets, inputs/outputs, op histogram, parameters and sparsity.
    Inspect(inspect::Args),
    /// Run a model on `.npy` inputs and write each output as `NAME.npy`.
    Run(run::Args),
    /// Measure a model's latency on generated or given inputs.
    Bench(bench::Args),
    /// Compare two CSV files column by column and report drift.
    Drift(drift::Args),
    /// Magnitude-prune a model's Conv/Gemm/MatMul weights and write the pruned model.
    #[command(after_help = prune::AFTER_HELP)]
    Prune(prune::Args),
    /// Distill an ONNX teacher into a small MLP student and write it as ONNX.
    Distill(distill_cmd::Args),
    /// Quantize a float ONNX model: INT8 static QDQ calibrated on sample inputs, INT8
    /// dynamic (run-time activation quantization), INT8 weight-only, or float16 weights.
    Quantize(quantize::Args),
    /// Simplify a model (constant folding, duplicate merging, BatchNorm folding, dead code) and write it.
    Optimize(optimize::Args),
}

/// Sends the `log` facade to stderr: warnings by default, `RUST_LOG` per module, and
/// `-v` counts raise the global level above both.
fn init_logger(verbose: u8) {
    let mut b = env_logger::Builder::new();
    b.filter_level(log::LevelFilter::Warn);
    b.parse_env(env_logger::Env::default());
    if verbose > 0 {
        b.filter_level(match verbose {
            1 => log::LevelFilter::Info,
            2 => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        });
    }
    b.init();
}

/// Whether the error comes from writing to a closed pipe.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logger(cli.verbose);
    let result = match cli.command {
        Command::Inspect(a) => inspect::main(a),
        Command::Run(a) => run::main(a),
        Command::Bench(a) => bench::main(a),
        Command::Drift(a) => drift::main(a),
        Command::Prune(a) => prune::main(a),
        Command::Distill(a) => distill_cmd::main(a),
        Command::Quantize(a) => quantize::main(a),
        Command::Optimize(a) => optimize::main(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader has all it wanted: stop quietly, as Unix tools do.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            let msg = e
                .chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": ");
            eprintln!("edgeml: error: {msg}");
            ExitCode::from(1)
        }
    }
}

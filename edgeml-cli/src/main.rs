//! The `edgeml` command: inspect, run, bench and drift for ONNX models on edge devices.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod bench;
mod drift;
mod inspect;
mod run;

/// edgeml: put machine-learning models on edge devices.
#[derive(Parser, Debug)]
#[command(name = "edgeml", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a model's opsets, inputs/outputs, op histogram, parameters and sparsity.
    Inspect(inspect::Args),
    /// Run a model on `.npy` inputs and write each output as `NAME.npy`.
    Run(run::Args),
    /// Measure a model's latency on generated inputs.
    Bench(bench::Args),
    /// Compare two CSV files column by column and report drift.
    Drift(drift::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(a) => inspect::main(a),
        Command::Run(a) => run::main(a),
        Command::Bench(a) => bench::main(a),
        Command::Drift(a) => drift::main(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
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

//! Loads each `IN` model and saves it to `OUT`: `io_roundtrip IN OUT [IN OUT …]`.
//! Used by `scripts/ci/onnx-interop.sh` to check that round trips are lossless.

use edgeml_onnx::Model;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || !args.len().is_multiple_of(2) {
        eprintln!("usage: io_roundtrip IN OUT [IN OUT ...]");
        return ExitCode::from(2);
    }
    let mut ok = true;
    for pair in args.chunks(2) {
        if let Err(e) = Model::load(&pair[0]).and_then(|m| m.save(&pair[1])) {
            eprintln!("{}: {e}", pair[0]);
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

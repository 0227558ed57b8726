//! The `edgeml` command.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("edgeml: no subcommands yet");
    std::process::exit(1);
}

//! `edgeml bench`.

/// Arguments of `edgeml bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {}

/// Runs `edgeml bench`.
pub(crate) fn main(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`edgeml bench` is not implemented yet")
}

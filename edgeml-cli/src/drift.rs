//! `edgeml drift`.

/// Arguments of `edgeml drift`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {}

/// Runs `edgeml drift`.
pub(crate) fn main(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`edgeml drift` is not implemented yet")
}

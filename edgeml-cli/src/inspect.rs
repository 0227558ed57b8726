//! `edgeml inspect`.

/// Arguments of `edgeml inspect`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {}

/// Runs `edgeml inspect`.
pub(crate) fn main(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`edgeml inspect` is not implemented yet")
}

//! `edgeml run`.

/// Arguments of `edgeml run`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {}

/// Runs `edgeml run`.
pub(crate) fn main(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`edgeml run` is not implemented yet")
}

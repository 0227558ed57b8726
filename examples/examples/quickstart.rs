//! Quickstart: load a bundled ONNX model, print what `edgeml inspect` prints, then
//! round-trip it through `save`/`load` in a temporary folder and check nothing changed.
//!
//! Run with `cargo run --release -p edgeml-examples --example quickstart`.

use anyhow::{Context, ensure};
use edgeml::onnx::Model;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/models/light_squeezenet.onnx");
    let model = Model::load(&path).with_context(|| format!("loading {}", path.display()))?;
    println!("model: {}", path.display());
    print!("{}", model.summary());

    // Round trip through an atomic save in a fresh temporary folder.
    let dir = std::env::temp_dir().join(format!("edgeml-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let copy = dir.join("squeezenet.onnx");
    model.save(&copy)?;
    let back = Model::load(&copy)?;
    std::fs::remove_dir_all(&dir)?;
    ensure!(back == model, "the round-tripped model differs");
    println!("round trip through {}: identical", copy.display());
    Ok(())
}

//! Quickstart: placeholder until the model loader lands.
fn main() {
    println!("edgeml {}", env!("CARGO_PKG_VERSION"));
}

//! Built-in operators and the default registry.

pub mod nn;

use crate::Registry;

/// The registry with every built-in operator of `edgeml-onnx`.
pub fn default_registry() -> Registry {
    let mut r = Registry::empty();
    nn::register(&mut r);
    r
}
